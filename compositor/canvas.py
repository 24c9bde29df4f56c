"""One reusable yuv420p output picture; a tile is redrawn only when it shows something new.

Stacking with an FFmpeg filter graph (buffer → xstack → pad → fps) allocates and copies a
whole output picture per frame, in three filters on one thread, and burning labels into
the graph's output then needs `make_writable()` (one more full copy). Here the canvas is
allocated once; a tile's planes are copied in (after swscale when the source is not
tile-sized) only when that tile's picture changed, and its label is blended once per
redraw into the small label box. libx264 copies its input picture inside `encode()`,
so the buffer can be redrawn as soon as `encode()` returns.
"""
from __future__ import annotations

from typing import Hashable

import av
import numpy as np

from compositor.labels import burn_label
from compositor.layout import Rect, fit

__all__ = ["Canvas", "plane_array", "BLACK_YUV"]

BLACK_YUV = (16, 128, 128)  # limited-range black, what xstack's/pad's "black" fill produces


def plane_array(frame: av.VideoFrame, index: int) -> np.ndarray:
    """Writable view of one plane of a yuv420p frame: rows × line_size bytes (padding included)."""
    plane = frame.planes[index]
    rows = frame.height if index == 0 else frame.height // 2
    return np.frombuffer(plane, dtype=np.uint8).reshape(rows, plane.line_size)


class Canvas:
    """The output picture of the compositor, reused for every encoded frame."""

    def __init__(self, width: int, height: int) -> None:
        self.frame = av.VideoFrame(width, height, "yuv420p")
        self.planes = [plane_array(self.frame, i) for i in range(3)]
        for plane, value in zip(self.planes, BLACK_YUV):
            plane[:] = value
        self.shown: dict[int, Hashable] = {}

    def draw(self, slot: int, rect: Rect, ident: Hashable, src: av.VideoFrame | None,
             label: tuple[np.ndarray, Rect] | None = None) -> bool:
        """Show `src` (black if None) in `rect`, aspect kept, with `label`; no-op if `ident` is shown."""
        if self.shown.get(slot) == ident:
            return False
        inner = fit(src.width, src.height, rect) if src is not None else None
        if inner != rect:
            self._fill(rect)
        if src is not None and inner is not None:
            if (src.width, src.height, src.format.name) != (inner.w, inner.h, "yuv420p"):
                src = src.reformat(inner.w, inner.h, "yuv420p")
            self._copy(src, inner)
        if label is not None:
            burn_label(self.frame, *label)
        self.shown[slot] = ident
        return True

    def _fill(self, rect: Rect) -> None:
        for index, value in enumerate(BLACK_YUV):
            div = 1 if index == 0 else 2
            self.planes[index][rect.y // div:rect.bottom // div, rect.x // div:rect.right // div] = value

    def _copy(self, src: av.VideoFrame, at: Rect) -> None:
        for index in range(3):
            div = 1 if index == 0 else 2
            part = plane_array(src, index)
            h, w = at.h // div, at.w // div
            self.planes[index][at.y // div:at.y // div + h, at.x // div:at.x // div + w] = part[:h, :w]
