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

from core.auth import PROVIDER_ALGORITHMS

DEV_JWT_SECRET = "local-dev-secret-change-me-in-production"


class Settings(BaseSettings):
    """Everything a process of interview-recorder can be told."""

    model_config = SettingsConfigDict(env_prefix="RECORDER_", env_file=None, extra="ignore")

    env: str = Field("local", description="local | test | production")
    data_dir: Path = Path("./var")
    database_url: str = "sqlite:///./var/recorder.db"
    db_auto_migrate: bool = Field(True, description="upgrade the schema at start (API, workers); in production "
                                  "only the API does, or a deploy step runs `recorder db upgrade`")
    redis_url: str = "redis://127.0.0.1:6379/0"

    s3_endpoint: str = "127.0.0.1:8333"
    s3_access_key: str = "recorder"
    s3_secret_key: str = "recorder-secret"
    s3_bucket: str = "recordings"
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    s3_object_lock: bool = Field(False, description="create the bucket with S3 object lock, so legal holds are "
                                 "also enforced by the store (MinIO: only at bucket creation)")

    jwt_secret: str = DEV_JWT_SECRET
    jwt_issuer: str = "interview-recorder"
    upload_token_ttl_s: int = Field(4 * 3600, gt=0)
    join_token_ttl_s: int = Field(300, gt=0)
    api_token_ttl_s: int = Field(12 * 3600, gt=0)
    playback_token_ttl_s: int = Field(1800, ge=30, le=86400, description="lifetime of signed playback URLs")
    upload_token_max_ttl_s: int = Field(4 * 3600, gt=0, le=7 * 24 * 3600, description="longest lifetime of an "
                                        "upload token (they travel in beacon URLs); longer requests are clamped")
    jwks_url: str = Field("", description="the identity provider's JWKS URL: also accept its RS/ES-signed API "
                          "tokens (empty = only HS256 tokens signed with jwt_secret)")
    jwt_audience: str = Field("", description="`aud` the identity provider's tokens must carry (needed with jwks_url)")
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"],
                                      description="algorithms accepted from the identity provider (asymmetric only)")
    jwt_provider_issuer: str = Field("", description="`iss` of the identity provider's tokens; empty = not checked")
    jwt_claim_org: str = Field("org", description="claim (dotted path) holding the org of a provider token")
    jwt_claim_role: str = Field("role", description="claim holding the role: a string, or a list (e.g. `roles`) "
                                "where the first known role wins")
    jwt_claim_groups: str = Field("groups", description="claim holding the caller's groups (a list of strings)")
    jwks_cache_s: float = Field(300, gt=0, description="how long the provider's key set is cached")
    jwks_refresh_cooldown_s: float = Field(30, ge=0, description="an unknown `kid` refetches the key set at most "
                                           "once per this many seconds")

    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, gt=0, lt=65536)
    public_url: str = ""
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed to call the API from browsers")

    max_chunk_bytes: int = Field(64 * 1024 * 1024, gt=0)
    max_body_bytes: int = Field(256 * 1024, ge=1024, description="largest request body of any route but "
                                "chunk uploads (JSON); more is refused with 413 while it streams in")
    chunk_rate_per_minute: int = Field(600, gt=0, description="chunk PUTs per recording per minute")
    org_rate_per_minute: int = Field(20000, gt=0, description="requests per org per minute")
    rate_limits: dict[str, list[int]] = Field(
        default_factory=lambda: {"search": [120, 2000], "token": [120, 2000], "create_recording": [60, 1000],
                                 "retranscribe": [10, 60]},
        description="per minute, [per caller, per org], for search, token (upload/playback minting), "
                    "create_recording and retranscribe; JSON in RECORDER_RATE_LIMITS")
    quarantine_budget_bytes: int = Field(256 * 1024 * 1024, ge=0, description="bytes of rejected chunks kept "
                                         "for inspection per recording; past it only the ledger row is kept")
    finalize_idle_s: int = Field(600, gt=0, description="auto-finalize after this much silence")
    window_ms: int = Field(30000, gt=0, description="composite window length on the timeline")
    worker_max_retries: int = Field(8, ge=0, le=20, description="retries of a worker step (transient errors) "
                                    "before it and, for a final step, its recording are marked failed")
    worker_min_backoff_ms: int = Field(1000, gt=0, description="wait before the first retry; doubles per retry")
    worker_max_backoff_ms: int = Field(60_000, gt=0, le=7 * 86_400_000, description="longest wait between retries")

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
    transcribe_leak_gate: bool = Field(True, description="turn down what a microphone only hears of the other "
                                       "participants (their voices 20–40 dB down) before the VAD and the model")
    transcribe_gate_wait_s: float = Field(45.0, ge=0, le=600, description="while recording, a chunk waits this "
                                          "long for the other tracks' audio of its span (the leak gate needs it); "
                                          "then it is transcribed without and crosstalk is hidden after the fact")
    transcribe_split_pause_s: float = Field(1.0, gt=0, le=10, description="a pause this long between two words "
                                            "starts a new transcript segment")

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
    bot_heartbeat_s: float = Field(2.5, gt=0, le=60, description="bot: link health reading period (recovery ladder)")
    bot_quality_s: float = Field(5.0, gt=0, le=300, description="bot: quality sample window per track")
    bot_ice_restart_s: float = Field(9.0, gt=0, description="bot: trouble before an ICE restart is tried")
    bot_renegotiate_s: float = Field(18.0, gt=0, description="bot: trouble before a new peer connection is offered")
    bot_socket_wait_s: float = Field(60.0, gt=0, description="bot: signaling down this long → rebuild every link")
    bot_max_participants: int = Field(16, ge=1, le=1000, description="bot admission cap: participants one bot "
                                      "process records at once; a room that would take it over the cap is left to "
                                      "another bot process (or to a retry once load falls); an idle process admits "
                                      "any room. 16 = the largest N bench/bot recorded without frame loss in every "
                                      "run (≈ 0.5 core at ~0.033 CPU-s per media-s per participant; CPU alone "
                                      "would allow ~22 in 0.75 of the one core a process's event loop gets). "
                                      "README: The recording bot, Capacity and admission")
    bot_room_floor: int = Field(2, ge=1, le=100, description="bot admission counts a room as at least this many "
                                "participants (the second person of an interview often joins after the bot)")
    bot_processes: int = Field(1, ge=1, le=64, description="processes `recorder bot` runs, each with its own "
                               "admission cap (one per core)")

    webhook_allow_private: bool = Field(False, description="let org webhooks call loopback/private addresses "
                                        "(the local stack and tests set it; never in production)")
    webhook_timeout_s: float = Field(10.0, gt=0, le=60, description="one delivery attempt's HTTP timeout")

    signing_key_path: Path | None = Field(None, description="the service's Ed25519 private key (PEM, PKCS#8), "
                                          "signing audit checkpoints and deletion receipts; required in production "
                                          "(the same key in every process); empty = made under data_dir/keys/")
    audit_checkpoint_interval_s: int = Field(300, ge=0, description="sign the audit chain head into the object "
                                             "store this often (worker actor audit_checkpoint); 0 = by hand only")

    retention_tick_s: int = Field(3600, ge=10, le=7 * 86400, description="period of `retention_tick`: preview "
                                  "every org's policy and, where runs are automatic, run it")
    retention_spool_max_age_s: int = Field(86400, ge=600, description="the retention tick removes upload spool "
                                           "files (data_dir/spool) older than this (left by killed uploads)")
    ingest_stream_to_s3: bool = Field(False, description="stream a chunk's body to its chunk key while it is "
                                      "received (under the key's write lease; the row is marked stored only once "
                                      "the bytes are verified, a failed body's object is removed); false = spool "
                                      "to disk first, then PUT. Off by default: on the local stack (SeaweedFS, "
                                      "loopback clients, 2 shared cores) it did not measure faster (bench/ingest)")
    reconcile_sources: bool = Field(True, description="a bot recording whose room also has a client recording "
                                    "(the call page's uploads) plays, per participant and second, the client "
                                    "where the bot has no media (aligned by audio) in its video and transcript; "
                                    "false = the bot's media alone")

    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("s3_bucket")
    @classmethod
    def _bucket_name(cls, v: str) -> str:
        if not (3 <= len(v) <= 63) or not v.replace("-", "").isalnum() or v.lower() != v:
            raise ValueError("s3_bucket must be 3-63 lowercase letters, digits or '-'")
        return v

    @field_validator("signing_key_path", mode="before")
    @classmethod
    def _signing_key_path(cls, v: object) -> object:
        if v in ("", None):
            return None
        if not Path(str(v)).is_file():
            raise ValueError(f"RECORDER_SIGNING_KEY_PATH {v} is not a file (an Ed25519 private key, PEM)")
        return v

    @field_validator("rate_limits")
    @classmethod
    def _rate_limits(cls, v: dict[str, list[int]]) -> dict[str, list[int]]:
        from core.ratelimit import CHARGED

        names = set(CHARGED)
        if set(v) != names or any(len(q) != 2 or min(q) <= 0 for q in v.values()):
            raise ValueError(f"rate_limits needs exactly {sorted(names)}, each [per_caller, per_org] > 0")
        return v

    @field_validator("database_url")
    @classmethod
    def _db_url(cls, v: str) -> str:
        if not v.startswith(("sqlite:", "postgresql")):
            raise ValueError("database_url must be sqlite:///… or postgresql+psycopg://…")
        if v.startswith("postgresql://"):
            v = "postgresql+psycopg://" + v[len("postgresql://"):]
        return v

    @field_validator("jwt_algorithms")
    @classmethod
    def _provider_algorithms(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if a not in PROVIDER_ALGORITHMS]
        if bad or not v:
            raise ValueError(f"jwt_algorithms must be some of {sorted(PROVIDER_ALGORITHMS)}, not {bad or v}")
        return v

    @model_validator(mode="after")
    def _token_limits(self) -> "Settings":
        if self.jwks_url and not self.jwt_audience:
            raise ValueError("RECORDER_JWT_AUDIENCE must be set with RECORDER_JWKS_URL")
        if self.upload_token_ttl_s > self.upload_token_max_ttl_s:
            raise ValueError("RECORDER_UPLOAD_TOKEN_TTL_S must not exceed RECORDER_UPLOAD_TOKEN_MAX_TTL_S")
        return self

    @model_validator(mode="after")
    def _production_secrets(self) -> "Settings":
        if self.env == "production" and self.jwt_secret == DEV_JWT_SECRET:
            raise ValueError("RECORDER_JWT_SECRET must be set in production")
        if len(self.jwt_secret) < 32:
            raise ValueError("RECORDER_JWT_SECRET must be at least 32 characters (HS256)")
        return self

    @model_validator(mode="after")
    def _worker_backoff(self) -> "Settings":
        if self.worker_min_backoff_ms > self.worker_max_backoff_ms:
            raise ValueError("RECORDER_WORKER_MIN_BACKOFF_MS must not exceed RECORDER_WORKER_MAX_BACKOFF_MS")
        return self

    @property
    def api_base_url(self) -> str:
        return self.public_url or f"http://{self.api_host}:{self.api_port}"

    composite_max_height: int = Field(720, ge=180, le=2160, description="tallest composite video (16:9 rungs "
                                      "640×360 … 1920×1080): the canvas is the smallest rung whose tiles show "
                                      "every participant's video without shrinking it, up to this (two 320×180 "
                                      "cameras → 640×360); larger sources are scaled down to fit")
    composite_min_height: int = Field(360, ge=180, le=2160, description="smallest composite video height, so "
                                      "tiny sources and name labels stay legible (sources are scaled up to it)")
    composite_max_fps: int = Field(30, ge=5, le=60, description="highest composite frame rate: the composite "
                                   "runs at the lowest standard rate (10, 12, 15, 20, 24, 25, 30, 50, 60) at or "
                                   "above its fastest source's, up to this (15 fps cameras → 15 fps)")

    @model_validator(mode="after")
    def _composite_limits(self) -> "Settings":
        if self.composite_min_height > self.composite_max_height:
            raise ValueError("RECORDER_COMPOSITE_MIN_HEIGHT must not exceed RECORDER_COMPOSITE_MAX_HEIGHT")
        return self


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (entry points only)."""
    return Settings()
