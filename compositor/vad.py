"""Voice activity per participant with webrtcvad (30-ms frames of 16-bit mono PCM)."""
from __future__ import annotations

import numpy as np
import webrtcvad

__all__ = ["voice_activity", "VAD_RATES"]

VAD_RATES = (8000, 16000, 32000, 48000)


def voice_activity(samples: np.ndarray, rate: int = 48000, frame_ms: int = 30,
                   aggressiveness: int = 2) -> np.ndarray:
    """One bool per `frame_ms` frame of float32 mono `samples` (a trailing partial frame is dropped)."""
    if rate not in VAD_RATES or frame_ms not in (10, 20, 30):
        raise ValueError(f"webrtcvad needs rate in {VAD_RATES} and 10/20/30-ms frames")
    vad = webrtcvad.Vad(aggressiveness)
    step = rate * frame_ms // 1000
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    count = pcm.size // step
    out = np.zeros(count, dtype=bool)
    for i in range(count):
        frame = pcm[i * step:(i + 1) * step]
        # webrtcvad calls near-silent noise "speech" at low aggressiveness; digital silence is not.
        out[i] = bool(frame.any()) and vad.is_speech(frame.tobytes(), rate)
    return out
