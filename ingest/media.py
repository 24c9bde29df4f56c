"""What a chunk is: container sniffing from magic bytes (pure) and media validation.

WebM/Matroska and MP4 are validated by a structural walk in pure Python (`ingest.ebml`,
`ingest.isobmff`: element/box headers, track list, block/sample timing, sizes against the
file) — a few ms per 30-s chunk instead of ~100–150 ms of CPU for an `ffprobe` process.
`ffprobe` (the CLI; the API process never imports PyAV) remains the judge for Ogg and the
second opinion where a walker raises `Undecided` (legal input it does not model; each
walker's docstring lists exactly when). A PNG renamed `.webm` probes fine *as PNG* in
ffprobe, so the detected format is checked, not just success; a truncated WebM declares its
full Duration, so where the media really ends is compared with the declared duration.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field, replace
from typing import Any

from core.errors import InvalidInput, InvalidMedia, UnsupportedMedia
from core.logging import get_logger
from ingest import ebml, isobmff, matroska

log = get_logger("recorder.ingest.media")
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
    """415 unless the bytes start like the declared container (continuations are exempt:
    `ingest.continuation` checks that they continue their stream)."""
    if continuation:
        if container not in ("webm", "mp4"):
            raise UnsupportedMedia("continuation blobs are only supported for WebM and MP4",
                                   code="unsupported_continuation")
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
    checker: str = "ffprobe"  # "ebml" | "isobmff" | "ffprobe": who validated the chunk
    track_numbers: tuple[int, ...] = ()  # Matroska TrackNumbers / MP4 track_IDs; () from ffprobe

    def summary(self) -> dict[str, Any]:
        """The ledger's `Chunk.probe`; `track_numbers` lets continuation blobs be checked against it."""
        return {"format": self.format_name, "duration_ms": self.duration_ms, "streams": self.streams,
                "checker": self.checker, "track_numbers": list(self.track_numbers)}


def judge(format_name: str, streams: list[dict[str, Any]], declared_s: float | None, end_s: float | None,
          checker: str, need_frames: bool = False) -> ProbeResult:
    """Decide on a chunk's facts (pure): has A/V streams, has frames, not truncated.

    `declared_s` is the container's duration (Matroska Duration, mehd/mvhd, ffprobe's format
    duration), `end_s` where the last frame really ends; the chunk's duration is the declared
    one when there is one.
    """
    if not streams:
        raise InvalidMedia("no audio or video stream found", code="no_media_streams")
    if need_frames and end_s is None:  # a lone frame at pts 0 ends at 0.0: it has frames
        if declared_s:
            raise InvalidMedia(f"truncated: no frames but declares {declared_s:.2f}s", code="truncated_media")
        raise InvalidMedia("no audio or video frames", code="no_media_frames")
    if declared_s and end_s is not None and end_s < declared_s - TRUNCATION_TOLERANCE_S:
        raise InvalidMedia(f"truncated: media ends at {end_s:.2f}s but declares {declared_s:.2f}s",
                           code="truncated_media")
    duration = declared_s or end_s
    return ProbeResult(format_name=format_name, duration_ms=int(duration * 1000) if duration else None,
                       streams=streams, checker=checker)


def judge_matroska(mk: matroska.Matroska) -> ProbeResult:
    """A live blob (unknown-size Segment) may hold no whole block yet; any other file must."""
    result = judge("matroska,webm", mk.streams(), mk.duration_s, mk.end_s, "ebml", need_frames=not mk.live)
    return replace(result, track_numbers=tuple(sorted(mk.tracks)))


def judge_mp4(mp4: isobmff.Mp4) -> ProbeResult:
    result = judge("mov,mp4,m4a,3gp,3g2,mj2", mp4.streams(), mp4.duration_s, mp4.end_s, "isobmff", need_frames=True)
    return replace(result, track_numbers=tuple(sorted(mp4.tracks)))


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
    return judge(str(fmt.get("format_name", "")), streams, _float(fmt.get("duration")), packet_end_s, "ffprobe")


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
    """Validate a spooled chunk: the structural walk for WebM/MP4, ffprobe for Ogg and as the
    second opinion where the walk cannot decide. Corrupt/truncated → InvalidMedia (422)."""
    try:
        if container == "webm":
            return judge_matroska(ebml.read_matroska(path))
        if container == "mp4":
            return judge_mp4(isobmff.read_mp4(path))
    except (ebml.Undecided, isobmff.Undecided) as exc:
        log.info("probe_second_opinion", container=container, reason=str(exc))
    return ffprobe_file(path, container, timeout_s)


def ffprobe_file(path: str, container: str, timeout_s: float = 30.0) -> ProbeResult:
    """Run ffprobe once on a spooled chunk; corrupt or unreadable media → InvalidMedia."""
    cmd = ["ffprobe", "-v", "error", "-show_format", "-show_streams",
           "-show_entries", "packet=pts_time,duration_time", "-of", "json", path]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
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
