"""bench/transcribe: our per-speaker, VAD-gated pipeline vs faster-whisper run naively.

A synthetic 2-speaker technical interview (espeak-ng, domain terms, pauses, backchannels
that overlap the other speaker) is built as two tracks plus their mix, once as microphone
tracks (noise floor + the other voice leaking in) and once clean. The same tiny.en model
with the same threads and beam transcribes each condition five ways:

    ours, live       each track cut into 30-s chunks, webrtcvad-gated, tails carried,
                     each chunk's windows decoded as it arrives
    ours, batched    the same, 16 chunks' windows per model batch (catch-up / re-transcribe)
    ours + vocab     batched, with the domain terms as vocabulary hints
    naive per track  model.transcribe() over each whole track
    naive mixed      model.transcribe() over the mixed track

and reports × realtime (interview duration / wall time) and WER (normalized English) for
each; then a natural-voice microphone interview (bench/transcribe/natural_bench.py: piper
neural + festival HTS voices, leak, noise floor) through ours, ours without the leak gate,
the accuracy options and naive faster-whisper with vad_filter off/on; then search latency
over N indexed segments (bench/transcribe/search_bench.py).

    python -m bench.transcribe [--quick] [--minutes 10.5] [--rows 1000000] [--skip-search] [--natural-only]
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.results import emit
from bench.transcribe.script import BACKCHANNELS, PAIRS, TERMS
from transcribe.audio import decode
from transcribe.model import DecodeOptions, ModelSpec, load_model
from transcribe.merge import merge_segments
from transcribe.pipeline import TrackOptions, split_samples, transcribe_track
from transcribe.types import Speaker
from transcribe.wer import WerResult, wer

HERE = Path(__file__).parent
LARGER_MODEL = Path(__file__).resolve().parents[2] / "var" / "models" / "whisper-base-ct2"  # `make model-base`
NATURAL_CACHE = Path(tempfile.gettempdir()) / "bench-transcribe-natural"  # synthesized sentences (WAV)
RATE = 16_000
INTERVIEWER = Speaker("p-int", "Interviewer", "interviewer", "trk-int")
CANDIDATE = Speaker("p-cand", "Candidate", "candidate", "trk-cand")
VOICES = {INTERVIEWER: "en-us", CANDIDATE: "en-us+m3"}


@dataclass
class Interview:
    duration_s: float
    tracks: dict[Speaker, np.ndarray]
    refs: dict[Speaker, list[tuple[float, str]]] = field(default_factory=dict)

    @property
    def mixed(self) -> np.ndarray:
        return np.clip(sum(self.tracks.values()), -1, 1).astype(np.float32)

    def reference(self, speaker: Speaker | None = None) -> str:
        lines = [(t, s) for sp, rs in self.refs.items() if speaker in (None, sp) for t, s in rs]
        return " ".join(s for _, s in sorted(lines))


def speak(text: str, voice: str, workdir: Path) -> np.ndarray:
    out = workdir / f"u{abs(hash((text, voice)))}.wav"
    if not out.exists():
        subprocess.run(["espeak-ng", "-v", voice, "-s", "155", "-w", str(out), text], check=True, timeout=60)
    samples = decode(out).samples
    loud = np.flatnonzero(np.abs(samples) > 1e-3)
    return samples[loud[0]:loud[-1] + 1]


def build_interview(target_s: float, workdir: Path, seed: int = 3) -> Interview:
    """Question, pause, answer (with an overlapping backchannel now and then), pause, …"""
    rng = random.Random(seed)
    clips: list[tuple[Speaker, float, np.ndarray, str]] = []
    t, i = 1.0, 0
    while t < target_s:
        question, answer = PAIRS[i % len(PAIRS)]
        q = speak(question, VOICES[INTERVIEWER], workdir)
        clips.append((INTERVIEWER, t, q, question))
        t += q.size / RATE + rng.uniform(0.6, 1.4)
        a = speak(answer, VOICES[CANDIDATE], workdir)
        clips.append((CANDIDATE, t, a, answer))
        if i % 3 == 1:  # the interviewer says "Right." while the candidate is talking
            word = BACKCHANNELS[i % len(BACKCHANNELS)]
            clips.append((INTERVIEWER, t + 0.45 * a.size / RATE, speak(word, VOICES[INTERVIEWER], workdir), word))
        t += a.size / RATE + rng.uniform(0.8, 2.0)
        i += 1
    duration = t + 2.0
    tracks = {sp: np.zeros(int(duration * RATE), np.float32) for sp in VOICES}
    refs: dict[Speaker, list[tuple[float, str]]] = {sp: [] for sp in VOICES}
    for sp, start, pcm, text in clips:
        first = int(start * RATE)
        tracks[sp][first:first + pcm.size] += pcm
        refs[sp].append((start, text))
    return Interview(duration, tracks, refs)


def pink_noise(n: int, level_db: float, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of 1/f noise at `level_db` dBFS RMS (a room and a laptop microphone)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
    pink = np.fft.irfft(spectrum, n)
    return (pink * 10 ** (level_db / 20) / np.sqrt(np.mean(pink ** 2))).astype(np.float32)


def room_tracks(iv: Interview, seed: int = 1, floor_db: float = -50.0, bleed_db: float = -30.0,
                bleed_ms: float = 20.0) -> dict[Speaker, np.ndarray]:
    """Each track as a real microphone hears it: a pink-noise floor at `floor_db` dBFS and
    the other speaker leaking in `bleed_db` below their own level, `bleed_ms` late (residual
    echo after the browser's echo canceller, or two people in one room)."""
    rng = np.random.default_rng(seed)
    out = {}
    for sp, own in iv.tracks.items():
        pink = pink_noise(own.size, floor_db, rng)
        lag = int(bleed_ms * RATE / 1000)
        others = sum(t for o, t in iv.tracks.items() if o != sp)
        bleed = np.concatenate([np.zeros(lag, np.float32), others[:own.size - lag]]) * 10 ** (bleed_db / 20)
        out[sp] = np.clip(own + bleed + pink, -1, 1).astype(np.float32)
    return out


def run_ours(model, iv: Interview, tracks: dict[Speaker, np.ndarray], opts: TrackOptions,
             lookahead: int) -> tuple[float, WerResult, float]:
    started = time.perf_counter()
    segments, heard = [], 0.0
    for sp, samples in tracks.items():
        segs, h = transcribe_track(model, sp, split_samples(samples, 0, 30.0), opts, lookahead=lookahead)
        segments, heard = segments + segs, heard + h
    merged = merge_segments(segments)  # crosstalk duplicates need every speaker
    wall = time.perf_counter() - started
    result = None
    for sp in tracks:
        r = wer(iv.reference(sp), " ".join(s.text for s in merged if s.speaker == sp and not s.suppressed))
        result = r if result is None else result + r
    return wall, result, heard


def naive(model, samples: np.ndarray, beam: int) -> str:
    segments, _ = model.transcribe(samples, language="en", beam_size=beam, word_timestamps=True)
    return " ".join(s.text for s in segments)


def run_naive_tracks(model, iv: Interview, tracks: dict[Speaker, np.ndarray], beam: int) -> tuple[float, WerResult]:
    started = time.perf_counter()
    result = None
    for sp, samples in tracks.items():
        r = wer(iv.reference(sp), naive(model, samples, beam))
        result = r if result is None else result + r
    return time.perf_counter() - started, result


def run_naive_mixed(model, iv: Interview, tracks: dict[Speaker, np.ndarray], beam: int) -> tuple[float, WerResult]:
    started = time.perf_counter()
    mixed = iv.mixed
    if tracks is not iv.tracks:  # one room microphone: the voices plus one noise floor
        mixed = np.clip(mixed + pink_noise(mixed.size, -50.0, np.random.default_rng(7)), -1, 1).astype(np.float32)
    text = naive(model, mixed, beam)
    return time.perf_counter() - started, wer(iv.reference(), text)


def row(name: str, iv: Interview, wall: float, w: WerResult, note: str = "") -> str:
    return (f"| {name} | {wall:.1f} | {iv.duration_s / wall:.1f}× | {w.wer * 100:.1f}% "
            f"| {w.substitutions}/{w.deletions}/{w.insertions} of {w.reference_words} | {note} |")


def condition_rows(model, iv: Interview, tracks: dict[Speaker, np.ndarray], beam: int, lookahead: int,
                   condition: str = "") -> list[str]:
    plain = TrackOptions(decode=DecodeOptions(beam_size=beam))
    hinted = TrackOptions(decode=DecodeOptions(beam_size=beam, vocabulary=tuple(TERMS)))
    live_wall, live_wer, heard = run_ours(model, iv, tracks, plain, lookahead=1)
    ours_wall, ours_wer, _ = run_ours(model, iv, tracks, plain, lookahead=lookahead)
    vocab_wall, vocab_wer, _ = run_ours(model, iv, tracks, hinted, lookahead=lookahead)
    track_wall, track_wer = run_naive_tracks(model, iv, tracks, beam)
    mix_wall, mix_wer = run_naive_mixed(model, iv, tracks, beam)
    emit("transcribe", f"WER ours (batched) vs naive per track, {condition} tracks, {iv.duration_s / 60:.1f} min",
         ours_wer.wer * 100,
         track_wer.wer * 100, target="≤ 0.5×", met=ours_wer.wer <= 0.5 * track_wer.wer, unit="%")
    emit("transcribe", f"speed ours (batched) vs naive per track, {condition} tracks", iv.duration_s / ours_wall, iv.duration_s / track_wall,
         target="≥ 20× RT", met=iv.duration_s / ours_wall >= 20, unit="× RT")

    def vs(w: WerResult, wall: float) -> str:
        return f"WER ×{w.wer / max(track_wer.wer, 1e-9):.2f} of naive per track, speed ×{track_wall / wall:.1f}"

    return [
        f"Speech the VAD let through: {heard:.0f} s of {len(tracks) * iv.duration_s:.0f} s of track audio.",
        "",
        "| pipeline | wall s | × realtime | WER | sub/del/ins | vs naive per track |",
        "|---|---|---|---|---|---|",
        row("ours, live: chunk by chunk as it arrives", iv, live_wall, live_wer, vs(live_wer, live_wall)),
        row(f"ours, batched: {lookahead} chunks per model batch", iv, ours_wall, ours_wer, vs(ours_wer, ours_wall)),
        row("ours, batched + vocabulary hints", iv, vocab_wall, vocab_wer, vs(vocab_wer, vocab_wall)),
        row("naive faster-whisper, each full track", iv, track_wall, track_wer, "baseline"),
        row("naive faster-whisper, mixed track", iv, mix_wall, mix_wer, f"{vs(mix_wer, mix_wall)}; no speakers"),
    ]


def natural_section(model, beam: int, lookahead: int, larger: Path | None = None) -> list[str]:
    from bench.transcribe.natural_bench import larger_model_table, natural_table

    load_before = os.getloadavg()[0]
    lines = ["### Natural voices, microphone tracks (neural + HTS voice, noise floor, leak)", ""]
    lines += natural_table(model, beam, lookahead, NATURAL_CACHE)
    if larger is not None and (larger / "model.bin").is_file():
        lines += ["", *larger_model_table(str(larger), beam, lookahead, NATURAL_CACHE)]
    elif larger is not None:
        lines += ["", f"(No larger model at `{larger}`: `make model-base` fetches one; its rows are left out.)"]
    return lines + ["", f"Machine load average (1 min) before/after these rows: {load_before:.1f} / "
                        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores."]


def transcription_table(minutes: float, threads: int, replicas: int, beam: int, lookahead: int,
                        larger: Path | None = None) -> list[str]:
    load_before = os.getloadavg()[0]
    model = load_model(ModelSpec(cpu_threads=threads, replicas=replicas))
    with tempfile.TemporaryDirectory(prefix="bench-transcribe-") as tmp:
        iv = build_interview(minutes * 60, Path(tmp))
    speech = {sp: sum(len(s.split()) for _, s in refs) for sp, refs in iv.refs.items()}
    lines = [
        f"Interview: {iv.duration_s / 60:.1f} min, 2 speakers ({speech[INTERVIEWER]} + {speech[CANDIDATE]} "
        f"reference words), espeak-ng voices {VOICES[INTERVIEWER]} / {VOICES[CANDIDATE]}; model tiny.en "
        f"int8, {replicas} replica(s) × {threads} CPU thread(s), beam {beam} for every row, word timestamps on. ×RT = interview "
        f"duration / wall time (both tracks, one after the other).",
        "",
        "### Microphone tracks (noise floor −50 dBFS, the other voice leaking in at −30 dB)",
        "",
    ]
    lines += condition_rows(model, iv, room_tracks(iv), beam, lookahead, "microphone")
    lines += ["", "### Clean tracks (digital silence between turns, no leak)", ""]
    lines += condition_rows(model, iv, iv.tracks, beam, lookahead, "clean")
    lines += [""] + natural_section(model, beam, lookahead, larger)
    lines += ["", f"Machine load average (1 min) before/after: {load_before:.1f} / {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores (other work on the machine slows every row alike)."]
    return lines


NOTES = """
## How to read this

- Every row uses the same tiny.en model object, the same CPU threads, the same beam and the
  same audio, in one run, one after the other; compare rows with each other, not with other
  runs (this machine is shared: see the load average line).
- Two recording conditions of the same interview. *Microphone tracks* are what a call gives
  us: every track has a noise floor (pink noise, −50 dBFS) and the other speaker leaks in
  30 dB down, 20 ms late (residual echo, or two people in one room). *Clean tracks* have
  digital silence between turns and no leak: the easy case, shown for honesty.
- "ours" is the production code path (`transcribe.pipeline`, as the worker runs it): 30-s
  chunks, webrtcvad gating, tails carried across chunk cuts, finished speech packed into
  ≤ 28-s windows, segments split at VAD pauses, quality flags and the cross-speaker merge
  (suppressed segments are not counted as text). *live* decodes each chunk's windows as the
  chunk arrives (what runs during the interview, where it only has to keep up with real
  time); *batched* plans 16 chunks and decodes their windows in one batch (what a worker
  that is behind, `finalize_transcript` and `recorder transcribe` do). Time includes
  VAD, mapping and flags.
- The naive rows are `model.transcribe(whole_track)` with faster-whisper's defaults (no VAD,
  conditioning on previous text, temperature fallback) and word timestamps on, like ours.
- WER: `transcribe.wer` (normalized English: case, punctuation, numbers, hyphens), summed
  over both speakers for the per-track rows, against the time-ordered script for the mixed row.
- Where the time goes (cProfile, batched, clean): encoder ≈ 40% (one 30-s window per input,
  however little speech it holds: hence packing), decoder ≈ 45%, word alignment ≈ 10%, VAD
  < 2%. On CPU the decoder is memory-bound, so decoding 4–8 windows together costs little
  more than one: batching is most of the gain over the naive run.
- Vocabulary hints go into the decoder prompt only ("Glossary: …"); also passing them as
  `hotwords` doubled the prompt and was slower and no more accurate (9.7% vs 10.3%).
- *Natural voices*: the espeak interview is easy to time but sounds like no one; piper's
  neural voice and festival's HTS voice are much closer to people. Their rows also show
  the leak gate (the other tracks' levels, cut into chunks at other times than this
  track's, decide which frames only carry someone else: those never reach the VAD or the
  model) and timing against the placed sentences: first-word error per sentence, words
  longer than 2 s, segments with words on both sides of another speaker's turn.
- The accuracy options (`DecodeOptions.previous_text`, `second_pass`) are off by default:
  on these rows they did not pay for their time (see the table).
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2-minute interview, 100k search rows")
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--threads", type=int, default=ModelSpec().cpu_threads, help="CPU threads per replica")
    ap.add_argument("--replicas", type=int, default=ModelSpec().replicas, help="model replicas (CTranslate2 workers)")
    ap.add_argument("--beam", type=int, default=DecodeOptions().beam_size)
    ap.add_argument("--lookahead", type=int, default=16, help="chunks per model batch (RECORDER_TRANSCRIBE_LOOKAHEAD)")
    ap.add_argument("--skip-search", action="store_true")
    ap.add_argument("--skip-transcribe", action="store_true")
    ap.add_argument("--natural-only", action="store_true", help="only the natural-voice microphone rows (printed)")
    ap.add_argument("--larger-model", type=Path, default=LARGER_MODEL,
                    help="a larger CTranslate2 model dir for the natural-voice rows (default: `make model-base`'s)")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = ap.parse_args()
    minutes = args.minutes or (2.0 if args.quick else 10.5)
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    if args.natural_only:
        model = load_model(ModelSpec(cpu_threads=args.threads, replicas=args.replicas))
        print("\n".join(natural_section(model, args.beam, args.lookahead, args.larger_model)))
        return
    command = "python -m bench.transcribe" + (" --quick" if args.quick else "")
    out = ["# bench/transcribe", "", f"`{command}`", "", "## Transcription", ""]
    if not args.skip_transcribe:
        out += transcription_table(minutes, args.threads, args.replicas, args.beam, args.lookahead, args.larger_model)
        print("\n".join(out), flush=True)
    if not args.skip_search:
        from bench.transcribe.search_bench import search_table

        out += ["", "## Search", ""] + search_table(rows)
    text = "\n".join(out) + "\n" + NOTES
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
