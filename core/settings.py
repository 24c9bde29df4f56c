"""One typed configuration object, read from `RECORDER_*` environment variables.

Defaults serve the single-machine stack (`recorder up`); production overrides every
service address through the environment (see docker-compose.yml). Only entry points
construct `Settings`; library functions take plain arguments.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "local-dev-secret-change-me-in-production"


class Settings(BaseSettings):
    """Everything a process of interview-recorder can be told."""

    model_config = SettingsConfigDict(env_prefix="RECORDER_", env_file=None, extra="ignore")

    env: str = Field("local", description="local | test | production")
    data_dir: Path = Path("./var")
    database_url: str = "sqlite:///./var/recorder.db"
    redis_url: str = "redis://127.0.0.1:6379/0"

    s3_endpoint: str = "127.0.0.1:8333"
    s3_access_key: str = "recorder"
    s3_secret_key: str = "recorder-secret"
    s3_bucket: str = "recordings"
    s3_secure: bool = False
    s3_region: str = "us-east-1"

    jwt_secret: str = DEV_JWT_SECRET
    jwt_issuer: str = "interview-recorder"
    upload_token_ttl_s: int = Field(4 * 3600, gt=0)
    join_token_ttl_s: int = Field(300, gt=0)
    api_token_ttl_s: int = Field(12 * 3600, gt=0)
    playback_token_ttl_s: int = Field(1800, ge=30, le=86400, description="lifetime of signed playback URLs")

    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, gt=0, lt=65536)
    public_url: str = ""
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed to call the API from browsers")

    max_chunk_bytes: int = Field(64 * 1024 * 1024, gt=0)
    chunk_rate_per_minute: int = Field(600, gt=0, description="chunk PUTs per recording per minute")
    org_rate_per_minute: int = Field(20000, gt=0, description="requests per org per minute")
    finalize_idle_s: int = Field(600, gt=0, description="auto-finalize after this much silence")
    window_ms: int = Field(30000, gt=0, description="composite window length on the timeline")
    media_max_retries: int = Field(8, ge=0, le=20, description="retries of a media step (transient errors) "
                                                                "before it is marked failed")

    whisper_model: str = Field("", description="CTranslate2 model dir or name; empty = bundled tiny.en")
    whisper_device: str = "cpu"
    whisper_compute_type: str = ""
    whisper_threads: int = Field(1, gt=0, description="CPU threads per model replica")
    whisper_replicas: int = Field(2, gt=0, le=32, description="model replicas decoding in parallel per worker "
                                  "process; threads × replicas = cores (2 × 1 beat 1 × 2 by ~15% on 2 cores)")
    whisper_beam_size: int = Field(3, gt=0, description="beam width; 3 ≈ 5 in WER at ~25% less time "
                                   "(bench/transcribe)")
    whisper_batch_size: int = Field(8, gt=0, le=64, description="30-s speech windows per model batch")
    vad_aggressiveness: int = Field(2, ge=0, le=3)
    transcribe_batch_s: float = Field(20.0, ge=0, le=60, description="hold finished speech until this much "
                                      "is ready (fills the model's 30-s window); 0 = transcribe every chunk")
    transcribe_lookahead: int = Field(16, gt=0, le=64, description="chunks of a track planned per model batch "
                                      "when several are waiting (catch-up, finalize, re-transcription)")

    worker_processes: int = Field(1, gt=0)
    worker_threads: int = Field(2, gt=0)
    orphan_timeout_s: int = Field(90, gt=0)
    resume_window_s: int = Field(300, gt=0)

    stun_urls: list[str] = Field(default_factory=list)
    turn_urls: list[str] = Field(default_factory=list)
    turn_secret: str = ""
    turn_credential_ttl_s: int = Field(4 * 3600, gt=0, description="lifetime of coturn REST credentials")
    room_lease_ttl_s: int = Field(600, gt=0, description="idempotency lease (org, slot, candidate) → room")
    room_unused_ttl_s: int = Field(24 * 3600, gt=0, description="end rooms nobody joined after this")
    room_create_rate_per_minute: int = Field(120, gt=0, description="room creations per org per minute")
    join_token_rate_per_minute: int = Field(600, gt=0, description="join tokens minted per org per minute")
    join_token_cache_s: int = Field(75, ge=0, description="reuse a minted join token for this long (60-90)")
    orphan_sweep_s: float = Field(5.0, gt=0, description="orphan closer period")
    signal_heartbeat_s: float = Field(2.5, gt=0, description="WebSocket ping period; 2 missed = gone")
    signal_max_message_bytes: int = Field(64 * 1024, gt=0, description="largest signaling message")

    bot_api_url: str = Field("", description="API base URL the recording bot calls; empty = api_base_url")
    bot_segment_s: float = Field(30.0, gt=0, le=600, description="length of the bot's per-track segments")
    bot_upload_give_up_s: float = Field(900.0, gt=0, description="stop retrying one segment upload after this")
    bot_ice_loopback: bool = Field(False, description="bot gathers only 127.0.0.1 ICE candidates (tests)")

    webhook_url: str = ""
    webhook_secret: str = ""

    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("s3_bucket")
    @classmethod
    def _bucket_name(cls, v: str) -> str:
        if not (3 <= len(v) <= 63) or not v.replace("-", "").isalnum() or v.lower() != v:
            raise ValueError("s3_bucket must be 3-63 lowercase letters, digits or '-'")
        return v

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, v: str) -> str:
        if not v.startswith(("sqlite:", "postgresql")):
            raise ValueError("database_url must be sqlite:///… or postgresql+psycopg://…")
        if v.startswith("postgresql://"):
            v = "postgresql+psycopg://" + v[len("postgresql://"):]
        return v

    @model_validator(mode="after")
    def _production_secrets(self) -> "Settings":
        if self.env == "production" and self.jwt_secret == DEV_JWT_SECRET:
            raise ValueError("RECORDER_JWT_SECRET must be set in production")
        if len(self.jwt_secret) < 32:
            raise ValueError("RECORDER_JWT_SECRET must be at least 32 characters (HS256)")
        return self

    @property
    def api_base_url(self) -> str:
        return self.public_url or f"http://{self.api_host}:{self.api_port}"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (entry points only)."""
    return Settings()
