"""Word and segment timing (pure): absurd word durations re-timed, segments cut where
speech stops or someone else starts.

Whisper's word times come from cross-attention alignment, which stretches a word over
whatever non-speech sits next to it (a pause, a noise floor, another voice): a first word
"said" over eight seconds. A word longer than `max_word_s` is re-timed from the audio of
its span — the voiced run next to the neighbour it touches — not just cut.

Segments are runs of words: a new one starts at a pause of `pause_s` or more between two
words, and where another participant's own speech starts (so one speaker's segment never
holds the other's turn). Times here are buffer seconds of one block.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from transcribe import vad
from transcribe.vad import VadOptions

SAMPLE_RATE = 16_000
MIN_WORD_S = 0.05  # a word the alignment squeezed to nothing still gets this much
Timed = tuple  # (word, start_s, end_s): the word object is passed through untouched


def voiced_runs(samples: np.ndarray, start_s: float, end_s: float, opts: VadOptions = VadOptions(),
                bridge_s: float = 0.15) -> list[tuple[float, float]]:
    """Stretches of [start_s, end_s) that webrtcvad calls speech (gaps < `bridge_s` bridged)."""
    import webrtcvad

    detector = webrtcvad.Vad(opts.aggressiveness)
    first = max(0, int(start_s * SAMPLE_RATE))
    piece = samples[first:max(first, int(end_s * SAMPLE_RATE))]
    flags = vad.classify(vad.frames(piece, opts.frame_ms), lambda pcm: detector.is_speech(pcm, SAMPLE_RATE),
                         opts.min_level_db)
    runs: list[tuple[float, float]] = []
    frame_s = opts.frame_ms / 1000
    for frame, voiced in flags:
        if not voiced:
            continue
        a, b = first / SAMPLE_RATE + frame.start_s, first / SAMPLE_RATE + frame.start_s + frame_s
        if runs and a - runs[-1][1] < bridge_s:
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((a, b))
    return runs


def typical_s(text: str) -> float:
    """A plausible duration for a word of this spelling (~12 letters per second, ≥ 0.2 s)."""
    return max(0.2, sum(ch.isalnum() for ch in str(text)) / 12)


def retime_long(words: Sequence[Timed], runs_of: Callable[[float, float], list[tuple[float, float]]],
                max_s: float = 2.0, text_of: Callable[[object], str] = str) -> list[Timed]:
    """Words longer than `max_s` put on the voiced audio of their span.

    The run kept is the one at the side where the word touches a neighbour (its start was
    stretched back over a silence or a leak: keep the end; or the other way round); with no
    voiced audio, a typical duration at that side. Never longer than `max_s`."""
    out = list(words)
    for i, (w, a, b) in enumerate(out):
        if b - a <= max_s:
            continue
        before = a - out[i - 1][2] if i > 0 else float("inf")
        after = out[i + 1][1] - b if i + 1 < len(out) else float("inf")
        keep_end = after < before or (after == before and i == 0)
        runs = runs_of(a, b)
        if runs:
            ra, rb = runs[-1] if keep_end else runs[0]
        else:
            span = typical_s(text_of(w))
            ra, rb = (b - span, b) if keep_end else (a, a + span)
        ra, rb = max(a, ra), min(b, rb)
        if rb - ra > max_s:
            ra, rb = (rb - max_s, rb) if keep_end else (ra, ra + max_s)
        out[i] = (w, ra, max(ra, rb))
    return out


def split_words(words: Sequence[Timed], pause_s: float, onsets_s: Sequence[float] = (),
                region_of: Callable[[float], object] | None = None) -> list[list[Timed]]:
    """Runs of words: cut at a pause ≥ `pause_s`, at another speech region (`region_of`,
    None = between regions), and where another participant starts speaking (`onsets_s`:
    the cut goes between the two words whose midpoints straddle the onset)."""
    groups: list[list[Timed]] = []
    last_region: object = object()
    for k, word in enumerate(words):
        region = region_of(word[1]) if region_of else None
        cut = not groups
        if groups:
            prev = words[k - 1]
            lo, hi = (prev[1] + prev[2]) / 2, (word[1] + word[2]) / 2
            cut = (word[1] - prev[2] >= pause_s or (region is not None and region != last_region)
                   or any(lo < t <= hi for t in onsets_s))
        if cut:
            groups.append([])
        groups[-1].append(word)
        last_region = region if region is not None else last_region
    return groups


def _levels(samples: np.ndarray, lo_s: float, hi_s: float, frame_ms: int) -> tuple[np.ndarray, float]:
    n = SAMPLE_RATE * frame_ms // 1000
    first = max(0, int(lo_s * SAMPLE_RATE))
    last = min(samples.size, max(first, int(hi_s * SAMPLE_RATE)))
    return vad.frame_levels_db(samples[first:last], n), first / SAMPLE_RATE


def noise_floor(samples: np.ndarray, lo_s: float, hi_s: float, frame_ms: int = 10) -> float:
    """The noise floor of a span (10th percentile of its frames above digital silence), or
    -120 when the span has no floor to speak of (digital silence between words)."""
    levels, _ = _levels(samples, lo_s, hi_s, frame_ms)
    heard = levels[levels > -90]
    floor = float(np.percentile(heard, 10)) if heard.size else -120.0
    return floor if floor <= -45 else -120.0


def _smooth(levels: np.ndarray) -> np.ndarray:
    """3-frame median: one noisy frame is no sound, one dip is no silence."""
    if levels.size < 3:
        return levels
    padded = np.concatenate([levels[:1], levels, levels[-1:]])
    return np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)


def refine_edge(samples: np.ndarray, word: tuple[float, float], lo_s: float, hi_s: float, side: str = "start",
                frame_ms: int = 10, below_peak_db: float = 25.0, look_s: float = 0.3, bridge_ms: int = 150,
                floor_db: float = -120.0) -> float:
    """A word's start (or end) moved onto the energy edge of its sound, within [lo_s, hi_s].

    Whisper's alignment puts the edges of a word next to silence off (late after a pause,
    or stretched over it). The word's sound is where the level is within `below_peak_db`
    of its peak (over its span and the `look_s` inside the edge); from the given edge, move
    outwards while the sound goes on (dips up to `bridge_ms`: a stop consonant), or
    inwards while it has not begun. Sound is also ≥ 8 dB above `floor_db`."""
    a, b = word
    levels, base = _levels(samples, lo_s, hi_s, frame_ms)
    levels = _smooth(levels)
    if levels.size < 3:
        return a if side == "start" else b
    frame_s = frame_ms / 1000

    def index(t: float) -> int:
        return min(levels.size - 1, max(0, int((t - base) / frame_s)))

    inner = (a, max(b, a + look_s)) if side == "start" else (min(a, b - look_s), b)
    peak = float(np.max(levels[index(inner[0]):index(inner[1]) + 1]))
    loud = levels >= max(peak - below_peak_db, floor_db + 8)
    out, k = (-1, index(a)) if side == "start" else (1, index(b - frame_s / 2))
    bridge = max(1, bridge_ms // frame_ms)

    def further(k: int) -> int:  # steps outwards to the next loud frame within the bridge (0: none)
        return next((j for j in range(1, bridge + 1) if 0 <= k + j * out < levels.size and loud[k + j * out]), 0)

    if loud[k] or further(k):
        while step := further(k):
            k += step * out
    else:
        while 0 <= k - out < levels.size and not loud[k]:
            k -= out
    return base + (k if side == "start" else k + 1) * frame_s


def pauses(samples: np.ndarray, lo_s: float, hi_s: float, min_s: float = 0.2, frame_ms: int = 10,
           above_floor_db: float = 10.0, below_peak_db: float = 35.0) -> list[tuple[float, float]]:
    """Silent stretches of at least `min_s` in [lo_s, hi_s): frames near the noise floor
    of the span or far below its loudest frame."""
    levels, base = _levels(samples, lo_s, hi_s, frame_ms)
    if levels.size == 0:
        return []
    silent = levels < max(float(np.percentile(levels, 10)) + above_floor_db, float(levels.max()) - below_peak_db)
    out, k, frame_s = [], 0, frame_ms / 1000
    while k < silent.size:
        j = k
        while j < silent.size and silent[j]:
            j += 1
        if (j - k) * frame_s >= min_s:
            out.append((base + k * frame_s, base + j * frame_s))
        k = j + 1
    return out


def clip_to_pauses(words: Sequence[Timed], gaps: Sequence[tuple[float, float]]) -> list[Timed]:
    """A word stretched across a pause keeps the side with more of it (its sound is there)."""
    out = list(words)
    for i, (w, a, b) in enumerate(out):
        for p0, p1 in gaps:
            if b <= p0 or a >= p1 or (a >= p0 and b <= p1):
                continue
            if max(0.0, p0 - a) >= max(0.0, b - p1):
                b = max(a, min(b, p0))
            else:
                a = min(b, max(a, p1))
        out[i] = (w, a, b)
    return out


def _peak(samples: np.ndarray, a: float, b: float) -> float:
    levels, _ = _levels(samples, a, max(b, a + 0.03), 10)
    return float(np.max(_smooth(levels))) if levels.size else -120.0


def adopt_orphans(words: Sequence[Timed], samples: np.ndarray, gap_s: float = 0.3,
                  quieter_db: float = 20.0) -> list[Timed]:
    """A word the alignment left in silence, a pause away from its neighbour ("Tell" four
    seconds before "me about…"), is put back against that neighbour (the sound it names is
    there); its edge is then found by `refine_words`."""
    out = list(words)
    for i, (w, a, b) in enumerate(out):
        nxt = out[i + 1] if i + 1 < len(out) else None
        prev = out[i - 1] if i else None
        if nxt is not None and nxt[1] - b >= gap_s and \
                _peak(samples, a, b) < _peak(samples, nxt[1], nxt[2]) - quieter_db:
            out[i] = (w, nxt[1], nxt[1])
        elif prev is not None and a - prev[2] >= gap_s and \
                _peak(samples, a, b) < _peak(samples, prev[1], prev[2]) - quieter_db:
            out[i] = (w, prev[2], prev[2])
    return out


def refine_words(words: Sequence[Timed], samples: np.ndarray, min_gap_s: float = 0.1,
                 region_start: Callable[[float], float] | None = None) -> list[Timed]:
    """`refine_edge` on the edges of words that touch a pause: every word's end (searched
    up to the next word's start), then the start of every word that follows a pause of
    `min_gap_s` or more (searched back to the previous word's end) or opens a region.
    First, words left in silence rejoin their neighbour and words stretched over a pause
    in the audio are clipped to one side of it."""
    if not words:
        return []
    out = clip_to_pauses(adopt_orphans(words, samples), pauses(samples, words[0][1], words[-1][2]))
    floor = noise_floor(samples, words[0][1], words[-1][2])
    for i, (w, a, b) in enumerate(out):
        nxt = out[i + 1][1] if i + 1 < len(out) else b + 0.5
        out[i] = (w, a, max(a, min(refine_edge(samples, (a, b), a, max(b, nxt), "end", floor_db=floor), max(b, nxt))))
    for i, (w, a, b) in enumerate(out):
        prev_end = out[i - 1][2] if i else (region_start(a) if region_start else max(0.0, a - 0.5))
        if i and a - prev_end < min_gap_s:
            continue
        lo = min(prev_end, a)
        out[i] = (w, min(max(lo, refine_edge(samples, (a, b), lo, b + 0.3, "start", floor_db=floor)), b), b)
    return [(w, a, max(b, a + MIN_WORD_S)) for w, a, b in out]
