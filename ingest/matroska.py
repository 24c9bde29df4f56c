"""What a Matroska walk finds, as plain values: tracks, the last block per track, the file.

Pure: `ingest.ebml` fills these in while walking a file; `ingest.media.judge_matroska`
decides what they mean. Codec names and stream summaries follow ffprobe's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CODECS = {"V_VP8": "vp8", "V_VP9": "vp9", "V_AV1": "av1", "V_MPEG4/ISO/AVC": "h264", "V_MPEGH/ISO/HEVC": "hevc",
          "V_THEORA": "theora", "V_MPEG4/ISO/ASP": "mpeg4", "V_MJPEG": "mjpeg", "A_OPUS": "opus",
          "A_VORBIS": "vorbis", "A_AAC": "aac", "A_FLAC": "flac", "A_MPEG/L3": "mp3", "A_AC3": "ac3",
          "A_EAC3": "eac3", "A_PCM/INT/LIT": "pcm_s16le", "A_PCM/FLOAT/IEEE": "pcm_f32le"}
TRACK_TYPES = {1: "video", 2: "audio"}
OPUS_FRAME_NS = [10_000_000, 20_000_000, 40_000_000, 60_000_000] * 3 + [10_000_000, 20_000_000] * 2 \
    + [2_500_000, 5_000_000, 10_000_000, 20_000_000] * 4  # by TOC config (RFC 6716 §3.1)


def opus_packet_ns(toc: bytes) -> int | None:
    """Duration of one Opus packet from its TOC byte(s) (RFC 6716 §3.1), None if unreadable."""
    if not toc:
        return None
    frames = {0: 1, 1: 2, 2: 2}.get(toc[0] & 3)
    if frames is None:
        if len(toc) < 2:
            return None
        frames = toc[1] & 0x3F
    return OPUS_FRAME_NS[toc[0] >> 3] * frames


@dataclass
class TrackInfo:
    number: int
    kind: str | None
    codec_id: str = ""
    default_ns: int | None = None
    width: int | None = None
    height: int | None = None
    sample_rate: float | None = None
    channels: int | None = None

    def stream(self, index: int) -> dict[str, Any]:
        """The ffprobe-like summary of this track."""
        return {"index": index, "type": self.kind, "codec": CODECS.get(self.codec_id, self.codec_id.lower()),
                "width": self.width, "height": self.height,
                "sample_rate": str(int(self.sample_rate)) if self.sample_rate else None, "channels": self.channels}


@dataclass
class BlockTail:
    """The latest block (by time) seen on one track, and the span and count of its blocks."""

    time_ns: int = 0
    first_ns: int = 0
    duration_ns: int | None = None
    head: bytes = b""
    count: int = 0

    def add(self, time_ns: int, duration_ns: int | None, head: bytes) -> None:
        if not self.count or time_ns < self.first_ns:
            self.first_ns = time_ns
        if not self.count or time_ns >= self.time_ns:  # B-frames arrive in decode order
            self.time_ns, self.duration_ns, self.head = time_ns, duration_ns, head
        self.count += 1

    def frame_ns(self, track: TrackInfo) -> int | None:
        """Length of the last block when the file says it: BlockDuration, DefaultDuration, Opus TOC."""
        frame = self.duration_ns or track.default_ns
        if frame is None and track.codec_id == "A_OPUS" and len(self.head) > 1 and not self.head[0] & 0x06:
            frame = opus_packet_ns(self.head[1:])
        return frame

    def mean_gap_ns(self) -> int:
        return (self.time_ns - self.first_ns) // (self.count - 1) if self.count > 1 else 0


@dataclass
class Matroska:
    """Facts of a walked file; `media.judge` decides what they mean."""

    doc_type: str = "matroska"
    timecode_scale: int = 1_000_000
    duration_s: float | None = None
    live: bool = False
    cut_tail: bool = False
    tracks: dict[int, TrackInfo] = field(default_factory=dict)
    tails: dict[int, BlockTail] = field(default_factory=dict)

    @property
    def end_s(self) -> float | None:
        """Where the media ends: the largest block time plus its length where the file says it
        (as ffprobe counts). Only when no track says its frame length (a live video-only
        blob) is the last frame's length estimated from the mean block gap."""
        tails = [(t, self.tracks[n]) for n, t in self.tails.items() if n in self.tracks]
        frames = [t.frame_ns(track) for t, track in tails]
        estimate = all(f is None for f in frames)
        ends = [t.time_ns + (f if f is not None else (t.mean_gap_ns() if estimate else 0))
                for (t, _), f in zip(tails, frames)]
        return max(ends) / 1e9 if ends else None

    def streams(self) -> list[dict[str, Any]]:
        media = [t for t in self.tracks.values() if t.kind]
        return [t.stream(i) for i, t in enumerate(media)]
