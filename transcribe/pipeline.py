"""One step of per-track transcription: carried tail + new chunk → segments + new tail.

    join(carry, chunk) → VAD regions → split at pauses (the unfinished tail is carried)
    → speech-only audio → model → words mapped back onto the recording timeline → flags

The model is passed in (loaded once per process by `transcribe.model.load_model`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from transcribe import chunking, vad
from transcribe.chunking import Block, CarryOptions
from transcribe.model import DecodeOptions, RawSegment, run
from transcribe.quality import QualityOptions, flag_segment
from transcribe.types import Segment, Speaker, Word
from transcribe.vad import Region, VadOptions


@dataclass(frozen=True)
class TrackOptions:
    vad: VadOptions = field(default_factory=VadOptions)
    carry: CarryOptions = field(default_factory=CarryOptions)
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    quality: QualityOptions = field(default_factory=QualityOptions)
    gap_s: float = 0.3  # silence between speech regions in the model's input
    max_join_gap_ms: float = 1000.0  # chunks further apart are separate streams


@dataclass(frozen=True)
class StepResult:
    segments: list[Segment]
    carry: Block | None
    speech_s: float  # seconds of audio the model heard


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


def split_at_pauses(raw: RawSegment, words: list[MappedWord],
                    plan: chunking.Layout) -> list[tuple[str, list[MappedWord]]]:
    """One model segment may run across a pause the VAD found (speech regions are laid end
    to end for the model): split it there, so every segment is one stretch of speech."""
    groups: list[list[MappedWord]] = []
    last = object()
    for w in words:
        piece = plan.piece_of(w[1])
        if not groups or (piece is not None and piece != last):
            groups.append([])
        groups[-1].append(w)
        last = piece if piece is not None else last
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
        compression_ratio=raw.compression_ratio, level_db=level, voiced_ratio=voiced, seq=seq, idx=idx)
    return flag_segment(seg, opts.quality)


def transcribe_regions(model: Any, speaker: Speaker, block: Block, found: Sequence[Region],
                       opts: TrackOptions, seq: int = 0, first_idx: int = 0) -> tuple[list[Segment], float]:
    """Run the model on the speech regions of `block` only; returns (segments, seconds heard)."""
    plan = chunking.layout(found, opts.gap_s)
    if not plan.pieces:
        return [], 0.0
    audio = chunking.assemble(block.samples, plan)
    raws = run(model, audio, opts.decode)

    def voiced(a: float, b: float) -> float:
        return _span_stats(block, a, b, opts.vad)[1]

    mapped = snap_first_words([map_words(r, plan) for r in raws], plan, voiced)
    out: list[Segment] = []
    for raw, words in zip(raws, mapped):
        for text, part in split_at_pauses(raw, words, plan):
            seg = to_segment(raw, text, part, plan, block, speaker, opts, seq, first_idx + len(out))
            if seg is not None:
                out.append(seg)
    return out, audio.size / chunking.SAMPLE_RATE


def step(model: Any, speaker: Speaker, carry: Block | None, block: Block, final: bool,
         opts: TrackOptions = TrackOptions(), seq: int = 0) -> StepResult:
    """Transcribe what is finished in carry + block; return the rest as the next carry."""
    flushed, work = chunking.join(carry, block, opts.max_join_gap_ms)
    segments: list[Segment] = []
    heard = 0.0
    for old in flushed:
        ready, _ = chunking.split_ready(vad.speech_regions(old.samples, opts.vad), old.duration_s, True)
        segs, s = transcribe_regions(model, speaker, old, ready, opts, seq, len(segments))
        segments, heard = segments + segs, heard + s
    found = chunking.cut_long_speech(work, vad.speech_regions(work.samples, opts.vad), opts.carry)
    ready, tail_start = chunking.split_ready(found, work.duration_s, final, opts.carry)
    segs, s = transcribe_regions(model, speaker, work, ready, opts, seq, len(segments))
    next_carry = work.tail(tail_start) if tail_start is not None else None
    return StepResult(segments + segs, next_carry, heard + s)


def transcribe_track(model: Any, speaker: Speaker, blocks: Sequence[Block],
                     opts: TrackOptions = TrackOptions()) -> tuple[list[Segment], float]:
    """Every chunk of one track in order (what the worker does, without the storage)."""
    carry: Block | None = None
    segments: list[Segment] = []
    heard = 0.0
    for i, block in enumerate(blocks):
        result = step(model, speaker, carry, block, final=i == len(blocks) - 1, opts=opts, seq=i)
        segments += result.segments
        carry, heard = result.carry, heard + result.speech_s
    return segments, heard


def split_samples(samples: np.ndarray, start_ms: float, chunk_s: float) -> list[Block]:
    """Cut one long buffer into chunk-sized blocks (bench and tests of the live path)."""
    n = int(chunk_s * chunking.SAMPLE_RATE)
    return [chunking.place(samples[i:i + n], start_ms + i * 1000 / chunking.SAMPLE_RATE)
            for i in range(0, max(1, samples.size), n)]
