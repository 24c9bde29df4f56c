"""Stream a request body to a temporary file, hashing and counting as it goes.

The body is never held whole in memory: it is hashed and written in 256 KiB batches
from a worker thread (hashing 2 MB on the event loop would stall every other request),
and the upload stops with 413 as soon as it passes the size limit.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from typing import Any, AsyncIterator, BinaryIO

from starlette.concurrency import run_in_threadpool

from core.errors import InvalidInput, TooLarge

BATCH = 256 * 1024


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


def _absorb(out: BinaryIO, digest: Any, pieces: list[bytes]) -> None:
    """Hash and write one batch (in a worker thread: hashlib releases the GIL on large data)."""
    for piece in pieces:
        digest.update(piece)
    out.writelines(pieces)


async def spool_body(chunks: AsyncIterator[bytes], max_bytes: int, directory: str | None = None) -> Spooled:
    """Write the stream to a temp file; return its path, size, SHA-256 and first bytes."""
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
                    await run_in_threadpool(_absorb, out, digest, pending)
                    pending, pending_size = [], 0
            if pending:
                await run_in_threadpool(_absorb, out, digest, pending)
    except BaseException:
        os.unlink(path)
        raise
    if size == 0:
        os.unlink(path)
        raise InvalidInput("empty body", code="empty_body")
    return Spooled(path=path, size=size, sha256=digest.hexdigest(), head=head)
