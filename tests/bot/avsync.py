"""Measuring audio/video sync in the bot's recorded chunks (shared by the sync tests).

Chunks are `(path, start_ms)`: a WebM file and its declared start (the ledger's `start_epoch_ms`,
i.e. the bot's `X-Chunk-Start`). Every decoded frame is placed at `start_ms + pts`, so what
is measured is the recording as the rest of the product will line it up, not the files alone.
"""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np

from core import keys
from core.storage import ObjectStore
from tests.media import FakeCapture, frame_number

Chunks = list[tuple[Path, int]]


def onsets(times_ms: list[float], gap_ms: float = 300) -> list[float]:
    """First time of each burst (bursts are > gap_ms apart)."""
    ts = sorted(times_ms)
    return [t for i, t in enumerate(ts) if i == 0 or t - ts[i - 1] > gap_ms]


def decode(path: Path, kind: str) -> Iterator[Any]:
    with av.open(str(path)) as c:
        yield from c.decode(**{kind: 0})


def beep_times(chunks: Chunks) -> list[float]:
    """Timeline ms of each beep's first loud sample (> 0.1 of full scale)."""
    loud: list[float] = []
    for path, start in chunks:
        for frame in decode(path, "audio"):
            x = np.abs(frame.to_ndarray().astype(np.float32)).max(axis=0)
            if frame.format.name.startswith("s16"):
                x /= 32768
            t0 = start + float(frame.pts * frame.time_base) * 1000
            loud += [t0 + i * 1000 / frame.sample_rate for i in np.flatnonzero(x > 0.1)[:1]]
    return onsets(loud)


def flash_times(chunks: Chunks) -> list[float]:
    """Timeline ms of each flash's first white frame."""
    bright: list[float] = []
    for path, start in chunks:
        for frame in decode(path, "video"):
            if frame.to_ndarray(format="gray").mean() > 200:
                bright.append(start + float(frame.pts * frame.time_base) * 1000)
    return onsets(bright)


def numbered_flash_times(chunks: Chunks, capture: FakeCapture) -> list[float]:
    """Timeline ms where each flash of a `fake_capture` camera began.

    Each white frame carries its frame number, so a flash whose first frame the sender dropped
    (a loaded encoder does) is still placed at its start: `t - (number - first flash frame) / fps`.
    """
    starts: list[float] = []
    for path, start in chunks:
        for frame in decode(path, "video"):
            gray = frame.to_ndarray(format="gray")
            if gray[: gray.shape[0] * 8 // 9].mean() <= 200:
                continue
            n = frame_number(gray)
            first = next((e for e in capture.event_frames if e <= n < e + capture.flash_frames), None)
            assert first is not None, f"white frame numbered {n}: not a flash of {capture.event_frames}"
            starts.append(start + float(frame.pts * frame.time_base) * 1000 - (n - first) * 1000 / capture.fps)
    return onsets(starts)


def pairs(beeps: list[float], flashes: list[float], within_ms: float) -> list[tuple[float, float]]:
    """Each beep with the flash nearest to it, if one is within `within_ms`."""
    out = []
    for b in beeps:
        near = min(flashes, key=lambda f: abs(f - b), default=None)
        if near is not None and abs(near - b) <= within_ms:
            out.append((b, near))
    return out


def download_tracks(store: ObjectStore, ledger: dict[str, Any], into: Path, org: str = "acme") -> dict[str, Chunks]:
    """Every chunk of the recording, by track id, as `(local file, declared start in epoch ms)`, in seq order."""
    files: dict[str, Chunks] = {}
    for t in ledger["tracks"]:
        for c in sorted(t["chunks"], key=lambda c: c["seq"]):
            local = into / f"{t['track_id']}-{c['seq']}.{c['container']}"
            store.download(keys.chunk_key(org, ledger["recording_id"], t["track_id"], c["seq"], c["container"]),
                           str(local))
            files.setdefault(t["track_id"], []).append((local, c["start_epoch_ms"]))
    return files


def decode_errors(path: Path) -> str:
    """What FFmpeg (the CLI, another decoder build than PyAV's) reports decoding every frame.

    Frames keep their own times and time base on the way to the null muxer: by default the
    CLI retimes them to 1/frame-rate, and two real camera frames 13 ms apart (a capture
    hiccup) would be reported as "non monotonically increasing dts", which is not a decode
    error."""
    run = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-fps_mode", "passthrough",
                          "-enc_time_base", "-1", "-f", "null", "-"],
                         check=False, capture_output=True, text=True, timeout=60)
    return run.stderr.strip() or ("" if run.returncode == 0 else f"exit {run.returncode}")
