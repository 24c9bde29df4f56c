"""Shared fixtures of the transcribe tests: the real tiny.en model (once per session) and
espeak-ng speech placed at known times."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from tests.media import espeak_wav, speech_track

RATE = 16_000


@pytest.fixture(scope="session")
def whisper_model():
    """The bundled tiny.en, loaded once per test session (as a worker process would)."""
    from transcribe.model import ModelSpec, load_model

    return load_model(ModelSpec())


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("transcribe-media")


def decode16k(path: Path) -> np.ndarray:
    from transcribe.audio import decode

    return decode(path).samples


@pytest.fixture(scope="session")
def speech_clip(media_dir: Path) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Two utterances with a pause, as 16 kHz samples and their placed spans."""
    path, placed = speech_track(media_dir / "clip.wav", [(0.6, "Good morning everyone."),
                                                         (3.0, "Let us begin the interview.")], 5.5, "wav")
    return decode16k(path), placed


def speech_pcm(text: str, path: Path, voice: str = "en-us") -> np.ndarray:
    """espeak-ng speech as 16 kHz float32, leading/trailing silence trimmed."""
    samples = decode16k(espeak_wav(text, path, voice=voice))
    loud = np.flatnonzero(np.abs(samples) > 1e-3)
    return samples[loud[0]:loud[-1] + 1] if loud.size else samples[:0]


def write_wav(path: Path, samples: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def word_by_word(path: Path, words: list[str], start_s: float, gap_s: float, total_s: float,
                 voice: str = "en-us") -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """Speak each word on its own and place them one after another: every word's span is known."""
    out = np.zeros(int(total_s * RATE), np.float32)
    placed, t = [], start_s
    for i, w in enumerate(words):
        pcm = speech_pcm(w, path.with_name(f".{path.stem}.w{i}.wav"), voice)
        first = int(round(t * RATE))
        out[first:first + pcm.size] += pcm[:max(0, out.size - first)]
        placed.append((w, t, t + pcm.size / RATE))
        t += pcm.size / RATE + gap_s
    return out, placed
