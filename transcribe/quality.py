"""Quality flags per segment (pure): what a reviewer should distrust, and what to hide.

    repetition_loop      an n-gram repeated back to back, or gzip-compressible text
    text_in_silence      words over audio that is (near) silent or that the VAD calls no speech
    low_logprob          the model was unsure (average log-probability)
    high_no_speech_prob  the model itself thinks nobody spoke
    no_speech            both of the last two (Whisper's own silence rule), or a
                         no-speech probability ≥ 0.85 on its own → hidden
    crosstalk_duplicate  another speaker's voice picked up by this mic: the same words as a
                         louder segment on their track, or whatever the model made of a
                         leak ≥ `leak_db` quieter than the speech it overlaps → hidden
    implausible_rate     more letters than the audio span could hold (words squeezed into
                         a pause: a hallucination) → hidden
"""
from __future__ import annotations

import difflib
import zlib
from dataclasses import dataclass
from typing import Sequence

from transcribe.normalize import words
from transcribe.types import Segment


@dataclass(frozen=True)
class QualityOptions:
    low_logprob: float = -1.0
    no_speech_prob: float = 0.6
    certain_no_speech_prob: float = 0.85  # this sure, the model's own verdict is enough
    silence_db: float = -50.0
    min_voiced_ratio: float = 0.15
    max_compression_ratio: float = 2.4
    crosstalk_overlap: float = 0.5  # share of the shorter segment that must overlap
    crosstalk_similarity: float = 0.6  # word-sequence similarity that makes a duplicate
    leak_db: float = 20.0  # this much quieter than overlapping speech on another track: a leak
    max_letters_per_s: float = 30.0  # fast speech is ~15–20; espeak at 155 wpm ~14


def repetition_loop(text: str, max_n: int = 4) -> bool:
    """True if some 1..max_n-gram repeats back to back (5× for single words, 3× otherwise)."""
    toks = words(text)
    for n in range(1, max_n + 1):
        need = 5 if n == 1 else 3
        for start in range(0, len(toks) - n * need + 1):
            gram = toks[start:start + n]
            if all(toks[start + k * n:start + (k + 1) * n] == gram for k in range(1, need)):
                return True
    return False


def compression_ratio(text: str) -> float:
    """Bytes of text per byte of its zlib form (Whisper's loop measure; ~1.2–1.8 for prose)."""
    data = text.strip().encode()
    return len(data) / len(zlib.compress(data)) if data else 1.0


def segment_flags(seg: Segment, opts: QualityOptions = QualityOptions()) -> tuple[str, ...]:
    """Flags one segment earns on its own (no other speaker needed)."""
    flags = []
    if repetition_loop(seg.text) or seg.compression_ratio > opts.max_compression_ratio:
        flags.append("repetition_loop")
    if seg.level_db < opts.silence_db or seg.voiced_ratio < opts.min_voiced_ratio:
        flags.append("text_in_silence")
    low = seg.avg_logprob < opts.low_logprob
    quiet = seg.no_speech_prob > opts.no_speech_prob
    if low:
        flags.append("low_logprob")
    if quiet:
        flags.append("high_no_speech_prob")
    if (low and quiet) or seg.no_speech_prob >= opts.certain_no_speech_prob:
        flags.append("no_speech")
    if letters_per_s(seg) > opts.max_letters_per_s:
        flags.append("implausible_rate")
    return tuple(flags)


def letters_per_s(seg: Segment) -> float:
    letters = sum(ch.isalnum() for ch in seg.text)
    return letters / max(0.05, (seg.end_ms - seg.start_ms) / 1000)


def flag_segment(seg: Segment, opts: QualityOptions = QualityOptions()) -> Segment:
    return seg.with_flags(*segment_flags(seg, opts))


def similarity(a: str, b: str) -> float:
    wa, wb = words(a), words(b)
    if not wa or not wb:
        return 0.0
    return difflib.SequenceMatcher(a=wa, b=wb, autojunk=False).ratio()


def _overlap_share(a: Segment, b: Segment) -> float:
    overlap = min(a.end_ms, b.end_ms) - max(a.start_ms, b.start_ms)
    shorter = max(1, min(a.end_ms - a.start_ms, b.end_ms - b.start_ms))
    return max(0, overlap) / shorter


def crosstalk_pairs(segs: Sequence[Segment], opts: QualityOptions = QualityOptions()) -> set[int]:
    """Indices (into time-sorted `segs`) of the quieter copy of each cross-mic duplicate or
    leak. Overlapping speech at similar levels (a backchannel over an answer) is kept."""
    quieter: set[int] = set()
    for i, a in enumerate(segs):
        for j in range(i + 1, len(segs)):
            b = segs[j]
            if b.start_ms >= a.end_ms:
                break
            if a.speaker == b.speaker:
                continue
            if _overlap_share(a, b) < opts.crosstalk_overlap:
                continue
            if abs(a.level_db - b.level_db) >= opts.leak_db or \
                    similarity(a.text, b.text) >= opts.crosstalk_similarity:
                quieter.add(j if b.level_db < a.level_db else i)
    return quieter


def repeated_runs(segs: Sequence[Segment], times: int = 3) -> set[int]:
    """Indices of segments that repeat the same speaker's previous text (3rd time and on)."""
    flagged: set[int] = set()
    last: dict[object, tuple[str, int]] = {}
    for i, s in enumerate(segs):
        key = " ".join(words(s.text))
        prev, count = last.get(s.speaker, ("", 0))
        count = count + 1 if key and key == prev else 1
        last[s.speaker] = (key, count)
        if count >= times:
            flagged.add(i)
    return flagged
