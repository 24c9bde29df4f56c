"""Natural voices on laptop microphones: ours vs naive faster-whisper, WER per speaker,
× realtime, timing, and what the leak gate and the accuracy options cost or save.

The interview is `bench.transcribe.natural` (piper neural voice + festival HTS voice,
−50 dBFS noise floor, the other voice leaking in 30 dB down, 12 ms late), its script said
twice (~4 min). Every row runs on the same tracks with the same model object in one run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bench.results import emit
from bench.transcribe.natural import CANDIDATE, INTERVIEWER, JOB_TERMS, TURNS, Conversation, conversation
from transcribe import leak
from transcribe.merge import merge_segments
from transcribe.model import DecodeOptions, ModelSpec, load_model
from transcribe.pipeline import TrackOptions, split_samples, transcribe_track
from transcribe.types import Segment
from transcribe.wer import WerResult, wer

SR = 16_000
PEOPLE = (INTERVIEWER, CANDIDATE)
CORES = 2  # × realtime from CPU time: what the run would take with both cores to itself


@dataclass
class Result:
    wall: float
    per_speaker: dict[str, WerResult]
    heard_s: float = 0.0
    segments: list[Segment] | None = None
    cpu: float = 0.0  # CPU seconds of this process (every model thread included)

    @property
    def total(self) -> WerResult:
        a, b = self.per_speaker.values()
        return a + b


def chunked_levels(samples: np.ndarray, first_s: float, chunk_s: float = 30.0) -> list[leak.Envelope]:
    cuts = [0, *range(int(first_s * SR), samples.size, int(chunk_s * SR)), samples.size]
    return [leak.envelope(samples[a:b], a * 1000 / SR) for a, b in zip(cuts, cuts[1:]) if b > a]


def run_ours(model, talk: Conversation, opts: TrackOptions, lookahead: int, gate: bool = True) -> Result:
    started, cpu = time.perf_counter(), time.process_time()
    segments, heard = [], 0.0
    for k, sp in enumerate(PEOPLE):
        others = chunked_levels(talk.tracks[PEOPLE[1 - k]], 7.0 + 11.0 * k) if gate else []
        segs, h = transcribe_track(model, sp, split_samples(talk.tracks[sp], 0, 30.0), opts, lookahead, others)
        segments, heard = segments + segs, heard + h
    merged = merge_segments(segments)
    wall = time.perf_counter() - started
    texts = {sp.display_name: wer(talk.reference(sp), " ".join(s.text for s in merged
                                                               if s.speaker == sp and not s.suppressed))
             for sp in PEOPLE}
    return Result(wall, texts, heard, merged, time.process_time() - cpu)


def run_naive(model, talk: Conversation, beam: int, vad_filter: bool) -> Result:
    started, cpu = time.perf_counter(), time.process_time()
    texts = {}
    for sp in PEOPLE:
        segs, _ = model.transcribe(talk.tracks[sp], language="en", beam_size=beam, word_timestamps=True,
                                   vad_filter=vad_filter)
        texts[sp.display_name] = wer(talk.reference(sp), " ".join(s.text for s in segs))
    return Result(time.perf_counter() - started, texts, cpu=time.process_time() - cpu)


def timing_of(talk: Conversation, segments: list[Segment]) -> str:
    """Largest first-word error per sentence, words > 2 s, segments holding another's turn."""
    errors, long_words, holding = [], 0, 0
    for sp in PEOPLE:
        said = [p for p in talk.sentences if p.speaker == sp]
        first: dict[int, float] = {}
        for w in (w for s in segments if s.speaker == sp and not s.suppressed for w in s.words):
            mid = (w.start_ms + w.end_ms) / 2000
            k = min(range(len(said)), key=lambda i: max(said[i].start_s - mid, mid - said[i].end_s, 0.0))
            first[k] = min(first.get(k, float("inf")), w.start_ms / 1000)
        errors += [abs(first[i] - p.start_s) for i, p in enumerate(said) if i in first]
    for s in (s for s in segments if not s.suppressed):
        long_words += sum(w.end_ms - w.start_ms > 2000 for w in s.words)
        holding += any(sp != s.speaker and any(w.end_ms / 1000 <= a for w in s.words)
                       and any(w.start_ms / 1000 >= b for w in s.words) for sp, a, b in talk.turns())
    return (f"first word: median {np.median(errors):.2f} s, max {max(errors):.2f} s; "
            f"words > 2 s: {long_words}; segments holding another's turn: {holding}")


def versus(r: Result, naive: Result, what: str) -> str:
    """The "vs naive" cell: WER ratio per speaker and CPU ratio against a naive row."""
    ratios = [r.per_speaker[k].wer / max(naive.per_speaker[k].wer, 1e-9) for k in r.per_speaker]
    return f"WER ×{ratios[0]:.2f} / ×{ratios[1]:.2f} of naive ({what}); CPU ×{r.cpu / naive.cpu:.2f}"


def row(name: str, talk: Conversation, r: Result, note: str = "") -> str:
    d, c = r.per_speaker[INTERVIEWER.display_name], r.per_speaker[CANDIDATE.display_name]
    heard = f"{r.heard_s:.0f}" if r.heard_s else "all"
    return (f"| {name} | {r.wall:.1f} | {talk.duration_s / r.wall:.1f}× | {r.cpu:.1f} | "
            f"{talk.duration_s * CORES / r.cpu:.1f}× | {d.wer * 100:.1f}% | {c.wer * 100:.1f}% "
            f"| {r.total.wer * 100:.1f}% | {heard} | {note} |")


def natural_table(model, beam: int, lookahead: int, workdir: Path) -> list[str]:
    started = time.perf_counter()
    talk = conversation(workdir, list(TURNS) * 2)
    made = time.perf_counter() - started
    speech = sum(p.end_s - p.start_s for p in talk.sentences)
    base = TrackOptions(decode=DecodeOptions(beam_size=beam))
    # the first model calls of a process are slower: warm up outside every row
    transcribe_track(model, INTERVIEWER, split_samples(talk.tracks[INTERVIEWER][:60 * SR], 0, 30.0), base, lookahead)
    ours = run_ours(model, talk, base, lookahead)
    live = run_ours(model, talk, base, 1)
    ungated = run_ours(model, talk, base, lookahead, gate=False)
    prev = run_ours(model, talk, replace(base, decode=replace(base.decode, previous_text=True)), lookahead)
    second = run_ours(model, talk, replace(base, decode=replace(base.decode, second_pass=True)), lookahead)
    hinted = run_ours(model, talk, replace(base, decode=replace(base.decode, vocabulary=JOB_TERMS)), lookahead)
    naive_off = run_naive(model, talk, beam, vad_filter=False)
    naive_on = run_naive(model, talk, beam, vad_filter=True)

    for sp in PEOPLE:
        ours_w, naive_w = ours.per_speaker[sp.display_name].wer, naive_off.per_speaker[sp.display_name].wer
        emit("transcribe", f"WER ours vs naive (vad_filter off), natural voices, {sp.role}", ours_w * 100,
             naive_w * 100, target="≤ 0.5×", met=ours_w <= 0.5 * naive_w, unit="%")
        hinted_w = hinted.per_speaker[sp.display_name].wer
        emit("transcribe", f"WER ours + job-description vocabulary vs naive, natural voices, {sp.role}",
             hinted_w * 100, naive_w * 100, target="≤ 0.5×", met=hinted_w <= 0.5 * naive_w, unit="%")
    emit("transcribe", "speed ours (batched, gate) from CPU time, natural voices", talk.duration_s * CORES / ours.cpu,
         talk.duration_s * CORES / naive_off.cpu, target="≥ 20× RT", met=talk.duration_s * CORES / ours.cpu >= 20,
         unit="× RT")
    emit("transcribe", "leak gate: CPU s with vs without", ours.cpu, ungated.cpu, unit="s")

    def vs(r: Result) -> str:
        return versus(r, naive_off, "VAD off")

    return [
        f"Interview: {talk.duration_s / 60:.1f} min, {len(talk.sentences)} sentences ({speech:.0f} s of speech), "
        f"interviewer = festival cmu_us_slt_arctic_hts, candidate = piper en_US-joe-medium; each track: its own "
        f"voice + pink noise at −50 dBFS + the other voice 30 dB down, 12 ms late. Synthesis took {made:.1f} s "
        f"(cached after the first run). Model tiny.en int8, beam {beam}.",
        "",
        "| pipeline | wall s | × realtime | CPU s | × realtime on 2 idle cores (CPU) | WER interviewer "
        "| WER candidate | WER both | speech to model (s) | vs naive |",
        "|---|---|---|---|---|---|---|---|---|---|",
        row(f"ours, batched ({lookahead} chunks), leak gate", talk, ours, vs(ours)),
        row("ours, live (chunk by chunk), leak gate", talk, live, vs(live)),
        row("ours, batched, no leak gate (other track missing: the fallback)", talk, ungated, vs(ungated)),
        row("ours + the speaker's previous text as prompt (windows one by one)", talk, prev, vs(prev)),
        row("ours + second pass on unsure segments (beam 5, temperature fallback)", talk, second, vs(second)),
        row(f"ours + the job description's terms as vocabulary ({len(JOB_TERMS)} terms)", talk, hinted, vs(hinted)),
        row("naive faster-whisper per track, vad_filter off", talk, naive_off, "baseline"),
        row("naive faster-whisper per track, vad_filter on (Silero)", talk, naive_on, vs(naive_on)),
        "",
        f"Leak gate: {ungated.heard_s - ours.heard_s:.0f} s less audio to the model "
        f"({ungated.heard_s:.0f} → {ours.heard_s:.0f} s), wall {ungated.wall:.1f} → {ours.wall:.1f} s, "
        f"CPU {ungated.cpu:.1f} → {ours.cpu:.1f} s.",
        "",
        f"Timing, ours with the gate: {timing_of(talk, ours.segments)}.",
        f"Timing, ours without the gate: {timing_of(talk, ungated.segments)}.",
    ]


def larger_model_table(path: str, beam: int, lookahead: int, workdir: Path) -> list[str]:
    """The same natural-voice tracks through a larger model set by path (what
    `RECORDER_WHISPER_MODEL` does): ours vs naive faster-whisper, both on that model."""
    model = load_model(ModelSpec(name=path))
    label = Path(path).name
    talk = conversation(workdir, list(TURNS) * 2)
    base = TrackOptions(decode=DecodeOptions(beam_size=beam))
    transcribe_track(model, INTERVIEWER, split_samples(talk.tracks[INTERVIEWER][:60 * SR], 0, 30.0), base, lookahead)
    ours = run_ours(model, talk, base, lookahead)
    hinted = run_ours(model, talk, replace(base, decode=replace(base.decode, vocabulary=JOB_TERMS)), lookahead)
    naive = run_naive(model, talk, beam, vad_filter=False)
    for sp in PEOPLE:
        ours_w, naive_w = ours.per_speaker[sp.display_name].wer, naive.per_speaker[sp.display_name].wer
        emit("transcribe", f"WER ours vs naive (vad_filter off), natural voices, {sp.role}, model {label} by path",
             ours_w * 100, naive_w * 100, target="≤ 0.5×", met=ours_w <= 0.5 * naive_w, unit="%")
    speed = talk.duration_s * CORES / ours.cpu
    emit("transcribe", f"speed ours (batched, gate) from CPU time, natural voices, model {label} by path", speed,
         talk.duration_s * CORES / naive.cpu, target="≥ 20× RT", met=speed >= 20, unit="× RT")

    def vs(r: Result) -> str:
        return versus(r, naive, "VAD off, same model")

    return [
        f"The same tracks through a larger model set by path (`RECORDER_WHISPER_MODEL=…/{label}`, "
        f"`make model-base`: Whisper base, multilingual, CTranslate2, int8 on CPU), beam {beam}; naive runs the same "
        "model:",
        "",
        "| pipeline | wall s | × realtime | CPU s | × realtime on 2 idle cores (CPU) | WER interviewer "
        "| WER candidate | WER both | speech to model (s) | vs naive |",
        "|---|---|---|---|---|---|---|---|---|---|",
        row(f"ours, batched ({lookahead} chunks), leak gate, {label}", talk, ours, vs(ours)),
        row(f"ours + the job description's terms as vocabulary, {label}", talk, hinted, vs(hinted)),
        row(f"naive faster-whisper per track, vad_filter off, {label}", talk, naive, "baseline"),
    ]
