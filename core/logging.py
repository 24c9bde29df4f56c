"""Structured JSON logs. Every line can carry `recording_id`, `room_id` and `phase`.

Bind them for a block with `bound(recording_id=..., phase=...)`; they ride in
contextvars, so they follow asyncio tasks and are reset on exit.
"""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import structlog

CONTEXT_KEYS = ("recording_id", "room_id", "phase")


def configure_logging(level: str = "INFO", json: bool = True, stream: Any = None) -> None:
    """Route structlog and stdlib logging to one JSON-lines stream."""
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
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
