"""Decode a chunk's audio to 16 kHz mono float32 with PyAV (the only place av is used here).

Browser chunks carry 48 kHz stereo Opus/AAC; the model wants 16 kHz mono. A gap in the
audio timestamps (lost packets) is filled with silence so later speech keeps its time.
Continuation blobs (timeslice recorders) are decoded as the byte-join of their stream;
`skip_samples` drops what earlier chunks already delivered.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from core.errors import InvalidMedia
from core.logging import get_logger

SAMPLE_RATE = 16_000
GAP_FILL_S = 0.1  # timestamp jumps longer than this become silence

log = get_logger("transcribe.audio")


@dataclass(frozen=True)
class Decoded:
    samples: np.ndarray  # float32 mono 16 kHz, after `skip_samples`
    start_s: float  # pts of the first audio frame of the stream (seconds)
    total_samples: int  # length of the whole decoded stream (before skipping)
    truncated: bool = False  # decoding stopped early on damaged trailing data


def _source(src: str | Path | bytes | BinaryIO) -> str | BinaryIO:
    if isinstance(src, bytes):
        return io.BytesIO(src)
    return str(src) if isinstance(src, Path) else src


def _append(parts: list[np.ndarray], frames: list, length: int) -> int:
    for out in frames:
        arr = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
        parts.append(arr)
        length += arr.size
    return length


def decode(src: str | Path | bytes | BinaryIO, skip_samples: int = 0) -> Decoded:
    """All audio of the first audio stream as 16 kHz mono float32 (raises InvalidMedia)."""
    parts: list[np.ndarray] = []
    length, start_s, truncated = 0, None, False
    try:
        container = av.open(_source(src), mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InvalidMedia(f"cannot open media: {exc}", code="undecodable_audio") from exc
    with container:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise InvalidMedia("no audio stream in chunk", code="no_audio")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        try:
            for frame in container.decode(stream):
                if frame.pts is not None and frame.time_base is not None:
                    pts_s = max(0.0, float(frame.pts * frame.time_base))
                    start_s = pts_s if start_s is None else start_s
                    expected = int(round((pts_s - start_s) * SAMPLE_RATE))
                    if expected - length > GAP_FILL_S * SAMPLE_RATE:
                        parts.append(np.zeros(expected - length, dtype=np.float32))
                        length = expected
                length = _append(parts, resampler.resample(frame), length)
        except (av.FFmpegError, ValueError) as exc:
            if length == 0:
                raise InvalidMedia(f"audio does not decode: {exc}", code="undecodable_audio") from exc
            log.warning("audio_truncated", error=str(exc), decoded_s=round(length / SAMPLE_RATE, 2))
            truncated = True
        length = _append(parts, resampler.resample(None), length)
    samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return Decoded(samples[skip_samples:], start_s or 0.0, int(samples.size), truncated)
