"""The second pass: segments the model was unsure of, decoded again more carefully.

The first pass is batched greedy-ish decoding (beam 3, temperature 0) of ≤ 28-s windows.
A segment whose mean word probability is below `DecodeOptions.unsure_prob` is decoded
again on its own (its audio ± 0.25 s) with a wider beam and temperature fallback; the new
words replace the old ones only if the model is more sure of them.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from transcribe import timing
from transcribe.chunking import SAMPLE_RATE, Block
from transcribe.model import DecodeOptions, run_clip
from transcribe.quality import QualityOptions, compression_ratio, flag_segment
from transcribe.types import Segment, Word

PAD_S = 0.25


def mean_prob(probs: list[float]) -> float:
    return sum(probs) / len(probs) if probs else 0.0


def unsure(seg: Segment, opts: DecodeOptions) -> bool:
    return bool(seg.words) and mean_prob([w.probability for w in seg.words]) < opts.unsure_prob


def redecode(model: Any, seg: Segment, block: Block, opts: DecodeOptions, quality: QualityOptions,
             max_word_s: float = 2.0) -> Segment:
    """`seg` decoded again from `block`'s audio; the better-scored of the two."""
    a = max(0.0, block.buffer_s(seg.start_ms) - PAD_S)
    b = min(block.duration_s, block.buffer_s(seg.end_ms) + PAD_S)
    raws = run_clip(model, block.samples[int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)], opts)
    timed = [(w, a + w.start_s, a + max(w.start_s, w.end_s)) for r in raws for w in r.words if w.text.strip()]
    if not timed or mean_prob([w.probability for w, _, _ in timed]) <= \
            mean_prob([w.probability for w in seg.words]) + 0.02:
        return seg
    timed = timing.retime_long(timed, lambda x, y: timing.voiced_runs(block.samples, x, y), max_word_s,
                               lambda w: w.text)
    timed = timing.refine_words(timed, block.samples)
    words = tuple(Word(w.text.strip(), int(round(block.timeline_ms(x))), int(round(block.timeline_ms(y))),
                       float(w.probability)) for w, x, y in timed)
    text = "".join(w.text for w, _, _ in timed).strip()
    better = replace(seg, text=text, words=words, start_ms=words[0].start_ms, end_ms=words[-1].end_ms,
                     avg_logprob=sum(r.avg_logprob for r in raws) / len(raws),
                     no_speech_prob=min(r.no_speech_prob for r in raws), compression_ratio=compression_ratio(text),
                     flags=())
    return flag_segment(better, quality)
