"""Speech detection with webrtcvad, as small chained generators.

    samples --frames()--> Frame --classify()--> (Frame, voiced) --regions()--> Region

`regions` smooths the frame decisions with a ring buffer of `padding_ms` (hysteresis:
speech starts when `on_ratio` of the ring is voiced, ends when `off_ratio` is unvoiced),
so one short click does not open a region and one short breath does not close it.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class VadOptions:
    aggressiveness: int = 2  # webrtcvad 0 (lenient) … 3 (strict)
    frame_ms: int = 30  # webrtcvad accepts 10, 20 or 30
    padding_ms: int = 300  # ring buffer length (hysteresis window)
    on_ratio: float = 0.6  # share of voiced frames in the ring that opens a region
    off_ratio: float = 0.9  # share of unvoiced frames in the ring that closes it
    lead_ms: int = 200  # audio kept before the first voiced frame
    trail_ms: int = 250  # audio kept after the last voiced frame
    min_speech_ms: int = 150  # shorter regions are dropped (clicks)
    merge_gap_ms: int = 400  # regions closer than this become one (a short breath)
    min_level_db: float = -55.0  # frames quieter than this are never speech
    above_floor_db: float = 6.0  # …nor frames this close to the buffer's noise floor (a laptop's
    # hiss passes -55 dBFS and webrtcvad calls some of it speech; the model then invents words)


@dataclass(frozen=True)
class Frame:
    start_s: float
    pcm: bytes  # 16-bit little-endian mono
    level_db: float


@dataclass(frozen=True)
class Region:
    """Speech in [start_s, end_s) of a buffer; `closed` = a pause was seen after it."""

    start_s: float
    end_s: float
    closed: bool = True
    onset_s: float | None = None  # first voiced frame (start_s includes `lead_ms` before it)

    @property
    def speech_start_s(self) -> float:
        return self.start_s if self.onset_s is None else max(self.start_s, self.onset_s)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def to_pcm16(samples: np.ndarray) -> bytes:
    """float32 in [-1, 1] → 16-bit little-endian PCM bytes."""
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def level_db(samples: np.ndarray) -> float:
    """RMS level in dBFS (-120 for digital silence)."""
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(-120.0, 20.0 * np.log10(rms)) if rms > 0 else -120.0


def frame_levels_db(samples: np.ndarray, n: int) -> np.ndarray:
    """RMS level (dBFS, floor -120) of each whole `n`-sample frame, computed in one pass."""
    count = samples.size // n
    if count == 0:
        return np.empty(0)
    power = np.mean(np.square(samples[:count * n].reshape(count, n), dtype=np.float64), axis=1)
    with np.errstate(divide="ignore"):
        return np.maximum(-120.0, 10.0 * np.log10(power))


def frames(samples: np.ndarray, frame_ms: int = 30, sample_rate: int = SAMPLE_RATE) -> Iterator[Frame]:
    """Consecutive whole frames of a float32 buffer (a partial last frame is left out)."""
    n = sample_rate * frame_ms // 1000
    levels = frame_levels_db(samples, n)
    pcm = to_pcm16(samples[:levels.size * n])
    step = 2 * n
    for k, level in enumerate(levels.tolist()):
        yield Frame(k * n / sample_rate, pcm[k * step:(k + 1) * step], level)


def classify(frames_: Iterable[Frame], is_speech: Callable[[bytes], bool],
             min_level_db: float = -55.0) -> Iterator[tuple[Frame, bool]]:
    """Pair each frame with the detector's verdict; near-silent frames are never speech."""
    for frame in frames_:
        yield frame, frame.level_db >= min_level_db and is_speech(frame.pcm)


def regions(flags: Iterable[tuple[Frame, bool]], opts: VadOptions = VadOptions()) -> Iterator[Region]:
    """Smooth voiced/unvoiced frames into speech regions (padding + hysteresis)."""
    frame_s = opts.frame_ms / 1000
    ring: collections.deque[tuple[Frame, bool]] = collections.deque(maxlen=max(1, opts.padding_ms // opts.frame_ms))
    start_s: float | None = None
    onset_s = last_voiced_end = 0.0
    for frame, voiced in flags:
        ring.append((frame, voiced))
        if voiced:
            last_voiced_end = frame.start_s + frame_s
        n_voiced = sum(1 for _, v in ring if v)
        if start_s is None and n_voiced >= opts.on_ratio * ring.maxlen:
            onset_s = next(f.start_s for f, v in ring if v)
            start_s = max(0.0, onset_s - opts.lead_ms / 1000)
            ring.clear()
        elif start_s is not None and len(ring) - n_voiced >= opts.off_ratio * ring.maxlen:
            yield Region(start_s, last_voiced_end + opts.trail_ms / 1000, True, onset_s)
            start_s = None
            ring.clear()
    if start_s is not None:
        yield Region(start_s, last_voiced_end + opts.trail_ms / 1000, False, onset_s)


def tidy(found: Iterable[Region], opts: VadOptions = VadOptions(), end_s: float | None = None) -> list[Region]:
    """Merge regions separated by short gaps, drop clicks, clip to the buffer end."""
    out: list[Region] = []
    for r in found:
        if end_s is not None:
            r = Region(r.start_s, min(r.end_s, end_s), r.closed, r.onset_s)
        if out and r.start_s - out[-1].end_s < opts.merge_gap_ms / 1000:
            out[-1] = Region(out[-1].start_s, max(out[-1].end_s, r.end_s), r.closed, out[-1].onset_s)
        else:
            out.append(r)
    return [r for r in out if r.duration_s * 1000 >= opts.min_speech_ms or not r.closed]


def speech_regions(samples: np.ndarray, opts: VadOptions = VadOptions(),
                   sample_rate: int = SAMPLE_RATE) -> list[Region]:
    """Speech regions of a 16 kHz mono float32 buffer, found with webrtcvad."""
    import webrtcvad

    vad = webrtcvad.Vad(opts.aggressiveness)

    def is_speech(pcm: bytes) -> bool:
        return vad.is_speech(pcm, sample_rate)

    min_level = max(opts.min_level_db, noise_floor_db(samples, opts, sample_rate) + opts.above_floor_db)
    flags = classify(frames(samples, opts.frame_ms, sample_rate), is_speech, min_level)
    return tidy(regions(flags, opts), opts, end_s=samples.size / sample_rate)


def noise_floor_db(samples: np.ndarray, opts: VadOptions = VadOptions(), sample_rate: int = SAMPLE_RATE,
                   min_s: float = 5.0) -> float:
    """The buffer's noise floor: 10th percentile of its frame levels above digital silence
    (−120 when unknown: a buffer shorter than `min_s`, or no frame quieter than −40 dBFS)."""
    levels = frame_levels_db(samples, sample_rate * opts.frame_ms // 1000)
    heard = levels[levels > -90]
    if samples.size < min_s * sample_rate or heard.size == 0:
        return -120.0
    floor = float(np.percentile(heard, 10))
    return floor if floor <= -40 else -120.0


def voiced_ratio(samples: np.ndarray, opts: VadOptions = VadOptions(), sample_rate: int = SAMPLE_RATE) -> float:
    """Share of frames of a span that webrtcvad calls speech (0 for an empty span)."""
    import webrtcvad

    vad = webrtcvad.Vad(opts.aggressiveness)
    verdicts = [v for _, v in classify(frames(samples, opts.frame_ms, sample_rate),
                                       lambda pcm: vad.is_speech(pcm, sample_rate), opts.min_level_db)]
    return sum(verdicts) / len(verdicts) if verdicts else 0.0
