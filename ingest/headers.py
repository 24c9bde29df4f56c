"""Chunk upload headers → a typed value (pure; every problem is a clear 400/415)."""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Mapping

from pydantic import ValidationError

from core.errors import InvalidInput
from core.limits import ID_CHARS, INT_DIGITS, NAME_CHARS
from ingest.media import container_for
from ingest.schemas import TrackDeclare

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
MIN_EPOCH_MS = 1_500_000_000_000     # 2017: anything earlier is a unit mistake (seconds?)
MAX_EPOCH_MS = 4_100_000_000_000     # 2099
MAX_DURATION_MS = 10 * 60 * 1000
MAX_SEQ = 999_999


@dataclass(frozen=True)
class ChunkHeaders:
    content_type: str
    container: str
    sha256: str
    start_epoch_ms: int
    duration_ms: int | None
    continuation: bool
    declared_length: int | None


def parse_sha256(headers: Mapping[str, str]) -> str:
    """`X-Content-SHA256: <hex>` or `Digest: sha-256=<base64>` (RFC 3230)."""
    value = (headers.get("x-content-sha256") or "").strip().lower()
    if value:
        if not _HEX64.match(value):
            raise InvalidInput("X-Content-SHA256 must be 64 hex characters", code="invalid_sha256")
        return value
    for part in (headers.get("digest") or "").split(","):
        algo, _, b64 = part.strip().partition("=")
        if algo.lower() == "sha-256" and b64:
            try:
                raw = base64.b64decode(b64, validate=True)
            except ValueError:  # binascii.Error, or non-ASCII text
                raise InvalidInput("Digest sha-256 is not valid base64", code="invalid_sha256") from None
            if len(raw) != 32:
                raise InvalidInput("Digest sha-256 has the wrong length", code="invalid_sha256")
            return raw.hex()
    raise InvalidInput("missing X-Content-SHA256 (or Digest: sha-256=…) header", code="missing_sha256")


def _int_header(headers: Mapping[str, str], name: str, lo: int, hi: int, required: bool) -> int | None:
    raw = (headers.get(name) or "").strip()
    if not raw:
        if required:
            raise InvalidInput(f"missing {name} header", code=f"missing_{name.replace('-', '_')}")
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > INT_DIGITS:  # not '١٢٣', '²', '-1', '1e3'
        raise InvalidInput(f"{name} must be a non-negative integer", code=f"invalid_{name.replace('-', '_')}")
    value = int(raw)
    if not lo <= value <= hi:
        raise InvalidInput(f"{name} out of range [{lo}, {hi}]", code=f"invalid_{name.replace('-', '_')}")
    return value


def parse_chunk_headers(headers: Mapping[str, str]) -> ChunkHeaders:
    """Validate everything a chunk PUT must say about itself (lower-case header names)."""
    content_type = headers.get("content-type", "")
    container = container_for(content_type)
    start = _int_header(headers, "x-chunk-start", MIN_EPOCH_MS, MAX_EPOCH_MS, required=True)
    duration = _int_header(headers, "x-chunk-duration", 0, MAX_DURATION_MS, required=False)
    length = _int_header(headers, "content-length", 0, 2**62, required=False)
    continuation = (headers.get("x-chunk-continuation") or "").strip().lower() in ("1", "true", "yes")
    return ChunkHeaders(content_type=content_type.split(";")[0].strip().lower(), container=container,
                        sha256=parse_sha256(headers), start_epoch_ms=start or 0, duration_ms=duration,
                        continuation=continuation, declared_length=length)


def check_seq(seq: int) -> int:
    if not 0 <= seq <= MAX_SEQ:
        raise InvalidInput(f"seq must be in [0, {MAX_SEQ}]", code="invalid_seq")
    return seq


_TRACK_HEADERS = {"kind": "X-Track-Kind", "role": "X-Track-Role", "display_name": "X-Display-Name",
                  "participant_id": "X-Participant-Id"}


def parse_track_headers(headers: Mapping[str, str]) -> dict[str, str] | None:
    """`X-Track-Kind` (+ optional X-Track-Role, X-Display-Name, X-Participant-Id) declares a
    new track on its first chunk; None without X-Track-Kind."""
    kind = (headers.get("x-track-kind") or "").strip()
    if not kind:
        return None
    try:
        decl = TrackDeclare(track_id="t", kind=kind, role=headers.get("x-track-role", "participant"),  # type: ignore[arg-type]
                            display_name=headers.get("x-display-name", "")[:NAME_CHARS],
                            participant_id=headers.get("x-participant-id", "")[:ID_CHARS])
    except ValidationError as exc:
        names = sorted({_TRACK_HEADERS.get(str(e["loc"][0]), "X-Track-Kind") for e in exc.errors() if e["loc"]})
        raise InvalidInput(f"invalid track declaration: {', '.join(names)}", code="invalid_track_headers") from None
    return decl.model_dump(exclude={"track_id"})
