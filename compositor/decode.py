"""Decode stitched tracks (timestamps = timeline ms) into what the compositor needs.

`video_frames` yields (timeline_ms, frame) from a little before a window; `audio_samples`
returns a mono float32 buffer covering an exact sample range of the timeline, with
silence wherever the track had no audio. Audio frames are laid end to end unless their
timestamps jump by more than `resync_ms` (a gap, or an overlap at a chunk seam, where the
later chunk wins), so 1-ms timestamp rounding in Matroska never produces clicks and
codec padding at chunk ends never accumulates into drift.
"""
from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from compositor.probe import open_media

__all__ = ["video_frames", "audio_samples", "DecodeAhead"]

AV_TIME_BASE = 1_000_000


def _seek(container: av.container.InputContainer, stream: av.stream.Stream, ms: float) -> None:
    if ms <= 0:
        return
    try:
        container.seek(int(ms * 1000), backward=True, any_frame=False)  # AV_TIME_BASE (µs)
    except av.error.FFmpegError:
        container.seek(0)


def video_frames(path: Path, start_ms: float, end_ms: float, preroll_ms: float = 1000.0,
                 threads: int = 0) -> Iterator[tuple[float, av.VideoFrame]]:
    """Frames of the first video stream from the keyframe before `start_ms - preroll_ms` to `end_ms`.

    threads: 0 = FFmpeg's choice with frame + slice threading (thread_type AUTO: the default
    slice-only threading is much slower); 1 = no decoder threads, for callers that already
    decode several inputs in threads of their own (`DecodeAhead`), where per-decoder frame
    threads only add hand-offs and context switches on a small machine.
    """
    with open_media(path) as container:
        if not container.streams.video:
            return
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        _seek(container, stream, start_ms - preroll_ms)
        num, den = stream.time_base.numerator * 1000, stream.time_base.denominator
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            t_ms = frame.pts * num / den  # int / int: correctly rounded, no Fraction per frame
            yield t_ms, frame
            if t_ms >= end_ms:
                return


class DecodeAhead:
    """Iterate `items` in a worker thread, a few batches ahead of the consumer.

    PyAV releases the GIL while decoding, so every participant's next frames decode while
    the main thread draws and encodes. Items travel in batches: every queue hand-off takes
    the GIL (and, on a loaded machine, may wait for it), so fewer hand-offs keep the main
    thread feeding the encoder. Errors are re-raised in the consumer. `close()` stops the
    thread, which closes the generator (and so its container) itself.
    """

    _END = object()

    def __init__(self, items: Iterator, batch: int = 8, depth: int = 2, timeout_s: float = 600.0) -> None:
        self._queue: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._batch, self._current = batch, iter(())
        self._done = False
        self._timeout_s = timeout_s
        self._thread = threading.Thread(target=self._run, args=(items,), name="decode-ahead", daemon=True)
        self._thread.start()

    def _run(self, items: Iterator) -> None:
        batch: list = []
        try:
            for item in items:
                batch.append(item)
                if len(batch) >= self._batch:
                    if not self._put(batch):
                        return
                    batch = []
        except BaseException as exc:  # noqa: BLE001 (handed to the consumer, after what came before it)
            self._error = exc
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            if not batch or self._put(batch):
                self._put(self._END)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> "DecodeAhead":
        return self

    def __next__(self):
        while True:
            item = next(self._current, self._END)
            if item is not self._END:
                return item
            if self._done:
                raise StopIteration
            got = self._queue.get(timeout=self._timeout_s)
            if got is self._END:
                self._done = True
                if self._error is not None:
                    raise self._error
                raise StopIteration
            self._current = iter(got)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._timeout_s)


def audio_samples(path: Path, first: int, last: int, rate: int = 48000, resync_ms: float = 3.0) -> np.ndarray:
    """Mono float32 samples [first, last) of the timeline (sample numbers at `rate`)."""
    out = np.zeros(max(0, last - first), dtype=np.float32)
    with open_media(path) as container:
        if not container.streams.audio:
            return out
        stream = container.streams.audio[0]
        _seek(container, stream, first * 1000 / rate - 500)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        cursor: int | None = None
        tolerance = int(resync_ms * rate / 1000)
        num, den = stream.time_base.numerator, stream.time_base.denominator
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            at = int(round(frame.pts * num / den * rate))
            if at >= last:
                break
            for piece in resampler.resample(frame):
                pcm = np.frombuffer(piece.planes[0], dtype=np.float32, count=piece.samples)  # packed mono
                if cursor is None or abs(at - cursor) > tolerance:
                    cursor = at  # first frame, or a real jump (gap): trust the timestamp
                _place(out, pcm, cursor - first)
                cursor += pcm.size
                at = cursor
    return out


def _place(out: np.ndarray, pcm: np.ndarray, offset: int) -> None:
    lo, hi = max(0, offset), min(out.size, offset + pcm.size)
    if hi > lo:
        out[lo:hi] = pcm[lo - offset:hi - offset]
