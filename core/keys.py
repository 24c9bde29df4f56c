"""Deterministic object keys: one prefix per org, so every step can be re-run safely."""
from __future__ import annotations

import re

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_id(value: str, what: str = "id") -> str:
    """Reject ids that could escape a key prefix (`..`, `/`, control chars, too long)."""
    if not isinstance(value, str) or not _ID.match(value) or ".." in value:
        from core.errors import InvalidInput

        raise InvalidInput(f"invalid {what}: must match {_ID.pattern} without '..'", code=f"invalid_{what}")
    return value


def recording_prefix(org: str, recording_id: str) -> str:
    return f"{check_id(org, 'org')}/recordings/{check_id(recording_id, 'recording_id')}/"


def chunk_key(org: str, recording_id: str, track: str, seq: int, ext: str) -> str:
    return f"{recording_prefix(org, recording_id)}chunks/{check_id(track, 'track')}/{seq:06d}.{ext}"


def quarantine_key(org: str, recording_id: str, track: str, seq: int, sha256: str) -> str:
    return f"{recording_prefix(org, recording_id)}quarantine/{check_id(track, 'track')}/{seq:06d}-{sha256[:16]}.bin"


def window_key(org: str, recording_id: str, index: int, ext: str = "mp4") -> str:
    return f"{recording_prefix(org, recording_id)}windows/{index:06d}.{ext}"


def output_key(org: str, recording_id: str, name: str) -> str:
    return f"{recording_prefix(org, recording_id)}outputs/{name}"
