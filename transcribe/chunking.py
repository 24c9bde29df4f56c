"""Pure buffer math for live, per-track transcription.

A track arrives chunk by chunk. Each chunk's audio is placed on the recording timeline
(a `Block`: samples + anchors mapping buffer seconds → timeline ms). The unfinished tail
of one chunk (speech still going at its end) is carried into the next, so words are
never cut at chunk boundaries; only speech regions that ended in a pause are sent to
the model, concatenated with short silences (`Layout` maps model time back).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from transcribe.vad import Region

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class Block:
    """Contiguous 16 kHz mono audio and where it sits on the recording timeline."""

    samples: np.ndarray
    anchors: tuple[tuple[float, float], ...]  # (buffer_s, timeline_ms), increasing buffer_s

    @property
    def duration_s(self) -> float:
        return self.samples.size / SAMPLE_RATE

    @property
    def start_ms(self) -> float:
        return self.anchors[0][1]

    @property
    def end_ms(self) -> float:
        return self.timeline_ms(self.duration_s)

    def timeline_ms(self, t_s: float) -> float:
        """Buffer seconds → timeline ms, through the last anchor at or before `t_s`."""
        base_s, base_ms = self.anchors[0]
        for a_s, a_ms in self.anchors:
            if a_s <= t_s:
                base_s, base_ms = a_s, a_ms
        return base_ms + (t_s - base_s) * 1000

    def buffer_s(self, t_ms: float) -> float:
        """Timeline ms → buffer seconds (inverse of `timeline_ms`, through the last anchor
        at or before `t_ms`)."""
        base_s, base_ms = self.anchors[0]
        for a_s, a_ms in self.anchors:
            if a_ms <= t_ms:
                base_s, base_ms = a_s, a_ms
        return base_s + (t_ms - base_ms) / 1000

    def tail(self, start_s: float) -> "Block":
        """The block from `start_s` to its end, re-anchored at 0."""
        first = int(round(max(0.0, start_s) * SAMPLE_RATE))
        start_s = first / SAMPLE_RATE
        anchors = [(0.0, self.timeline_ms(start_s))]
        anchors += [(a_s - start_s, a_ms) for a_s, a_ms in self.anchors if a_s > start_s]
        return Block(self.samples[first:], tuple(anchors))


def place(samples: np.ndarray, start_ms: float) -> Block:
    return Block(np.asarray(samples, dtype=np.float32), ((0.0, float(start_ms)),))


def join(carry: Block | None, new: Block, max_gap_ms: float = 1000.0) -> tuple[list[Block], Block]:
    """Append `new` to the carried tail. Returns (blocks to flush first, working block).

    A small gap is filled with silence (the audio is missing, the pause is real); a large
    gap or overlap means the two are not one stream: the carry is flushed on its own.
    """
    if carry is None or carry.samples.size == 0:
        return [], new
    gap_ms = new.start_ms - carry.end_ms
    if abs(gap_ms) > max_gap_ms:
        return [carry], new
    pad = np.zeros(int(round(max(0.0, gap_ms) * SAMPLE_RATE / 1000)), dtype=np.float32)
    offset = carry.duration_s + pad.size / SAMPLE_RATE
    anchors = carry.anchors + tuple((offset + a_s, a_ms) for a_s, a_ms in new.anchors)
    return [], Block(np.concatenate([carry.samples, pad, new.samples]), anchors)


@dataclass(frozen=True)
class CarryOptions:
    keep_s: float = 0.3  # always carry this much (a word may be starting)
    max_carry_s: float = 25.0  # longer speech without a pause is cut at its quietest point
    search_s: float = 5.0  # where to look for that point (the last seconds of the region)
    min_batch_s: float = 20.0  # hold finished speech until this much is ready (fills the
    max_hold_s: float = 60.0  # model's 30-s window) but never hold audio longer than this
    window_s: float = 28.0  # speech packed per model window (the model's input is 30 s)


def full_windows(ready: Sequence[Region], window_s: float, min_fill_s: float, gap_s: float = 0.3) -> int:
    """How many of `ready` (in order) fill model windows: every window closed by the next
    region not fitting, plus the last one if it holds at least `min_fill_s` of speech."""
    count, used = 0, None
    for i, r in enumerate(ready):
        if used is not None and used + gap_s + r.duration_s > window_s:
            count, used = i, None
        used = r.duration_s if used is None else used + gap_s + r.duration_s
    return len(ready) if used is not None and used >= min_fill_s else count


def split_ready(found: Sequence[Region], duration_s: float, final: bool,
                opts: CarryOptions = CarryOptions(), gap_s: float = 0.3) -> tuple[list[Region], float | None]:
    """Regions for the model now, and where the carried tail starts (None = no tail).

    Speech still running at the end is carried. Finished speech goes to the model only as
    whole windows (`window_s` of it, or at least `min_batch_s` in the last one); the rest
    is carried too, so every window is nearly full: the model pays for a whole 30-s
    window per input, so 8 s of speech costs about what 28 s does. Nothing is held
    longer than `max_hold_s`.
    """
    if final:
        return [Region(r.start_s, min(r.end_s, duration_s), True, r.onset_s) for r in found], None
    open_ = [r for r in found if not r.closed]
    limit = open_[0].start_s if open_ else duration_s
    ready = [r for r in found if r.closed and r.end_s <= limit]
    if open_:
        tail_start = open_[0].start_s
    else:
        tail_start = max(max((r.end_s for r in ready), default=0.0), duration_s - opts.keep_s, 0.0)
    if ready and duration_s - ready[0].start_s < opts.max_hold_s:
        n = full_windows(ready, opts.window_s, opts.min_batch_s, gap_s)
        if n < len(ready):
            return ready[:n], ready[n].start_s
    return ready, tail_start


def quietest_point(samples: np.ndarray, lo_s: float, hi_s: float, frame_ms: int = 30) -> float:
    """Start of the quietest frame in [lo_s, hi_s): where to cut speech that never pauses."""
    n = SAMPLE_RATE * frame_ms // 1000
    lo, hi = int(lo_s * SAMPLE_RATE), min(int(hi_s * SAMPLE_RATE), samples.size)
    starts = list(range(lo, max(lo, hi - n) + 1, n))
    if not starts or hi - lo < n:
        return hi_s
    energy = [float(np.mean(np.square(samples[i:i + n], dtype=np.float64))) for i in starts]
    return starts[int(np.argmin(energy))] / SAMPLE_RATE


def cut_long_speech(block: Block, found: Sequence[Region], opts: CarryOptions = CarryOptions()) -> list[Region]:
    """Speech running longer than `max_carry_s` without a pause is split at its quietest
    point in the last `search_s` seconds (the first part is then finished)."""
    out: list[Region] = []
    for r in found:
        out += [r] if r.closed else split_long(block.samples, r, opts.max_carry_s, opts.search_s)
    return out


@dataclass(frozen=True)
class Layout:
    """Speech regions laid end to end for the model: (model_s, buffer_s, duration_s, onset_s)."""

    pieces: tuple[tuple[float, float, float, float], ...]

    @property
    def duration_s(self) -> float:
        return self.pieces[-1][0] + self.pieces[-1][2] if self.pieces else 0.0

    def piece_of(self, buffer_s: float) -> int | None:
        """Index of the speech region holding a buffer time (None: between regions)."""
        return next((i for i, (_, b, d, _) in enumerate(self.pieces) if b <= buffer_s <= b + d), None)

    def to_buffer(self, t: float, side: str = "start") -> float:
        """Model seconds → buffer seconds; a time in an inserted gap snaps to speech.

        Word starts are never put before the region's first voiced frame: Whisper likes to
        start the first word where its audio starts, which is `lead_ms` of silence earlier.
        """
        for i, (m_s, b_s, d_s, onset) in enumerate(self.pieces):
            if t < m_s:  # in the gap before piece i
                if side == "start" or i == 0:
                    return onset
                return self.pieces[i - 1][1] + self.pieces[i - 1][2]
            if t <= m_s + d_s:
                b = b_s + (t - m_s)
                return max(b, onset) if side == "start" else b
        _, b_s, d_s, _ = self.pieces[-1]
        return b_s + d_s


def layout(found: Sequence[Region], gap_s: float = 0.3) -> Layout:
    pieces, cursor = [], 0.0
    for r in found:
        if r.duration_s <= 0:
            continue
        pieces.append((cursor, r.start_s, r.duration_s, min(r.speech_start_s, r.end_s)))
        cursor += r.duration_s + gap_s
    return Layout(tuple(pieces))


def assemble(samples: np.ndarray, plan: Layout) -> np.ndarray:
    """The audio the model hears: each region's samples at its model time, silence between."""
    out = np.zeros(int(round(plan.duration_s * SAMPLE_RATE)), dtype=np.float32)
    for m_s, b_s, d_s, _ in plan.pieces:
        src = samples[int(round(b_s * SAMPLE_RATE)):][:int(round(d_s * SAMPLE_RATE))]
        first = int(round(m_s * SAMPLE_RATE))
        piece = src[:max(0, out.size - first)]
        out[first:first + piece.size] = piece
    return out


def split_long(samples: np.ndarray, r: Region, max_s: float, search_s: float = 5.0) -> list[Region]:
    """A region longer than `max_s` cut at quiet points into pieces of at most `max_s`."""
    out: list[Region] = []
    while r.duration_s > max_s:
        hi = r.start_s + max_s
        cut = quietest_point(samples, max(r.start_s, hi - search_s), hi)
        cut = cut if r.start_s < cut < hi else hi
        out.append(Region(r.start_s, cut, True, r.onset_s))
        r = Region(cut, r.end_s, r.closed, cut)
    return out + [r]


def pack(samples: np.ndarray, found: Sequence[Region], max_s: float = 28.0, gap_s: float = 0.3) -> list[Layout]:
    """Speech regions packed in order into model windows of at most `max_s` seconds each
    (regions joined by `gap_s` of silence); a region longer than a window is cut first."""
    windows: list[list[Region]] = []
    used = 0.0
    for whole in found:
        for r in split_long(samples, whole, max_s):
            if r.duration_s <= 0:
                continue
            if not windows or used + gap_s + r.duration_s > max_s:
                windows.append([])
                used = -gap_s
            windows[-1].append(r)
            used += gap_s + r.duration_s
    return [layout(w, gap_s) for w in windows]
