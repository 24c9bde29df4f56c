"""What a chunk is: container sniffing from magic bytes (pure) and ffprobe validation.

The API process never imports PyAV: probing runs the `ffprobe` CLI through
ffmpeg-python. A PNG renamed `.webm` probes fine *as PNG*, so the detected format is
checked, not just success; a truncated WebM probes with its full Duration, so the
last packet's end is compared with the declared duration.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from typing import Any

from core.errors import InvalidInput, InvalidMedia, UnsupportedMedia

CONTENT_TYPES: dict[str, str] = {
    "video/webm": "webm", "audio/webm": "webm", "video/x-matroska": "webm",
    "video/mp4": "mp4", "audio/mp4": "mp4", "audio/ogg": "ogg", "video/ogg": "ogg",
}
FFPROBE_FORMATS = {"webm": ("matroska", "webm"), "mp4": ("mov", "mp4", "m4a"), "ogg": ("ogg",)}
_MP4_BOXES = (b"ftyp", b"styp", b"moof", b"moov", b"free", b"skip", b"sidx")
TRUNCATION_TOLERANCE_S = 0.25  # last packet may end up to ~one frame early


def container_for(content_type: str) -> str:
    """Map a Content-Type (codecs parameters allowed) to our container name, or 415."""
    base = content_type.split(";")[0].strip().lower()
    if base not in CONTENT_TYPES:
        raise UnsupportedMedia(f"unsupported Content-Type {base or '(none)'!r}; "
                               f"use one of {sorted(CONTENT_TYPES)}", code="unsupported_content_type")
    return CONTENT_TYPES[base]


def sniff_container(head: bytes) -> str | None:
    """Container from the first bytes: webm (EBML), mp4 (ISO BMFF box), ogg — else None."""
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    if head.startswith(b"OggS"):
        return "ogg"
    if len(head) >= 8 and head[4:8] in _MP4_BOXES:
        return "mp4"
    return None


def check_magic(head: bytes, container: str, continuation: bool) -> None:
    """415 unless the bytes start like the declared container (continuations are exempt)."""
    if continuation:
        if container != "webm":
            raise UnsupportedMedia("continuation blobs are only supported for WebM", code="unsupported_continuation")
        return
    found = sniff_container(head)
    if found != container:
        raise UnsupportedMedia(f"body does not look like {container} (detected: {found or 'unknown'})",
                               code="media_type_mismatch")


@dataclass(frozen=True)
class ProbeResult:
    format_name: str
    duration_ms: int | None
    streams: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"format": self.format_name, "duration_ms": self.duration_ms, "streams": self.streams}


def parse_probe(container: str, probe: dict[str, Any], packet_end_s: float | None) -> ProbeResult:
    """Judge ffprobe's JSON (pure): right format, has A/V streams, not truncated."""
    fmt = probe.get("format", {})
    names = set(str(fmt.get("format_name", "")).split(","))
    if not names & set(FFPROBE_FORMATS[container]):
        raise UnsupportedMedia(f"body is {fmt.get('format_name') or 'unknown'}, not {container}",
                               code="media_type_mismatch")
    streams = [{"index": s.get("index"), "type": s.get("codec_type"), "codec": s.get("codec_name"),
                "width": s.get("width"), "height": s.get("height"), "sample_rate": s.get("sample_rate"),
                "channels": s.get("channels")}
               for s in probe.get("streams", []) if s.get("codec_type") in ("audio", "video")]
    if not streams:
        raise InvalidMedia("no audio or video stream found", code="no_media_streams")
    declared = _float(fmt.get("duration"))
    if declared and packet_end_s is not None and packet_end_s < declared - TRUNCATION_TOLERANCE_S:
        raise InvalidMedia(f"truncated: media ends at {packet_end_s:.2f}s but declares {declared:.2f}s",
                           code="truncated_media")
    duration = declared if declared else packet_end_s
    return ProbeResult(format_name=str(fmt.get("format_name", "")),
                       duration_ms=int(duration * 1000) if duration else None, streams=streams)


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def packet_end(packets: list[dict[str, Any]]) -> float | None:
    """Largest pts+duration over ffprobe's packets (where the media really ends)."""
    ends = [(_float(p.get("pts_time")) or 0.0) + (_float(p.get("duration_time")) or 0.0)
            for p in packets if _float(p.get("pts_time")) is not None]
    return max(ends) if ends else None


def probe_file(path: str, container: str, timeout_s: float = 30.0) -> ProbeResult:
    """Run ffprobe once on a spooled chunk; corrupt or unreadable media → InvalidMedia."""
    cmd = ["ffprobe", "-v", "error", "-show_format", "-show_streams",
           "-show_entries", "packet=pts_time,duration_time", "-of", "json", path]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise InvalidMedia("probing took too long", code="probe_timeout") from exc
    except FileNotFoundError as exc:  # pragma: no cover - bootstrap installs ffmpeg
        raise InvalidInput("ffprobe is not installed on this server", code="ffprobe_missing") from exc
    if done.returncode != 0:
        raise InvalidMedia(f"does not probe: {done.stderr.strip()[-300:]}", code="corrupt_media")
    try:
        probe = json.loads(done.stdout or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidMedia("ffprobe output unreadable", code="corrupt_media") from exc
    return parse_probe(container, probe, packet_end(probe.get("packets", [])))
