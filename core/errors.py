"""The one error tree of interview-recorder.

    RecorderError                 code, message, retryable
    ├── InvalidInput              bad headers/body/ids               (never retried)
    ├── Unauthorized              missing/invalid/expired token
    ├── Forbidden                 wrong role or other org's data
    ├── NotFound                  unknown id
    ├── Conflict                  same key, other content; finalized recording
    ├── TooLarge                  body over the limit
    ├── UnsupportedMedia          wrong content type / magic bytes
    ├── InvalidMedia              does not probe/decode (corrupt, truncated)
    ├── InvalidState              valid request, wrong lifecycle state
    ├── RateLimited               retry after `retry_after` seconds  (retryable)
    └── DependencyDown            a service is unreachable            (retryable)
        ├── StorageError          S3
        ├── DatabaseError         SQL database
        └── QueueError            Redis / Dramatiq

Library errors are translated once, where the library is called. HTTP status codes
live in `core.http`, keyed on these classes.
"""
from __future__ import annotations

from typing import Any


class RecorderError(Exception):
    """Base of every error we raise on purpose."""

    code = "error"
    retryable = False

    def __init__(self, message: str = "", *, code: str | None = None, **details: Any) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip()
        if code:
            self.code = code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class InvalidInput(RecorderError):
    """The request is malformed."""

    code = "bad_request"


class Unauthorized(RecorderError):
    """A valid token is required."""

    code = "unauthorized"


class Forbidden(RecorderError):
    """The token does not allow this."""

    code = "forbidden"


class NotFound(RecorderError):
    """No such object."""

    code = "not_found"


class Conflict(RecorderError):
    """The request conflicts with what is stored."""

    code = "conflict"


class TooLarge(RecorderError):
    """The body is over the size limit."""

    code = "too_large"


class UnsupportedMedia(RecorderError):
    """The content type or container is not supported."""

    code = "unsupported_media"


class InvalidMedia(RecorderError):
    """The media does not probe or decode."""

    code = "invalid_media"


class InvalidState(RecorderError):
    """The object is not in a state that allows this."""

    code = "invalid_state"


class RateLimited(RecorderError):
    """Too many requests."""

    code = "rate_limited"
    retryable = True

    def __init__(self, message: str = "", *, retry_after: float = 1.0, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = max(1, int(retry_after + 0.999))


class DependencyDown(RecorderError):
    """A service we depend on is unavailable."""

    code = "dependency_down"
    retryable = True
    retry_after = 5


class StorageError(DependencyDown):
    """Object storage (S3) is unavailable."""

    code = "storage_unavailable"


class DatabaseError(DependencyDown):
    """The database is unavailable."""

    code = "database_unavailable"


class QueueError(DependencyDown):
    """The queue (Redis) is unavailable."""

    code = "queue_unavailable"
