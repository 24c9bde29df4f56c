"""A synthetic technical interview: questions, answers (with domain terms) and backchannels."""
from __future__ import annotations

TERMS = ["Kubernetes", "PostgreSQL", "Terraform", "Kafka", "Grafana", "Prometheus", "Redis",
         "Elasticsearch", "Ansible", "nginx", "Airflow", "FastAPI"]

PAIRS = [
    ("Thanks for joining us today. Could you start by telling me about your current role?",
     "Sure. I am a backend engineer on the payments team. I own the billing service and the data "
     "pipeline that feeds our invoices every night."),
    ("What does the architecture of the billing service look like?",
     "It is a set of Python services running on Kubernetes. Each service has its own PostgreSQL "
     "database, and they talk to each other through Kafka topics."),
    ("How do you deploy changes to production?",
     "We describe the infrastructure with Terraform and we ship the services with rolling updates. "
     "A deployment usually takes about ten minutes from merge to traffic."),
    ("Tell me about a production incident you handled recently.",
     "Last spring a database migration locked a large table for several minutes. Payments started "
     "to time out, so we rolled back and rewrote the migration to run in small batches."),
    ("How did you notice the problem in the first place?",
     "Our Grafana dashboards showed the error rate climbing, and a Prometheus alert paged the on "
     "call engineer within two minutes."),
    ("What would you change about your monitoring after that?",
     "We added alerts on lock wait time in PostgreSQL, and we now test every migration against a "
     "copy of the production data before we merge it."),
    ("Where do you use caching in your system?",
     "We keep session data and rate limit counters in Redis. We tried caching invoices as well, "
     "but invalidation was painful, so we removed it."),
    ("How do you search across your logs?",
     "The logs go to Elasticsearch through a small shipper on every node. We keep two weeks of "
     "logs and archive the rest to object storage."),
    ("Have you worked with configuration management tools?",
     "Yes, I used Ansible at my previous job to configure about forty virtual machines. These days "
     "most of that work is done by Terraform and container images."),
    ("What sits in front of your services?",
     "An nginx ingress controller terminates TLS and routes requests by host name. It also "
     "applies a simple rate limit per client."),
    ("How are your batch jobs scheduled?",
     "We run our nightly jobs with Airflow. Each job is a small graph of tasks, and failed tasks "
     "are retried three times before anyone is paged."),
    ("Which web framework do you prefer for new services?",
     "For new services we use FastAPI because the request models double as documentation, and "
     "the async support works well for our network heavy code."),
    ("How do you test the services before a release?",
     "Every pull request runs unit tests and a set of integration tests against real databases "
     "in containers. We also run a short load test every week."),
    ("How large is the team you work with?",
     "There are six engineers, one product manager and a designer who we share with another "
     "team. We plan our work in two week cycles."),
    ("How do you handle disagreements about technical decisions?",
     "We write a short design document, list the options and their costs, and ask one senior "
     "engineer from another team to review it before we decide."),
    ("What was the hardest bug you fixed last year?",
     "A race condition between two Kafka consumers created duplicate invoices once in a few "
     "thousand runs. We fixed it with an idempotency key on every message."),
    ("How do you keep your Kubernetes clusters up to date?",
     "We upgrade one minor version every quarter. We test the upgrade on a staging cluster first "
     "and then move the production nodes one pool at a time."),
    ("What are you looking for in your next role?",
     "I would like to work closer to the data platform and spend more time on reliability, "
     "capacity planning and helping other teams run their services."),
    ("Do you have any questions for us?",
     "Yes. How does your team share the on call work, and how much time do you spend on "
     "maintenance compared with new features?"),
    ("Good question. We rotate weekly and keep about a fifth of our time for maintenance.",
     "That sounds reasonable. Thank you for your time today, I enjoyed the conversation."),
]

BACKCHANNELS = ["Right.", "I see.", "Okay.", "Makes sense.", "Interesting."]
