# One image for api, worker and bot (the command picks the process).
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg espeak-ng curl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
# every package pinned and hash-checked (`make lock`): the same set `make test` passed with
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY core core
COPY signaling signaling
COPY ingest ingest
COPY compositor compositor
COPY transcribe transcribe
COPY review_api review_api
COPY bot bot
COPY workers workers
COPY recorder recorder
RUN pip install --no-cache-dir --no-deps .
RUN useradd --create-home recorder
USER recorder
ENV RECORDER_ENV=production RECORDER_API_HOST=0.0.0.0 RECORDER_DATA_DIR=/tmp/recorder
EXPOSE 8000
CMD ["recorder", "api"]
