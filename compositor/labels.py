"""Name labels burnt into tiles.

The FFmpeg bundled with PyAV has no `drawtext` (no libfreetype), so a label is rendered
once per (text, height) by the system `ffmpeg` CLI's drawtext into an 8-bit mask, and
blended into each tile's planes with numpy. Without a usable CLI, labels are skipped
(`render_label` returns None and the caller logs it).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import av
import numpy as np

from compositor.layout import Rect

__all__ = ["render_label", "render_labels", "burn_label", "labels_available"]

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


@lru_cache(maxsize=1)
def labels_available() -> bool:
    return shutil.which("ffmpeg") is not None


def render_label(text: str, height: int) -> np.ndarray | None:
    """Gray mask (h × w, 0..255) of `text` in white on black, `height` px tall; None if unavailable."""
    return render_labels((text,), height)[0]


@lru_cache(maxsize=256)
def render_labels(texts: tuple[str, ...], height: int) -> tuple[np.ndarray | None, ...]:
    """Masks for several labels with one ffmpeg run (they are stacked vertically, then split)."""
    clean = tuple(" ".join(t.split())[:48] for t in texts)
    if not any(clean) or height < 8 or not labels_available():
        return tuple(None for _ in texts)
    width = _even(height * 0.62 * max(len(t) for t in clean) + height)
    with tempfile.TemporaryDirectory(prefix="label-") as tmp:
        font = f"fontfile={FONT}:" if FONT.exists() else ""
        draws = []
        for i, text in enumerate(clean):
            txt = Path(tmp) / f"label{i}.txt"
            txt.write_text(text or " ", encoding="utf-8")
            draws.append(f"drawtext={font}textfile={txt}:fontcolor=white:fontsize={int(height * 0.7)}"
                         f":x={height // 4}:y={i * height}+({height}-th)/2")
        proc = subprocess.run(
            ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi",
             "-i", f"color=c=black:s={width}x{height * len(clean)}:d=0.04", "-vf", ",".join(draws),
             "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
            capture_output=True, timeout=20)
    if proc.returncode != 0 or len(proc.stdout) != width * height * len(clean):
        return tuple(None for _ in texts)
    stacked = np.frombuffer(proc.stdout, dtype=np.uint8).reshape(len(clean) * height, width)
    return tuple(_trim(stacked[i * height:(i + 1) * height], height) if clean[i] else None
                 for i in range(len(clean)))


def _trim(mask: np.ndarray, height: int) -> np.ndarray:
    """Cut the mask just after the text's last lit column."""
    cols = np.flatnonzero(mask.max(axis=0) > 0)
    end = _even(min(mask.shape[1], (cols[-1] if cols.size else 0) + height // 4 + 2))
    return mask[:, :end].copy()


def _even(v: float) -> int:
    return max(2, int(v) // 2 * 2)


def burn_label(frame: av.VideoFrame, mask: np.ndarray, box: Rect) -> None:
    """Blend a label (dark box at 35 %, white text) into a yuv420p frame in place at `box`."""
    h, w = min(box.h, mask.shape[0]), min(box.w, mask.shape[1])
    keep, add = _weights(mask)
    y = _plane(frame, 0, frame.height)
    region = y[box.y:box.y + h, box.x:box.x + w]
    # y·0.35·(1-α) + 235·α in 7-bit fixed point: the whole box in uint16, no float temporaries.
    region[:] = (region * keep[:h, :w] + add[:h, :w]) >> 7
    for idx in (1, 2):  # neutral chroma under the box: grey/white, not tinted
        c = _plane(frame, idx, frame.height // 2)
        c[box.y // 2:(box.y + h) // 2, box.x // 2:(box.x + w) // 2] = 128


_WEIGHTS: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _weights(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel (keep, add) of a mask, computed once per mask (masks are cached by render_labels)."""
    cached = _WEIGHTS.get(id(mask))
    if cached is None or cached[0] is not mask:
        alpha = mask.astype(np.float32) / 255.0
        keep = np.round(0.35 * (1 - alpha) * 128).astype(np.uint16)
        add = np.round(235 * alpha * 128).astype(np.uint16)
        cached = _WEIGHTS[id(mask)] = (mask, keep, add)
    return cached[1], cached[2]


def _plane(frame: av.VideoFrame, index: int, rows: int) -> np.ndarray:
    plane = frame.planes[index]
    return np.frombuffer(plane, dtype=np.uint8).reshape(rows, plane.line_size)
