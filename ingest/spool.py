"""Stream a request body to a temporary file, hashing and counting as it goes.

The body is never held whole in memory: it is hashed and written in 256 KiB batches
from a worker thread (hashing 2 MB on the event loop would stall every other request),
and the upload stops with 413 as soon as it passes the size limit.

With a `sink` (a `core.storage.StreamingPut` to the chunk key) every batch is also sent
on to S3 as it arrives, so the object is written while the body is still being received;
the caller waits for that PUT (`finish`) once it has checked the bytes. A body that fails
(413, client gone, empty, full spool) aborts the PUT and S3 keeps nothing.
"""
from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from starlette.concurrency import run_in_threadpool

from core.errors import DependencyDown, InvalidInput, TooLarge

BATCH = 256 * 1024
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # a full spool disk: 503 spool_full, retry later


class Sink(Protocol):
    def feed(self, pieces: list[bytes]) -> None: ...
    def abort(self) -> None: ...


@dataclass
class Spooled:
    path: str
    size: int
    sha256: str
    head: bytes

    def discard(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _absorb(out: BinaryIO, digest: Any, pieces: list[bytes], sink: Sink | None = None) -> None:
    """Hash and write one batch, then send it on (in a worker thread: hashlib releases the GIL
    on large data). Written first, so a full disk stops the body before the sink has all of it:
    a PUT short of its length is dropped by S3; a complete one could still land."""
    for piece in pieces:
        digest.update(piece)
    out.writelines(pieces)
    out.flush()
    if sink is not None:
        sink.feed(pieces)


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
    return Spooled(path=path, size=size, sha256=digest.hexdigest(), head=head)
