"""Structured JSON logs. Every line can carry `recording_id`, `room_id` and `phase`.

Bind them for a block with `bound(recording_id=..., phase=...)`; they ride in
contextvars, so they follow asyncio tasks and are reset on exit.

No token reaches a log line: `…token=<value>` in any logged string (URLs in uvicorn's
access and WebSocket lines, fields of our own events) becomes `…token=[redacted]`, and
fields named like a token are dropped to `[redacted]`.
"""
from __future__ import annotations

import logging
import re
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import structlog

CONTEXT_KEYS = ("recording_id", "room_id", "phase")
REDACTED = "[redacted]"
SECRET_FIELDS = frozenset({"token", "access_token", "authorization", "jwt"})
_TOKEN_PARAM = re.compile(r"(?i)([\w.-]*token=)[^&\s\"'#]+")


def redact(text: str) -> str:
    """`token=…`, `access_token=…` (any `*token=`) in a URL or line → `…token=[redacted]`."""
    return _TOKEN_PARAM.sub(r"\1" + REDACTED, text)


def redact_tokens(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: no token value in any field of a log line."""
    for key, value in event_dict.items():
        if key.lower() in SECRET_FIELDS and value:
            event_dict[key] = REDACTED
        elif isinstance(value, str) and "token=" in value.lower():
            event_dict[key] = redact(value)
    return event_dict


class RedactTokens(logging.Filter):
    """stdlib filter for uvicorn's loggers, whose lines carry the path + query in `record.args`
    (whatever handler they end up in, ours or uvicorn's own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


_REDACT_FILTER = RedactTokens()
URL_LOGGERS = ("uvicorn.access", "uvicorn.error")


def redact_server_logs() -> None:
    """Install the token filter on uvicorn's access/error loggers (idempotent)."""
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACT_FILTER not in logger.filters:
            logger.addFilter(_REDACT_FILTER)


def configure_logging(level: str = "INFO", json: bool = True, stream: Any = None) -> None:
    """Route structlog and stdlib logging to one JSON-lines stream."""
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_tokens,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    redact_server_logs()


def get_logger(name: str = "recorder") -> Any:
    """A structlog logger; context bound with `bound()` is merged into each line."""
    return structlog.get_logger(name)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Bind log context (e.g. recording_id, room_id, phase) for the duration of a block."""
    clean = {k: str(v) for k, v in fields.items() if v is not None}
    tokens = structlog.contextvars.bind_contextvars(**clean)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
