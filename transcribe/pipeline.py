"""One step of per-track transcription: carried tail + new chunk → segments + new tail.

    plan_step:  join(carry, chunk) → VAD regions → split at pauses (the unfinished tail is
                carried) → finished speech packed into ≤ 28-s windows       (pure, no model)
    decode:     windows → model, in batches → words mapped back onto the recording
                timeline → one segment per stretch of speech → flags

Planning never depends on the model's output, so a worker that is behind (or a
re-transcription) plans many chunks and decodes all their windows in one batch.

The model is passed in (loaded once per process by `transcribe.model.load_model`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from transcribe import chunking, leak, redecode, timing, vad
from transcribe.chunking import Block, CarryOptions
from transcribe.leak import Envelope, LeakOptions
from transcribe.model import DecodeOptions, RawSegment, run_windows
from transcribe.quality import QualityOptions, compression_ratio, flag_segment
from transcribe.types import Segment, Speaker, Word
from transcribe.vad import Region, VadOptions


@dataclass(frozen=True)
class TrackOptions:
    vad: VadOptions = field(default_factory=VadOptions)
    carry: CarryOptions = field(default_factory=CarryOptions)
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    quality: QualityOptions = field(default_factory=QualityOptions)
    leak: LeakOptions = field(default_factory=LeakOptions)
    gap_s: float = 0.3  # silence between speech regions in the model's input
    max_join_gap_ms: float = 1000.0  # chunks further apart are separate streams
    split_pause_s: float = 1.0  # a pause this long between two words starts a new segment
    max_word_s: float = 2.0  # longer words are re-timed from the audio of their span


def _span_stats(block: Block, start_s: float, end_s: float, opts: VadOptions) -> tuple[float, float]:
    first, last = int(start_s * chunking.SAMPLE_RATE), int(end_s * chunking.SAMPLE_RATE)
    piece = block.samples[first:max(last, first + 1)]
    return vad.level_db(piece), vad.voiced_ratio(piece, opts)


MappedWord = tuple  # (RawWord, buffer_start_s, buffer_end_s)


def map_words(raw: RawSegment, plan: chunking.Layout) -> list[MappedWord]:
    out = []
    for w in raw.words:
        b0 = plan.to_buffer(w.start_s, "start")
        out.append((w, b0, max(b0, plan.to_buffer(w.end_s, "end"))))
    return out


def snap_first_words(mapped: list[list[MappedWord]], plan: chunking.Layout,
                     voiced: Callable[[float, float], float], slack_s: float = 0.1) -> list[list[MappedWord]]:
    """Whisper often starts a region's first word late (its alignment is coarse at the
    start of audio). When the VAD heard speech from the region's onset up to that word,
    the speech belongs to it: move the word's start back to the onset."""
    seen: set[int] = set()
    out = []
    for words in mapped:
        fixed = []
        for w, b0, b1 in words:
            piece = plan.piece_of(b0)
            if piece is not None and piece not in seen:
                seen.add(piece)
                onset = plan.pieces[piece][3]
                if b0 - onset > slack_s and voiced(onset, b0) >= 0.5:
                    b0 = onset
            fixed.append((w, b0, b1))
        out.append(fixed)
    return out


def split_segment(raw: RawSegment, words: list[MappedWord], plan: chunking.Layout, block: Block,
                  opts: TrackOptions, onsets_ms: Sequence[float] = ()) -> list[tuple[str, list[MappedWord]]]:
    """One model segment → runs of words, each one stretch of one speaker's speech: cut at
    the VAD's pauses (regions are laid end to end for the model), at pauses between words
    of `split_pause_s` or more, and where another participant starts to speak."""
    onsets_s = [block.buffer_s(t) for t in onsets_ms]
    groups = timing.split_words(words, opts.split_pause_s, onsets_s, plan.piece_of)
    if len(groups) <= 1:
        return [(raw.text, words)]
    return [("".join(w.text for w, _, _ in g), g) for g in groups]


def to_segment(raw: RawSegment, text: str, words: list[MappedWord], plan: chunking.Layout, block: Block,
               speaker: Speaker, opts: TrackOptions, seq: int, idx: int) -> Segment | None:
    """A model segment → a timeline segment with words, level and flags (None if empty)."""
    text = text.strip()
    if not any(ch.isalnum() for ch in text):
        return None  # "." or "…": nothing was said
    b_start = words[0][1] if words else plan.to_buffer(raw.start_s, "start")
    b_end = words[-1][2] if words else max(b_start, plan.to_buffer(raw.end_s, "end"))
    level, voiced = _span_stats(block, b_start, b_end, opts.vad)
    seg = Segment(
        speaker=speaker, start_ms=int(round(block.timeline_ms(b_start))),
        end_ms=int(round(block.timeline_ms(b_end))), text=text,
        words=tuple(Word(w.text.strip(), int(round(block.timeline_ms(b0))), int(round(block.timeline_ms(b1))),
                         float(w.probability)) for w, b0, b1 in words),
        avg_logprob=raw.avg_logprob, no_speech_prob=raw.no_speech_prob,
        compression_ratio=compression_ratio(text), level_db=level, voiced_ratio=voiced, seq=seq, idx=idx)
    return flag_segment(seg, opts.quality)


@dataclass(frozen=True)
class Window:
    """Up to ~28 s of one block's speech, laid end to end: one input of the model."""

    block: Block
    plan: chunking.Layout
    seq: int  # the chunk whose step produced it
    onsets_ms: tuple[float, ...] = ()  # where other participants start to speak (timeline)

    @property
    def speech_s(self) -> float:
        return self.plan.duration_s


@dataclass(frozen=True)
class Plan:
    """What one chunk's step sends to the model, and the tail it carries (no model yet)."""

    windows: list[Window]
    carry: Block | None


def windows_of(block: Block, found: Sequence[Region], opts: TrackOptions, seq: int,
               onsets_ms: tuple[float, ...] = ()) -> list[Window]:
    return [Window(block, p, seq, onsets_ms)
            for p in chunking.pack(block.samples, found, opts.carry.window_s, opts.gap_s) if p.pieces]


def gate_block(block: Block, others: Sequence[Envelope], opts: TrackOptions) -> tuple[Block, leak.Gate]:
    """The block with frames that only carry other participants' voices turned down
    (`transcribe.leak`), and where those participants start to speak."""
    g = leak.gate(block.samples, block.start_ms, others, opts.leak)
    return (block if g.samples is block.samples else Block(g.samples, block.anchors)), g


def plan_step(carry: Block | None, block: Block, final: bool, opts: TrackOptions = TrackOptions(),
              seq: int = 0, others: Sequence[Envelope] = ()) -> Plan:
    """The VAD half of a step (pure, cheap): finished speech → windows; the rest is carried.

    `others` are the level envelopes of the recording's other tracks over this stretch
    (carried tail included): frames where this track only hears them are gated before the
    VAD, and their speech onsets split segments. Without them nothing is gated (the
    merge's crosstalk check is the fallback).

    Nothing here depends on what the model says, so many chunks can be planned first and
    their windows decoded together in one batch (catch-up, finalize, re-transcription).
    """
    flushed, work = chunking.join(carry, block, opts.max_join_gap_ms)
    windows: list[Window] = []
    for old in flushed:
        old, g = gate_block(old, others, opts)
        ready, _ = chunking.split_ready(vad.speech_regions(old.samples, opts.vad), old.duration_s, True)
        windows += windows_of(old, ready, opts, seq, g.onsets_ms)
    work, g = gate_block(work, others, opts)
    found = chunking.cut_long_speech(work, vad.speech_regions(work.samples, opts.vad), opts.carry)
    ready, tail_start = chunking.split_ready(found, work.duration_s, final, opts.carry, opts.gap_s)
    windows += windows_of(work, ready, opts, seq, g.onsets_ms)
    return Plan(windows, work.tail(tail_start) if tail_start is not None else None)


def _region_start(plan: chunking.Layout, buffer_s: float) -> float:
    piece = plan.piece_of(buffer_s)
    return plan.pieces[piece][1] if piece is not None else max(0.0, buffer_s - 0.5)


def window_segments(raws: Sequence[RawSegment], window: Window, speaker: Speaker, opts: TrackOptions,
                    first_idx: int) -> list[Segment]:
    """The model's output for one window → timeline segments (one per stretch of speech)."""
    block, plan = window.block, window.plan

    def voiced(a: float, b: float) -> float:
        return _span_stats(block, a, b, opts.vad)[1]

    def runs(a: float, b: float) -> list[tuple[float, float]]:
        return timing.voiced_runs(block.samples, a, b, opts.vad)

    mapped = snap_first_words([map_words(r, plan) for r in raws], plan, voiced)
    mapped = [timing.retime_long(words, runs, opts.max_word_s, lambda w: w.text) for words in mapped]
    mapped = [timing.refine_words(words, block.samples, region_start=lambda t: _region_start(plan, t))
              for words in mapped]
    out: list[Segment] = []
    for raw, words in zip(raws, mapped):
        for text, part in split_segment(raw, words, plan, block, opts, window.onsets_ms):
            seg = to_segment(raw, text, part, plan, block, speaker, opts, window.seq, first_idx + len(out))
            if seg is not None:
                out.append(seg)
    return out


def decode(model: Any, speaker: Speaker, windows: Sequence[Window], opts: TrackOptions = TrackOptions(),
           previous: str = "") -> dict[int, list[Segment]]:
    """Every window through the model in batches; segments grouped by chunk seq, numbered
    in order within each chunk. With `previous_text`, windows go one at a time, each
    prompted with the speaker's text before it (`previous`, then the earlier windows');
    with `second_pass`, unsure segments are decoded again (`transcribe.redecode`)."""
    audio = [chunking.assemble(w.block.samples, w.plan) for w in windows]
    if opts.decode.previous_text:
        raws = []
        for clip in audio:
            raws += run_windows(model, [clip], opts.decode, previous)
            previous = f"{previous} {' '.join(r.text.strip() for r in raws[-1])}".strip()
    else:
        raws = run_windows(model, audio, opts.decode)
    out: dict[int, list[Segment]] = {w.seq: [] for w in windows}
    for window, raw in zip(windows, raws):
        segs = window_segments(raw, window, speaker, opts, len(out[window.seq]))
        if opts.decode.second_pass:
            segs = [redecode.redecode(model, s, window.block, opts.decode, opts.quality, opts.max_word_s)
                    if redecode.unsure(s, opts.decode) else s for s in segs]
        out[window.seq] += segs
    return out


def transcribe_track(model: Any, speaker: Speaker, blocks: Sequence[Block], opts: TrackOptions = TrackOptions(),
                     lookahead: int = 1, others: Sequence[Envelope] = ()) -> tuple[list[Segment], float]:
    """Every chunk of one track in order (what the worker does, without the storage).

    `lookahead` chunks are planned before their windows are decoded in one batch: 1 is the
    live path (each chunk as it arrives), more is catch-up / re-transcription. `others`:
    level envelopes of the recording's other tracks (`leak.envelope`), for the leak gate.
    """
    carry: Block | None = None
    segments: list[Segment] = []
    pending: list[Window] = []
    heard = 0.0
    for i, block in enumerate(blocks):
        last = i == len(blocks) - 1
        plan = plan_step(carry, block, final=last, opts=opts, seq=i, others=others)
        carry, pending = plan.carry, pending + plan.windows
        if pending and (last or (i + 1) % max(1, lookahead) == 0):
            previous = " ".join(s.text for s in segments[-3:])
            for seq_segments in decode(model, speaker, pending, opts, previous).values():
                segments += seq_segments
            heard += sum(w.speech_s for w in pending)
            pending = []
    return segments, heard


def split_samples(samples: np.ndarray, start_ms: float, chunk_s: float) -> list[Block]:
    """Cut one long buffer into chunk-sized blocks (bench and tests of the live path)."""
    n = int(chunk_s * chunking.SAMPLE_RATE)
    return [chunking.place(samples[i:i + n], start_ms + i * 1000 / chunking.SAMPLE_RATE)
            for i in range(0, max(1, samples.size), n)]
