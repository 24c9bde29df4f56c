"""Audio of a window: every participant decoded onto the timeline, VAD, gain, mix.

Loudness: a simple per-participant gain (not `loudnorm`), computed from the RMS of the
participant's speech frames (webrtcvad) over the window plus its look-back, aiming at
`target_rms` (≈ −22 dBFS) and clamped, so a quiet candidate and a loud interviewer
end up at similar levels. The mix is the sum (what `amix=normalize=0` computes),
hard-limited to [-1, 1]. Everything is sample-exact on the timeline, so A/V sync is
decided by timestamps alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from compositor.decode import audio_samples
from compositor.timing import audio_bounds
from compositor.vad import voice_activity

__all__ = ["WindowAudio", "window_audio", "speech_gain"]

VAD_FRAME_MS = 30
PRIMING = 1024  # AAC frame: the extra frame each window encodes before its own audio


@dataclass
class WindowAudio:
    """first: absolute sample number of mix[0]. activity[p]: VAD frames from vad_start_ms."""

    mix: np.ndarray
    first: int
    vad_start_ms: int
    activity: list[np.ndarray]
    gains: list[float]


def _frame_ceil(sample: int) -> int:
    return -(-sample // PRIMING) * PRIMING


def speech_gain(samples: np.ndarray, activity: np.ndarray, rate: int, target_rms: float = 0.08,
                lo: float = 0.25, hi: float = 8.0) -> float:
    """Gain bringing the RMS of the speech frames (or of all non-silent audio) to `target_rms`."""
    step = rate * VAD_FRAME_MS // 1000
    frames = samples[: activity.size * step].reshape(-1, step) if activity.size else samples[:0].reshape(0, 1)
    voiced = frames[activity[: frames.shape[0]]] if frames.size else frames
    pool = voiced if voiced.size else samples[np.abs(samples) > 1e-4]
    if pool.size == 0:
        return 1.0
    rms = float(np.sqrt(np.mean(np.square(pool, dtype=np.float64))))
    return float(np.clip(target_rms / max(rms, 1e-9), lo, hi))


def window_audio(audio_paths: Sequence[Path | None], index: int, window_ms: int, rate: int = 48000,
                 lookback_ms: int = 5000, aggressiveness: int = 2, target_rms: float = 0.08,
                 end_ms: int | None = None) -> WindowAudio:
    """Decode, analyse and mix the participants' audio for window `index`.

    The mix covers [a0 - PRIMING, a1) for index > 0 (see `compositor.timing.audio_bounds`):
    the extra leading frame is encoded and dropped again at concatenation so that AAC's
    overlap at each window boundary comes from real audio, not from silence.
    """
    a0, a1 = audio_bounds(index, window_ms, rate)
    if end_ms is not None:  # the last window stops at the end of the recording (whole frames)
        a1 = max(a0 + PRIMING, min(a1, _frame_ceil(end_ms * rate // 1000)))
    enc_first = a0 - PRIMING if index > 0 else 0
    vad_start_ms = max(0, index * window_ms - lookback_ms) // VAD_FRAME_MS * VAD_FRAME_MS
    first = min(enc_first, vad_start_ms * rate // 1000)
    tracks = [audio_samples(p, first, a1, rate) if p is not None else None for p in audio_paths]
    vad_off = vad_start_ms * rate // 1000 - first
    activity, gains = [], []
    mix = np.zeros(a1 - enc_first, dtype=np.float32)
    for pcm in tracks:
        if pcm is None:
            activity.append(np.zeros(0, dtype=bool))
            gains.append(0.0)
            continue
        act = voice_activity(pcm[vad_off:], rate, VAD_FRAME_MS, aggressiveness)
        gain = speech_gain(pcm[vad_off:], act, rate, target_rms)
        activity.append(act)
        gains.append(gain)
        mix += gain * pcm[enc_first - first:]
    np.clip(mix, -1.0, 1.0, out=mix)
    return WindowAudio(mix=mix, first=enc_first, vad_start_ms=vad_start_ms, activity=activity, gains=gains)
