"""The real tiny.en on espeak-ng speech placed at known times, through the live path
(10-second chunks, VAD gating, carried tails, merge): words, speakers, times, silence."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.media import speech_track
from tests.transcribe.conftest import decode16k, word_by_word, write_wav
from transcribe.chunking import CarryOptions
from transcribe.merge import merge_segments
from transcribe.model import DecodeOptions
from transcribe.normalize import words
from transcribe.pipeline import TrackOptions, split_samples, transcribe_track
from transcribe.quality import similarity
from transcribe.types import Segment, Speaker
from transcribe.wer import wer

pytestmark = pytest.mark.slow

TOTAL_S = 30.0
ALICE = Speaker("p-alice", "Alice", "interviewer", "trk-alice")
BOB = Speaker("p-bob", "Bob", "candidate", "trk-bob")
SILENT = Speaker("p-silent", "Silent", "observer", "trk-silent")
NOISY = Speaker("p-noisy", "Noisy", "observer", "trk-noisy")
SCRIPT = {
    ALICE: [(0.8, "Thanks for joining us today. Can you tell me about your last project?"),
            (9.0, "How did you handle database migrations in production?"),  # crosses a chunk cut
            (16.0, "That sounds great. What would you do differently next time?"),  # overlaps Bob
            (26.0, "Thank you, that is all from me.")],
    BOB: [(5.5, "Sure. I built a billing service with three engineers."),
          (12.5, "We wrote every migration twice and tested it on a copy of the data."),
          (21.5, "I would automate the rollback plan much earlier.")],
}
VOICES = {ALICE: "en-us", BOB: "en-us+m3"}
# Word limits with margin for CPU differences (issue #10): tiny.en int8 meets near-ties between
# two tokens, and which side wins depends on the last bits of the audio and of the kernels
# (FFmpeg's and numpy's SIMD code differ by CPU); one flip cost a 15-word line 5 words
# ("Welcome to the interview" -> "Well come turn it into"). Measured here over 6 CPU/audio
# variants x 7 inaudible perturbations: Alice 1 error of 38 words, Bob 4 of 31, word counts
# exactly the script's; the mic-leak lines 0-1 of 13-14; the hinted term 0 of 9, unhinted 3.
# The limits leave room for about one such flip per speaker (and one over the interview); a
# line dropped or decoded twice still fails (word count, and the timeline tests below), as
# does no text or the other speaker's. Tight WER limits: bench/transcribe/gate.py (1,534 words).
MAX_WER_SPEAKER, MAX_WER_ALL, MAX_WER_LINE = 0.30, 0.15, 0.34
WORD_COUNT = (0.85, 1.15)  # a speaker's words / their script's words


@dataclass
class Run:
    placed: dict[Speaker, list[tuple[float, float, str]]]
    segments: list[Segment]

    def visible(self, speaker: Speaker) -> list[Segment]:
        return [s for s in self.segments if s.speaker == speaker and not s.suppressed]


LIVE = TrackOptions(carry=CarryOptions(min_batch_s=0.0))  # every 10-s chunk transcribed as it comes


def live(model, speaker: Speaker, samples: np.ndarray, opts: TrackOptions = LIVE) -> list[Segment]:
    segments, _ = transcribe_track(model, speaker, split_samples(samples, 0, 10.0), opts)
    return segments


@pytest.fixture(scope="module")
def interview(whisper_model, media_dir: Path) -> Run:
    placed, segments = {}, []
    for sp, lines in SCRIPT.items():
        path, spans = speech_track(media_dir / f"{sp.track_id}.webm", [(t, s, VOICES[sp]) for t, s in lines],
                                   TOTAL_S, "webm")
        placed[sp] = spans
        segments += live(whisper_model, sp, decode16k(path))
    silent, _ = speech_track(media_dir / "silent.webm", [], TOTAL_S, "webm")
    segments += live(whisper_model, SILENT, decode16k(silent))
    noise = (np.random.default_rng(5).standard_normal(int(TOTAL_S * 16000)) * 0.08).astype(np.float32)
    segments += live(whisper_model, NOISY, decode16k(write_wav(media_dir / "noise.wav", noise)))
    return Run(placed, merge_segments(segments))


def test_words_come_out_right(interview: Run) -> None:
    total = None
    for sp in (ALICE, BOB):
        ref = " ".join(text for _, _, text in interview.placed[sp])
        got = " ".join(s.text for s in interview.visible(sp))
        result = wer(ref, got)
        assert result.wer <= MAX_WER_SPEAKER, (sp.display_name, result, got)
        assert WORD_COUNT[0] <= len(words(got)) / len(words(ref)) <= WORD_COUNT[1], (sp.display_name, got)
        total = result if total is None else total + result
    assert total.wer <= MAX_WER_ALL, total


def test_every_segment_has_the_right_speaker(interview: Run) -> None:
    everyone = [(sp, start, end, text) for sp, spans in interview.placed.items() for start, end, text in spans]
    for seg in (s for s in interview.segments if not s.suppressed):
        near = [(sp, text) for sp, start, end, text in everyone
                if start - 1.0 <= seg.start_ms / 1000 <= end + 1.0 or start - 1.0 <= seg.end_ms / 1000 <= end + 1.0]
        best_speaker, _ = max(near, key=lambda p: similarity(seg.text, p[1]))
        assert best_speaker == seg.speaker, (seg.speaker.display_name, seg.text, near)


def test_merged_transcript_is_time_ordered_with_both_speakers(interview: Run) -> None:
    starts = [s.start_ms for s in interview.segments]
    assert starts == sorted(starts)
    names = [s.speaker.display_name for s in interview.segments if not s.suppressed]
    assert names[:3] == ["Alice", "Bob", "Alice"] and {"Alice", "Bob"} == set(names)


def test_no_text_on_the_silent_or_noisy_track(interview: Run) -> None:
    assert [s for s in interview.segments if s.speaker == SILENT] == []
    assert interview.visible(NOISY) == [], [(s.text, s.flags) for s in interview.segments if s.speaker == NOISY]


def test_no_text_in_a_speakers_silent_spans(interview: Run) -> None:
    for sp in (ALICE, BOB):
        spans = interview.placed[sp]
        for seg in interview.visible(sp):
            for w in seg.words:
                mid = (w.start_ms + w.end_ms) / 2000
                assert any(start - 0.4 <= mid <= end + 0.4 for start, end, _ in spans), (sp, w, spans)


def test_utterance_boundaries_are_on_the_timeline(interview: Run) -> None:
    for sp in (ALICE, BOB):
        for start, end, text in interview.placed[sp]:
            first = [s for s in interview.visible(sp) if abs(s.start_ms / 1000 - start) < 0.3]
            assert first, (sp.display_name, start, text, [(s.start_ms, s.text) for s in interview.visible(sp)])


def test_word_times_are_within_300ms_of_where_words_were_placed(whisper_model, media_dir: Path) -> None:
    # (A word the model drops smears its neighbours' times: "before the holidays" heard as
    # "before holidays" puts "holidays" 0.31 s early. Timing is judged on recognised words.)
    text = "our team measured latency and throughput for each database cluster last week"
    samples, placed = word_by_word(media_dir / "words.wav", text.split(), 1.3, 0.12, 11.0)
    segs = live(whisper_model, ALICE, samples)
    got = [w for s in segs for w in s.words]
    ref_words = [words(w)[0] for w, _, _ in placed]
    hyp_words = [(words(w.text) or [""])[0] for w in got]
    blocks = difflib.SequenceMatcher(a=ref_words, b=hyp_words, autojunk=False).get_matching_blocks()
    pairs = [(placed[b.a + k], got[b.b + k]) for b in blocks for k in range(b.size)]
    assert len(pairs) >= 0.8 * len(placed)
    for (word, start, end), w in pairs:
        assert abs(w.start_ms / 1000 - start) <= 0.3, (word, start, w)
        assert abs(w.end_ms / 1000 - end) <= 0.3, (word, end, w)


def test_domain_term_needs_the_vocabulary_hint(whisper_model, media_dir: Path) -> None:
    path, _ = speech_track(media_dir / "term.webm", [(0.5, "In my last job I used Kubernetes every day.")], 5.0)
    samples = decode16k(path)
    plain = " ".join(s.text for s in live(whisper_model, BOB, samples))
    hints = TrackOptions(carry=LIVE.carry, decode=DecodeOptions(vocabulary=("Kubernetes",)))
    hinted = " ".join(s.text for s in live(whisper_model, BOB, samples, hints))
    assert "kubernetes" not in plain.lower(), plain
    assert "kubernetes" in hinted.lower(), hinted
    said = "In my last job I used Kubernetes every day."
    assert wer(said, hinted).wer < wer(said, plain).wer, (plain, hinted)  # the hint helps, not just adds a word
    assert wer(said, hinted).wer <= MAX_WER_LINE, hinted


def test_the_other_voice_leaking_into_a_microphone_is_not_transcribed_as_this_speaker(
        whisper_model, media_dir: Path) -> None:
    """A real call: Alice's mic hears Bob 30 dB down (residual echo) over a -50 dBFS noise
    floor. Her visible transcript holds only her words; Bob's are his alone."""
    alice_path, alice_spans = speech_track(media_dir / "mic-alice.wav", [(0.8, SCRIPT[ALICE][0][1])], 20.0,
                                           "wav")
    bob_path, bob_spans = speech_track(media_dir / "mic-bob.wav", [(7.0, SCRIPT[BOB][1][1], VOICES[BOB])], 20.0,
                                       "wav")
    alice, bob = decode16k(alice_path), decode16k(bob_path)
    rng = np.random.default_rng(11)
    leak = np.concatenate([np.zeros(320, np.float32), bob[:-320]]) * 10 ** (-30 / 20)
    mic = alice + leak[:alice.size] + (rng.standard_normal(alice.size) * 10 ** (-50 / 20)).astype(np.float32)
    merged = merge_segments(live(whisper_model, ALICE, mic) + live(whisper_model, BOB, bob))
    mine = " ".join(s.text for s in merged if s.speaker == ALICE and not s.suppressed)
    theirs = " ".join(s.text for s in merged if s.speaker == BOB and not s.suppressed)
    assert wer(alice_spans[0][2], mine).wer <= MAX_WER_LINE, mine  # Bob's 14 words in it: >= 1.0
    assert wer(bob_spans[0][2], theirs).wer <= MAX_WER_LINE, theirs
    hidden = [s for s in merged if s.speaker == ALICE and s.suppressed]
    assert all(s.start_ms / 1000 >= bob_spans[0][0] - 0.5 for s in hidden), hidden  # only the leak is hidden
