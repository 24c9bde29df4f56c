"""Segment files: WebM (VP8 / Opus) written with PyAV, called from a track's worker thread.

`RemuxWriter` muxes encoded frames as they came off the wire (no codec runs at all);
`TranscodeWriter` is the fallback for decoded frames (codecs the tap does not pass,
or no tap): it encodes VP8 / Opus. Both translate PyAV errors into `InvalidMedia`.
Timestamps are ticks of the RTP clock (90 kHz video, 48 kHz audio), 0 = the segment's
first frame; the muxer rescales them to WebM's 1 ms.
"""
from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from core.errors import InvalidMedia

VIDEO_RATE, AUDIO_RATE = 90_000, 48_000
CONTENT_TYPE = {"audio": "audio/webm", "video": "video/webm"}
VP8_OPTIONS = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "auto-alt-ref": "0"}


def file_digest(path: Path) -> tuple[int, str]:
    """`(size, sha256 hex)` of a finished file."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


class RemuxWriter:
    """Encoded VP8 frames or Opus packets → one WebM file, without transcoding."""

    def __init__(self, path: Path, kind: str, size: tuple[int, int] | None = None) -> None:
        self.path, self.kind = path, kind
        self.rate = VIDEO_RATE if kind == "video" else AUDIO_RATE
        try:
            self.out = av.open(str(path), "w", format="webm")
            if kind == "video":
                width, height = size or (0, 0)
                self.stream = self.out.add_mux_stream("vp8", width=width, height=height)
            else:
                self.stream = self.out.add_mux_stream("opus", rate=AUDIO_RATE)
        except av.FFmpegError as exc:
            raise InvalidMedia(f"cannot open segment {path.name}: {exc}") from exc
        self.stream.time_base = Fraction(1, self.rate)

    def add(self, pts: int, data: bytes, keyframe: bool, duration: int) -> None:
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.duration = duration
        packet.time_base = Fraction(1, self.rate)
        packet.is_keyframe = keyframe
        packet.stream = self.stream
        try:
            self.out.mux(packet)
        except av.FFmpegError as exc:
            raise InvalidMedia(f"cannot mux into {self.path.name}: {exc}") from exc

    def close(self) -> tuple[int, str]:
        try:
            self.out.close()
        except av.FFmpegError as exc:
            raise InvalidMedia(f"cannot finish {self.path.name}: {exc}") from exc
        return file_digest(self.path)


class TranscodeWriter:
    """Decoded frames → VP8 / Opus WebM (the fallback path; ~20× the CPU of remuxing)."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path, self.kind = path, kind
        self.out = av.open(str(path), "w", format="webm")
        self.stream: Any = None
        self.resampler: av.AudioResampler | None = None
        self.fifo: av.AudioFifo | None = None
        self.written = 0  # audio samples (48 kHz) given to the fifo

    def _open_video(self, frame: av.VideoFrame) -> None:
        self.stream = self.out.add_stream("libvpx", rate=30, options=dict(VP8_OPTIONS))
        self.stream.width, self.stream.height = frame.width, frame.height
        self.stream.pix_fmt = "yuv420p"
        self.stream.bit_rate = 1_000_000
        self.stream.codec_context.time_base = Fraction(1, VIDEO_RATE)
        self.stream.thread_type = "AUTO"

    def _open_audio(self, frame: av.AudioFrame) -> None:
        layout = "mono" if frame.layout.nb_channels == 1 else "stereo"
        self.stream = self.out.add_stream("libopus", rate=AUDIO_RATE, layout=layout)
        self.resampler = av.AudioResampler(format="s16", layout=layout, rate=AUDIO_RATE)
        self.fifo = av.AudioFifo()

    def add(self, pts: int, frame: Any) -> None:
        try:
            if self.stream is None:
                (self._open_video if self.kind == "video" else self._open_audio)(frame)
            if self.kind == "video":
                self._video(pts, frame)
            else:
                self._audio(pts, frame)
        except av.FFmpegError as exc:
            raise InvalidMedia(f"cannot encode into {self.path.name}: {exc}") from exc

    def _video(self, pts: int, frame: av.VideoFrame) -> None:
        out = frame.reformat(format="yuv420p", width=self.stream.width, height=self.stream.height)
        out.pts, out.time_base = pts, Fraction(1, VIDEO_RATE)
        out.pict_type = av.video.frame.PictureType.NONE
        self.out.mux(self.stream.encode(out))

    def _audio(self, pts: int, frame: av.AudioFrame) -> None:
        assert self.resampler is not None and self.fifo is not None
        missing = pts - self.written  # lost packets: fill with silence so later audio stays in place
        if missing >= frame.samples:
            layout = self.stream.codec_context.layout.name
            silence = av.AudioFrame.from_ndarray(
                np.zeros((1, missing * len(self.stream.codec_context.layout.channels)), dtype=np.int16),
                format="s16", layout=layout)
            silence.sample_rate = AUDIO_RATE
            self.fifo.write(silence)
            self.written += missing
        frame.pts = None  # the fifo numbers samples itself from the first write
        for chunk in self.resampler.resample(frame):
            self.fifo.write(chunk)
            self.written += chunk.samples
        size = self.stream.codec_context.frame_size or 960
        while self.fifo.samples >= size:
            self.out.mux(self.stream.encode(self.fifo.read(size)))

    def close(self) -> tuple[int, str]:
        try:
            if self.stream is not None:
                self.out.mux(self.stream.encode(None))
            self.out.close()
        except av.FFmpegError as exc:
            raise InvalidMedia(f"cannot finish {self.path.name}: {exc}") from exc
        return file_digest(self.path)
