"""One remote track → numbered WebM segments, each handed on as soon as it is closed.

Runs on the event loop (frames arrive there from the tap or from `track.recv()`); all
file work happens in the track's own worker thread, in order, and comes back as futures.
Each segment's timestamps start at 0; its real start (epoch ms, for `X-Chunk-Start`)
comes from RTCP sender reports when one has arrived, else from our arrival clock, chosen
once per continuous run of the track (later segments follow by RTP time: no seams).
A hole in RTP time (≥ `SegmentPolicy.stall_ms`, and ≥ 8 frames: a network cut, a frozen
sender) closes the open segment; the next one starts after the hole, placed by RTP time
like any later segment of the run, so the hole is a hole between chunks that the ledger
sees. (Frames can arrive late in a burst — aiortc's jitter buffer holds them while older
packets are missing — so where a frame belongs is its RTP time, not its arrival.) The
recorder also counts what arrives (bytes, frames, arrivals) for the quality samples.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.bitstream import opus_samples, vp8_keyframe, vp8_size
from bot.clock import ClockOffset, StreamClock
from bot.segments import ClosedSegment, OpenSegment, SegmentPolicy, frame_duration
from bot.writer import (
    AUDIO_RATE,
    CONTENT_TYPE,
    VIDEO_RATE,
    RemuxWriter,
    TranscodeWriter,
)
from core.logging import get_logger

log = get_logger("bot.track")
MAX_JUMP_S = 10.0          # a bigger timestamp jump (or any step back) starts a new segment
MAX_IN_FLIGHT = 120        # decoded frames queued for the encoder before we drop (fallback)
MAX_CLOCK_DISAGREEMENT_S = 5.0
STALL_FRAMES = 8           # a hole must also be this many frame durations long (low frame rates)
AUDIO_PREFETCH = 4         # aiortc's audio jitter buffer releases a frame once 4 more are complete


@dataclass(frozen=True)
class TrackInfo:
    track_id: str
    participant_id: str
    kind: str                 # audio | video
    role: str
    display_name: str


class _Worker:
    """Lives in the track's thread: owns the open writer, remembers the first error."""

    def __init__(self) -> None:
        self.writer: Any = None
        self.error: Exception | None = None

    def open(self, path: Path, kind: str, mode: str, size: tuple[int, int] | None) -> None:
        self.error = None
        try:
            self.writer = RemuxWriter(path, kind, size) if mode == "remux" else TranscodeWriter(path, kind)
        except Exception as exc:  # noqa: BLE001 - kept and raised by close()
            self.error, self.writer = exc, None

    def add(self, *args: Any) -> None:
        if self.writer is not None and self.error is None:
            try:
                self.writer.add(*args)
            except Exception as exc:  # noqa: BLE001 - kept and raised by close()
                self.error = exc

    def close(self) -> tuple[int, str]:
        writer, self.writer = self.writer, None
        if self.error is not None:
            raise self.error
        assert writer is not None
        return writer.close()


class TrackRecorder:
    """Implements the tap's `FrameSink`; `consume(track)` covers decoded frames and the end."""

    def __init__(self, info: TrackInfo, spool: Path, policy: SegmentPolicy, offset: ClockOffset,
                 next_seq: Callable[[], int], on_segment: Callable[[ClosedSegment], None],
                 keyframe: Callable[[], None]) -> None:
        self.info, self.spool, self.policy = info, spool, policy
        self.rate = VIDEO_RATE if info.kind == "video" else AUDIO_RATE
        self.clock = StreamClock(self.rate, offset)
        self.next_seq, self.on_segment, self.keyframe = next_seq, on_segment, keyframe
        self.seg: OpenSegment | None = None
        self.mode: str | None = None
        self.size: tuple[int, int] | None = None
        self.prev_ts: int | None = None
        self.last_request_s: float | None = None
        self.anchor: tuple[int, float, str] | None = None  # (first ts, start s, clock) of this run
        self.new_run = False
        self.in_flight = 0
        self.dropped = 0
        self.bytes = self.frames = 0                 # everything received (quality counters)
        self.last_arrival_s: float | None = None
        self.resumed_s: float | None = None          # first arrival after the latest stall (or ever)
        self.closing: set[asyncio.Task] = set()
        self.worker = _Worker()
        self.pool = ThreadPoolExecutor(1, thread_name_prefix=f"seg-{info.track_id}"[:15])
        spool.mkdir(parents=True, exist_ok=True)

    # ---- FrameSink (the tap, on the loop) --------------------------------------------
    def origin(self, raw_ts: int) -> None:
        self.clock.origin = raw_ts

    def sender_report(self, rtp_raw: int, ntp: int, arrival_s: float) -> None:
        self.clock.sender_report(rtp_raw, ntp, arrival_s)

    def encoded(self, codec: str, ts: int, data: bytes, arrival_s: float) -> None:
        self._arrived(arrival_s, len(data))
        if self.info.kind == "video":
            keyframe = vp8_keyframe(data)
            self.size = vp8_size(data) or self.size
            duration = frame_duration(self.prev_ts, ts, 3000, self.rate)
        else:
            keyframe, duration = True, opus_samples(data) or 960
        hold = duration * (AUDIO_PREFETCH if self.info.kind == "audio" else 1) / self.rate
        if self._admit(ts, keyframe, arrival_s, "remux", hold):
            self._submit(self.worker.add, ts - self.seg.first_ts, data, keyframe, duration)  # type: ignore[union-attr]
            self.seg.last_duration = duration  # type: ignore[union-attr]

    # ---- decoded frames (fallback) and end of track ----------------------------------
    async def consume(self, track: Any) -> None:
        """Read the track until it ends; decoded frames (untapped codecs) are transcoded."""
        from aiortc.mediastreams import MediaStreamError

        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.decoded(frame, time.time())

    def decoded(self, frame: Any, arrival_s: float) -> None:
        self._arrived(arrival_s, 0)
        ts = int(frame.pts * frame.time_base * self.rate) if frame.time_base else int(frame.pts or 0)
        if self.in_flight >= MAX_IN_FLIGHT:
            self.dropped += 1
            return
        if self.info.kind == "video":
            self.size = (frame.width, frame.height)
            duration = frame_duration(self.prev_ts, ts, 3000, self.rate)
            hold = duration / self.rate
        else:
            duration = round(frame.samples * self.rate / (frame.sample_rate or self.rate))
            hold = duration * AUDIO_PREFETCH / self.rate
        if self._admit(ts, True, arrival_s, "transcode", hold):
            self._submit(self.worker.add, ts - self.seg.first_ts, frame)  # type: ignore[union-attr]
            self.seg.last_duration = duration  # type: ignore[union-attr]

    def _arrived(self, arrival_s: float, size: int) -> None:
        last, self.last_arrival_s = self.last_arrival_s, arrival_s
        if last is None or (arrival_s - last) * 1000 >= self.policy.stall_ms:
            self.resumed_s = arrival_s
        self.bytes += size
        self.frames += 1

    # ---- segmenting --------------------------------------------------------------
    def _admit(self, ts: int, keyframe: bool, arrival_s: float, mode: str, hold_s: float) -> bool:
        """Cut / open segments as due; True if this frame goes into the open segment."""
        seg = self.seg
        if seg is not None and not self._continues(seg, ts, mode, keyframe):
            self._close()
            seg = None
        if seg is None:
            if not keyframe:
                self._ask_keyframe(time.monotonic())
                return False
            seg = self._open(ts, arrival_s, mode)
        elif self.info.kind == "video" and mode == "remux":
            now = time.monotonic()
            since = None if self.last_request_s is None else (now - self.last_request_s) * 1000
            if self.policy.keyframe_due(seg.elapsed_ms(ts, self.rate), since):
                self._ask_keyframe(now)
        self.clock.frame(ts, arrival_s, hold_s)
        seg.last_ts, seg.frames, self.prev_ts = ts, seg.frames + 1, ts
        return True

    def _continues(self, seg: OpenSegment, ts: int, mode: str, keyframe: bool) -> bool:
        if mode != self.mode:
            return False
        if ts <= seg.last_ts or ts - seg.last_ts > MAX_JUMP_S * self.rate:
            log.warning("timestamp_discontinuity", track=self.info.track_id, step=ts - seg.last_ts)
            self._new_run()
            return False
        hole = ts - seg.last_ts
        if hole * 1000 >= self.policy.stall_ms * self.rate and hole >= STALL_FRAMES * (seg.last_duration or 1):
            log.info("media_stalled", track=self.info.track_id, hole_s=round(hole / self.rate, 3))
            return False
        return not self.policy.cut_due(self.info.kind, seg.elapsed_ms(ts, self.rate), keyframe)

    def _new_run(self) -> None:
        self.clock.reset()
        self.new_run = True  # the next segment picks the timing basis again

    def _ask_keyframe(self, now: float) -> None:
        if self.last_request_s is None or now - self.last_request_s >= self.policy.keyframe_retry_ms / 1000:
            self.last_request_s = now
            self.keyframe()

    def _open(self, ts: int, arrival_s: float, mode: str) -> OpenSegment:
        seq = self.next_seq()
        self.mode, self.last_request_s = mode, None
        if self.new_run:  # the segment before the jump was timed on the old run's anchor
            self.anchor, self.new_run = None, False
        path = self.spool / f"{self.info.track_id}.{seq:06d}.webm"
        self.seg = OpenSegment(seq=seq, path=path, first_ts=ts, arrival_s=arrival_s, last_ts=ts)
        self._submit(self.worker.open, path, self.info.kind, mode, self.size)
        return self.seg

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        self.in_flight += 1
        future = self.pool.submit(fn, *args)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future) -> None:
        self.in_flight -= 1  # an int decrement from another thread: atomic enough for a soft limit

    def _close(self) -> None:
        seg, self.seg = self.seg, None
        if seg is None:
            return
        start_s, source = self._start_s(seg)
        closed = asyncio.wrap_future(self._submit(self.worker.close))
        task = asyncio.ensure_future(self._hand_on(seg, closed, start_s, source))
        self.closing.add(task)
        task.add_done_callback(self.closing.discard)

    def _start_s(self, seg: OpenSegment) -> tuple[float, str]:
        """The segment's real start. The first segment of a continuous run picks the basis
        (sender report if one has arrived, else arrival); every later segment of the run
        is that start plus the RTP time between them, so segments of one run never seam
        even when the basis would change (a late first sender report, a loaded loop)."""
        if self.anchor is not None:
            first_ts, start_s, source = self.anchor
            return start_s + (seg.first_ts - first_ts) / self.rate, source
        start_s, source = self._basis_s(seg)
        self.anchor = (seg.first_ts, start_s, source)
        return start_s, source

    def _basis_s(self, seg: OpenSegment) -> tuple[float, str]:
        arrival = self.clock.arrival_s(seg.first_ts) or seg.arrival_s
        wall = self.clock.wall_s(seg.first_ts)
        if wall is None:
            return arrival, "arrival"
        if abs(wall - arrival) > MAX_CLOCK_DISAGREEMENT_S:
            log.warning("sender_clock_ignored", track=self.info.track_id, off_s=round(wall - arrival, 3))
            return arrival, "arrival"
        return wall, "rtcp_sr"

    async def _hand_on(self, seg: OpenSegment, closed: asyncio.Future, start_s: float, source: str) -> None:
        try:
            size, sha256 = await closed
        except Exception as exc:  # noqa: BLE001 - one bad segment must not stop the track
            log.warning("segment_failed", track=self.info.track_id, seq=seg.seq, error=str(exc))
            seg.path.unlink(missing_ok=True)
            return
        segment = ClosedSegment(track_id=self.info.track_id, seq=seg.seq, path=seg.path,
                                start_ms=round(start_s * 1000), duration_ms=seg.duration_ms(self.rate),
                                sha256=sha256, size=size, content_type=CONTENT_TYPE[self.info.kind], clock=source)
        log.info("segment_closed", track=self.info.track_id, seq=seg.seq, duration_ms=segment.duration_ms,
                 frames=seg.frames, bytes=size, clock=source, mode=self.mode)
        self.on_segment(segment)

    async def close(self) -> None:
        """Close the open segment (it is handed on like the others) and stop the thread."""
        self._close()
        if self.closing:
            await asyncio.gather(*self.closing, return_exceptions=True)
        self.pool.shutdown(wait=False)
        if self.dropped:
            log.warning("frames_dropped", track=self.info.track_id, frames=self.dropped)
