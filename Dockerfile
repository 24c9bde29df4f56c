# One image for api, worker and bot (the command picks the process).
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg espeak-ng curl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core core
COPY signaling signaling
COPY ingest ingest
COPY compositor compositor
COPY transcribe transcribe
COPY review_api review_api
COPY bot bot
COPY workers workers
COPY recorder recorder
RUN pip install --no-cache-dir .
RUN useradd --create-home recorder
USER recorder
ENV RECORDER_API_HOST=0.0.0.0 RECORDER_DATA_DIR=/tmp/recorder
EXPOSE 8000
CMD ["recorder", "api"]
