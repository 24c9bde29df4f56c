"""Bench helpers: timing, generated inputs (static-ish "talking head" clips), event checks."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

from tests.compositor.measure import beep_onsets_ms, nearest_offsets

EVENTS_EVERY_S = 2.5  # a beep every 2.5 s from 1 s on: the correctness probe


def timed(fn: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    """Best wall time of `repeat` runs (seconds) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def ffmpeg(*args: str, timeout: float = 600) -> None:
    proc = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-1500:])


def events(seconds: float) -> list[float]:
    t, out = 1.0, []
    while t < seconds - 0.5:
        out.append(round(t, 3))
        t += EVENTS_EVERY_S
    return out


def interview_clip(path: Path, seconds: float, size: tuple[int, int] = (640, 360), label: str = "",
                   beeps: Sequence[float] = ()) -> Path:
    """VP8 + Opus WebM: colour bars with a running clock (mostly static, like a talking head),
    a 1 kHz beep at each of `beeps` (s)."""
    w, h = size
    expr = "+".join(f"between(t,{b},{b + 0.1})" for b in beeps) or "0"
    ffmpeg("-f", "lavfi", "-i", f"smptebars=size={w}x{h}:rate=30:duration={seconds}",
           "-f", "lavfi", "-i", f"aevalsrc='0.4*sin(2*PI*1000*t)*({expr})':s=48000:d={seconds}",
           "-vf", f"drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf:"
                  f"text='{label} %{{pts\\:hms}}':x=10:y=h-th-10:fontsize=h/12:fontcolor=white:box=1:boxcolor=black",
           "-c:v", "libvpx", "-b:v", "500k", "-deadline", "realtime", "-cpu-used", "8", "-g", "30",
           "-c:a", "libopus", "-b:a", "48k", "-t", str(seconds), "-f", "webm", str(path))
    return path


def beep_error_ms(path: Path, expected_ms: Sequence[float]) -> float:
    """Largest |found - expected| over the expected beeps (inf if one is missing)."""
    offsets = nearest_offsets(beep_onsets_ms(path), list(expected_ms))
    return max((abs(o) for o in offsets), default=0.0)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
