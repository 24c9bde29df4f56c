"""Measure what an output really contains: flash and beep onsets, frame hashes."""
from __future__ import annotations

import hashlib
from pathlib import Path

import av
import numpy as np

from compositor.layout import Rect


def flash_onsets_ms(path: Path, region: Rect, threshold: float = 200.0) -> list[float]:
    """Times (ms) where the mean luma of `region` jumps above `threshold` (white flash)."""
    onsets, was = [], False
    with av.open(str(path)) as c:
        for frame in c.decode(c.streams.video[0]):
            y = frame.to_ndarray(format="gray")[region.y:region.bottom, region.x:region.right]
            now = float(y.mean()) > threshold
            if now and not was:
                onsets.append(float(frame.pts * frame.time_base * 1000))
            was = now
    return onsets


def decode_audio(path: Path, rate: int = 48000) -> tuple[np.ndarray, float]:
    """Mono float32 samples placed by their timestamps (holes stay silent), and the time (ms) of [0]."""
    pieces: list[tuple[int, np.ndarray]] = []
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    with av.open(str(path)) as c:
        for frame in c.decode(c.streams.audio[0]):
            at = int(round(float(frame.pts * frame.time_base) * rate))
            for f in resampler.resample(frame):
                pcm = f.to_ndarray().reshape(-1)
                pieces.append((at, pcm))
                at += pcm.size
    if not pieces:
        return np.zeros(0, np.float32), 0.0
    first = pieces[0][0]
    out = np.zeros(max(a + p.size for a, p in pieces) - first, dtype=np.float32)
    for at, pcm in pieces:
        out[at - first:at - first + pcm.size] = pcm
    return out, first * 1000 / rate


def beep_onsets_ms(path: Path, rate: int = 48000, threshold: float = 0.02, min_gap_ms: float = 300) -> list[float]:
    """Onsets (ms) of tone bursts: 2-ms RMS rising above `threshold` after silence."""
    pcm, start = decode_audio(path, rate)
    step = rate // 500
    n = pcm.size // step
    rms = np.sqrt(np.mean(np.square(pcm[: n * step].reshape(n, step)), axis=1))
    onsets: list[float] = []
    for i in np.flatnonzero(rms > threshold):
        t = start + i * 1000 * step / rate
        if not onsets or t - onsets[-1] > min_gap_ms:
            onsets.append(t)
    return onsets


def nearest_offsets(found: list[float], expected: list[float]) -> list[float]:
    """For each expected time, found - expected of the nearest found onset (inf if none)."""
    return [min((f - e for f in found), key=abs, default=float("inf")) for e in expected]


def frame_hashes(path: Path) -> list[str]:
    """SHA-256 of every decoded video frame (compare outputs across runs)."""
    out = []
    with av.open(str(path)) as c:
        for frame in c.decode(c.streams.video[0]):
            out.append(hashlib.sha256(frame.to_ndarray().tobytes()).hexdigest()[:16])
    return out


def packet_times_ms(path: Path) -> dict[str, list[tuple[float, float]]]:
    """(dts, pts) in ms of every packet with timestamps, per stream kind, in file order."""
    out: dict[str, list[tuple[float, float]]] = {}
    with av.open(str(path)) as c:
        for pkt in c.demux([s for s in c.streams if s.type in ("audio", "video")]):
            if pkt.dts is None or pkt.pts is None:
                continue
            tb = pkt.time_base * 1000
            out.setdefault(pkt.stream.type, []).append((float(pkt.dts * tb), float(pkt.pts * tb)))
    return out


def grid_residuals_ms(onsets: list[float], period_ms: float) -> list[float]:
    """How far each onset is from a regular grid of `period_ms` (phase = the median phase)."""
    if not onsets:
        return []
    wrapped = [((t - onsets[0] + period_ms / 2) % period_ms) - period_ms / 2 for t in onsets]
    ref = sorted(wrapped)[len(wrapped) // 2]
    return [w - ref for w in wrapped]
