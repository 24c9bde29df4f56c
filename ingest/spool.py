"""Stream a request body to a temporary file, hashing and counting as it goes.

The body is never held whole in memory: it is hashed and written in 256 KiB batches
from a worker thread (hashing 2 MB on the event loop would stall every other request),
and the upload stops with 413 as soon as it passes the size limit.

With a `sink` (a `core.storage.StreamingPut` to a staging key) every batch is also sent
on to S3 as it arrives, so the object is written while the body is still being received;
a body that fails (413, client gone, empty) aborts that PUT and S3 keeps nothing.
"""
from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from dataclasses import dataclass
from typing import Any, AsyncIterator, BinaryIO, Protocol

from starlette.concurrency import run_in_threadpool

from core.errors import DependencyDown, InvalidInput, StorageError, TooLarge
from core.logging import get_logger

log = get_logger("recorder.ingest")

BATCH = 256 * 1024
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # a full spool disk: 503 spool_full, retry later


class Sink(Protocol):
    key: str

    def feed(self, pieces: list[bytes]) -> None: ...
    def finish(self) -> None: ...
    def abort(self) -> None: ...


@dataclass
class Spooled:
    path: str
    size: int
    sha256: str
    head: bytes
    staged: str | None = None  # the S3 key holding exactly these bytes, if the sink's PUT succeeded

    def discard(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _absorb(out: BinaryIO, digest: Any, pieces: list[bytes], sink: Sink | None = None) -> None:
    """Hash and write one batch (in a worker thread: hashlib releases the GIL on large data)."""
    if sink is not None:
        sink.feed(pieces)
    for piece in pieces:
        digest.update(piece)
    out.writelines(pieces)


async def spool_body(chunks: AsyncIterator[bytes], max_bytes: int, directory: str | None = None,
                     sink: Sink | None = None) -> Spooled:
    """Write the stream to a temp file (and to `sink`); return its path, size, SHA-256, first bytes."""
    fd, path = tempfile.mkstemp(prefix="chunk-", suffix=".part", dir=directory)
    digest, size, head = hashlib.sha256(), 0, b""
    pending: list[bytes] = []
    pending_size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for data in chunks:
                size += len(data)
                if size > max_bytes:
                    raise TooLarge(f"chunk is larger than {max_bytes} bytes", code="chunk_too_large")
                if len(head) < 64:
                    head = (head + data)[:64]
                pending.append(data)
                pending_size += len(data)
                if pending_size >= BATCH:
                    await run_in_threadpool(_absorb, out, digest, pending, sink)
                    pending, pending_size = [], 0
            if pending:
                await run_in_threadpool(_absorb, out, digest, pending, sink)
    except BaseException as exc:
        os.unlink(path)
        if sink is not None:
            await run_in_threadpool(sink.abort)
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:  # no partial file is left
            raise DependencyDown("the upload spool disk is full", code="spool_full") from exc
        raise
    if size == 0:
        os.unlink(path)
        if sink is not None:
            await run_in_threadpool(sink.abort)
        raise InvalidInput("empty body", code="empty_body")
    spooled = Spooled(path=path, size=size, sha256=digest.hexdigest(), head=head)
    if sink is not None:
        spooled.staged = await run_in_threadpool(_finish, sink)
    return spooled


def _finish(sink: Sink) -> str | None:
    """The staging key, or None if its PUT failed (the store step then writes from the spool)."""
    try:
        sink.finish()
    except StorageError as exc:
        log.warning("staging_put_failed", key=sink.key, error=exc.message)
        return None
    return sink.key
