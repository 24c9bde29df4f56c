"""Leak gate (pure): the frames where a microphone only hears another participant.

On a call every microphone also picks up the others — residual echo after the browser's
canceller, or two laptops in one room — 20–40 dB down and a few ms late. Over a noise
floor that leak is loud enough for webrtcvad to call it speech and for the model to
transcribe it as this speaker (and to stretch this speaker's words across it). Per 30-ms
frame (webrtcvad's), each track's level is compared with the loudest *other* track at
the same moment (a max over `max_lag_ms`: the leak arrives late):

    leak        the others are ≥ `margin_db` louder and clearly above their own floor
    talking     this track is clearly above its floor and not explained by the others
    gated       leak frames farther than `hold_ms` from any talking frame (so quiet
                consonants and speech over someone else's — a backchannel — survive)

Gated frames are turned down by `attenuation_db` (ramped, no clicks) before the VAD and
the model see them. Levels come as `Envelope`s on the recording timeline, so tracks whose
chunks are cut at different times still line up; frames no other envelope covers are
never gated (the merge's crosstalk check still hides what gets through).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from transcribe.vad import frame_levels_db

SAMPLE_RATE = 16_000
FLOOR = -120.0
HEARD_DB = -90.0  # quieter frames are digital silence (or already gated)


@dataclass(frozen=True)
class LeakOptions:
    enabled: bool = True
    frame_ms: int = 30
    margin_db: float = 15.0  # the others this much louder: what this mic hears is their leak
    rise_db: float = 12.0  # above a track's noise floor by this much: someone speaks into it
    max_floor_db: float = -40.0  # a floor estimate never above this (a span of nonstop speech)
    max_lag_ms: int = 60  # how late a leak may arrive (echo path, device buffers)
    hold_ms: int = 240  # frames this close to this track's own speech are never gated
    attenuation_db: float = 60.0  # how far gated frames are turned down
    min_talk_ms: int = 240  # another participant's speech shorter than this starts no turn


@dataclass(frozen=True)
class Envelope:
    """Per-frame RMS levels (dBFS) of one track from `start_ms` on the recording timeline."""

    start_ms: float
    frame_ms: int
    db: np.ndarray

    @property
    def end_ms(self) -> float:
        return self.start_ms + self.db.size * self.frame_ms

    def on_grid(self, start_ms: float, n: int, frame_ms: int) -> np.ndarray:
        """Levels at the `n` frames of another grid (by frame centre); NaN where not covered."""
        centres = start_ms + (np.arange(n) + 0.5) * frame_ms
        idx = np.floor((centres - self.start_ms) / self.frame_ms).astype(np.int64)
        ok = (idx >= 0) & (idx < self.db.size)
        out = np.full(n, np.nan)
        out[ok] = self.db[idx[ok]]
        return out


def envelope(samples: np.ndarray, start_ms: float, frame_ms: int = 30) -> Envelope:
    """The level envelope of 16 kHz samples that start at `start_ms` on the timeline."""
    return Envelope(float(start_ms), frame_ms, frame_levels_db(samples, SAMPLE_RATE * frame_ms // 1000))


def loudest(envelopes: Sequence[Envelope], start_ms: float, n: int, frame_ms: int) -> np.ndarray:
    """Per frame of a grid, the loudest of `envelopes` there (NaN where none covers it)."""
    out = np.full(n, np.nan)
    for env in envelopes:
        out = np.fmax(out, env.on_grid(start_ms, n, frame_ms))
    return out


def lagged_max(x: np.ndarray, back: int) -> np.ndarray:
    """y[k] = max(x[k-back … k+1]), NaN-aware: a leak `back` frames late still lines up."""
    out = x.copy()
    for shift in range(1, back + 1):
        out[shift:] = np.fmax(out[shift:], x[:-shift])
    if x.size > 1:
        out[:-1] = np.fmax(out[:-1], x[1:])
    return out


def noise_floor(db: np.ndarray, opts: LeakOptions) -> float:
    """10th percentile of the frames above digital silence (gated frames, already turned
    down, do not count: a carried tail is gated again with the next chunk)."""
    heard = db[np.isfinite(db) & (db > HEARD_DB)]
    return min(float(np.percentile(heard, 10)), opts.max_floor_db) if heard.size else FLOOR


def dilate(mask: np.ndarray, k: int) -> np.ndarray:
    """True within `k` frames of a True frame."""
    if k <= 0 or not mask.any():
        return mask.copy()
    # pad so the window never exceeds the signal (np.convolve "same" returns the longer of the two)
    padded = np.pad(mask.astype(float), k)
    return np.convolve(padded, np.ones(2 * k + 1), mode="valid") > 0


def leak_mask(own: np.ndarray, others: np.ndarray, opts: LeakOptions = LeakOptions()) -> np.ndarray:
    """True where a frame of this track only carries other participants' voices.

    `own` and `others` are levels (dBFS) on the same frame grid; `others` is the loudest
    other track per frame (NaN where unknown: never gated)."""
    lagged = lagged_max(others, max(0, opts.max_lag_ms // opts.frame_ms))
    known = np.isfinite(lagged)
    louder = known & (np.nan_to_num(lagged, nan=FLOOR) - own >= opts.margin_db)
    others_speak = np.nan_to_num(lagged, nan=FLOOR) >= noise_floor(others, opts) + opts.rise_db
    talking = (own >= noise_floor(own, opts) + opts.rise_db) & ~louder
    hold = max(0, opts.hold_ms // opts.frame_ms)
    return louder & others_speak & ~dilate(talking, hold)


def others_talking(own: np.ndarray, others: np.ndarray, opts: LeakOptions = LeakOptions()) -> np.ndarray:
    """Frames where another participant speaks in their own right (not our leak into them)."""
    ours = lagged_max(own, max(0, opts.max_lag_ms // opts.frame_ms))
    known = np.isfinite(others)
    level = np.nan_to_num(others, nan=FLOOR)
    return known & (level >= noise_floor(others, opts) + opts.rise_db) & (ours - level < opts.margin_db)


def onsets(talking: np.ndarray, start_ms: float, opts: LeakOptions = LeakOptions()) -> list[float]:
    """Timeline ms where runs of `talking` frames (short gaps bridged, short runs dropped) start."""
    frame = opts.frame_ms
    bridged = ~dilate(~dilate(talking, 3), 3) if talking.any() else talking  # close gaps ≤ ~180 ms
    out, k, n = [], 0, bridged.size
    while k < n:
        if not bridged[k]:
            k += 1
            continue
        j = k
        while j < n and bridged[j]:
            j += 1
        if (j - k) * frame >= opts.min_talk_ms:
            first = k + int(np.argmax(talking[k:j]))
            out.append(start_ms + first * frame)
        k = j
    return out


def gains(mask: np.ndarray, n_samples: int, opts: LeakOptions = LeakOptions()) -> np.ndarray:
    """Per-sample gain: 1 in kept frames, −`attenuation_db` in gated ones, ramped over a frame."""
    frame_n = SAMPLE_RATE * opts.frame_ms // 1000
    per_frame = np.where(mask, 10 ** (-opts.attenuation_db / 20), 1.0)
    if per_frame.size == 0:
        return np.ones(n_samples, np.float32)
    centres = (np.arange(per_frame.size) + 0.5) * frame_n
    return np.interp(np.arange(n_samples), centres, per_frame).astype(np.float32)


@dataclass(frozen=True)
class Gate:
    """What the others' envelopes say about one stretch of a track."""

    samples: np.ndarray  # the track with leak-only frames turned down
    gated_s: float  # seconds of audio turned down
    onsets_ms: tuple[float, ...]  # where another participant's own speech starts (timeline)


def gate(samples: np.ndarray, start_ms: float, others: Sequence[Envelope],
         opts: LeakOptions = LeakOptions()) -> Gate:
    """Turn down the frames of `samples` (16 kHz, from `start_ms`) that only carry the voices
    of `others`, and find where the others start to speak."""
    if not opts.enabled or not others or samples.size == 0:
        return Gate(samples, 0.0, ())
    own = envelope(samples, start_ms, opts.frame_ms).db
    loud = loudest(others, start_ms, own.size, opts.frame_ms)
    mask = leak_mask(own, loud, opts)
    talk = onsets(others_talking(own, loud, opts), start_ms, opts)
    if not mask.any():
        return Gate(samples, 0.0, tuple(talk))
    out = samples * gains(mask, samples.size, opts)
    return Gate(out.astype(np.float32), float(mask.sum() * opts.frame_ms / 1000), tuple(talk))
