"""Every request limit in one place: body sizes, list lengths and string sizes.

Bodies are limited while they stream in (`BodyLimit`, a pure ASGI middleware): a
Content-Length over the limit is answered 413 before a byte is read, and a chunked body
is cut off as soon as it passes the limit, so no request can make the API buffer more
than its route's limit. Chunk uploads have their own, larger limit (`max_chunk_bytes`);
every other body is a small JSON document (`max_body_bytes`).

The caps below are used by the request schemas of every package (pydantic `Field`s).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import errors
from core.http import error_response

MAX_BODY_BYTES = 256 * 1024        # default for every JSON body (RECORDER_MAX_BODY_BYTES)

ID_CHARS = 128                     # ids: recordings, tracks, participants, slots, candidates
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
KEY_CHARS = 200                    # client_key, Idempotency-Key
TITLE_CHARS = 256
NAME_CHARS = 256                   # display names of tracks and transcript speakers
CALL_NAME_CHARS = 128              # display names in a call (join tokens, presence)
ROLE_PATTERN = r"^[a-z_]{1,32}$"
REASON_CHARS = 64
MODEL_CHARS = 512                  # a model name or directory
TERMS = 200                        # vocabulary hints per org, room or recording
TERM_CHARS = 64
TRACKS = 32                        # tracks declared with one recording
QUERY_CHARS = 500                  # a search query
MAX_TIMELINE_MS = 7 * 24 * 3600 * 1000   # a span on one recording's timeline
MAX_EPOCH_MS = 4_100_000_000_000         # 2099: later wall-clock times are mistakes
INT_DIGITS = 16                    # longest integer accepted in a header or query string


@dataclass(frozen=True)
class RouteLimit:
    """A body limit for the paths matching `path` (a regular expression)."""

    path: str
    max_bytes: int
    code: str = "body_too_large"


class BodyLimit:
    """Pure ASGI middleware: 413 `{code, message}` once a body is over its route's limit.

    Nothing is buffered: the body passes through message by message while it is counted.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, routes: Sequence[RouteLimit] = ()) -> None:
        self.app = app
        self.default = RouteLimit("", max_bytes)
        self.routes = [(re.compile(r.path), r) for r in routes]

    def limit_for(self, path: str) -> RouteLimit:
        return next((limit for pattern, limit in self.routes if pattern.match(path)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        try:
            declared = content_length(scope)
        except errors.InvalidInput as exc:
            await _answer(scope, receive, send, exc)
            return
        if declared is not None and declared > limit.max_bytes:
            await _answer(scope, receive, send, too_large(limit))
            return
        guard = _Guard(limit, receive, send)
        try:
            await self.app(scope, guard.receive, guard.send)
        except Exception:
            if not guard.over or guard.started:
                raise
        if guard.over and not guard.started:
            await _answer(scope, receive, send, too_large(limit))


class _Guard:
    """Counts body bytes on the way in; once over, replaces the app's answer with the 413."""

    def __init__(self, limit: RouteLimit, receive: Receive, send: Send) -> None:
        self.limit, self._receive, self._send = limit, receive, send
        self.seen, self.over, self.started = 0, False, False

    async def receive(self) -> Message:
        if self.over:
            raise too_large(self.limit)
        message = await self._receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit.max_bytes:
                self.over = True
                raise too_large(self.limit)
        return message

    async def send(self, message: Message) -> None:
        if self.over and not self.started:
            return  # whatever the app says about a body it could not read: the 413 follows
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def too_large(limit: RouteLimit) -> errors.TooLarge:
    return errors.TooLarge(f"the request body is larger than {limit.max_bytes} bytes", code=limit.code)


def content_length(scope: Scope) -> int | None:
    """The declared Content-Length; InvalidInput unless it is a plain decimal number."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            raw = value.strip()
            if not raw.isdigit() or len(raw) > INT_DIGITS:
                raise errors.InvalidInput("Content-Length must be a non-negative integer",
                                          code="invalid_content_length")
            return int(raw)
    return None


async def _answer(scope: Scope, receive: Receive, send: Send, exc: errors.RecorderError) -> None:
    await error_response(exc)(scope, receive, send)
