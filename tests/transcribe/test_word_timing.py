"""Word and segment timing (pure): stretched words re-timed from the audio, edges moved
onto the sound, segments cut at pauses and where someone else starts; captions cut to size."""
from __future__ import annotations

import numpy as np

from transcribe import timing
from transcribe.export import LINE_CHARS, MAX_CUE_MS, cues, to_srt, to_vtt
from transcribe.types import Segment, Speaker, Transcript, Word

SR = 16_000
ALICE = Speaker("p1", "Alice", "interviewer", "trk-a")


def sound(total_s: float, spans: list[tuple[float, float]], floor_db: float = -50.0) -> np.ndarray:
    """Noise floor with loud bursts (speech stand-ins) over `spans`."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(int(total_s * SR)).astype(np.float32) * 10 ** (floor_db / 20)
    for a, b in spans:
        x[int(a * SR):int(b * SR)] += rng.standard_normal(int(b * SR) - int(a * SR)).astype(np.float32) * 0.1
    return x


def test_a_word_stretched_over_a_silence_is_put_on_its_sound() -> None:
    words = [("Thanks", 0.7, 8.9), ("for", 9.0, 9.2), ("that", 9.2, 9.5)]
    fixed = timing.retime_long(words, lambda a, b: [(8.5, 8.95)], max_s=2.0)
    assert fixed[0] == ("Thanks", 8.5, 8.9)  # touches "for": keeps its end, starts where the sound does
    silent = timing.retime_long(words, lambda a, b: [], max_s=2.0)
    assert silent[0][2] == 8.9 and 8.9 - silent[0][1] == timing.typical_s("Thanks")
    last = timing.retime_long([("so", 1.0, 1.2), ("yes", 1.3, 6.0)], lambda a, b: [(1.3, 1.7), (4.0, 6.0)], 2.0)
    assert last[1] == ("yes", 1.3, 1.7)  # touches the word before: keeps its start
    capped = timing.retime_long([("and", 0.0, 9.0)], lambda a, b: [(0.5, 8.0)], 2.0)
    assert capped[0][2] - capped[0][1] <= 2.0


def test_word_edges_move_onto_the_sound_after_a_pause() -> None:
    x = sound(6.0, [(1.0, 1.6), (2.5, 3.0), (3.05, 3.6)])  # "use" · pause · "Nodes started"
    words = [("use.", 1.0, 2.6), ("Nodes", 2.6, 2.9), ("started", 2.9, 3.6)]  # "use." absorbed the pause
    out = timing.refine_words(words, x)
    assert abs(out[0][2] - 1.6) <= 0.03 and abs(out[1][1] - 2.5) <= 0.03, out
    late = timing.refine_words([("Most", 1.25, 1.4)], x)  # started late after silence
    assert abs(late[0][1] - 1.0) <= 0.03, late


def test_segments_split_at_pauses_and_where_someone_else_starts() -> None:
    words = [("a", 0.0, 0.3), ("b", 0.4, 0.7), ("c", 1.8, 2.0), ("d", 2.1, 2.4), ("e", 2.5, 2.8)]
    groups = timing.split_words(words, pause_s=1.0)
    assert [[w for w, _, _ in g] for g in groups] == [["a", "b"], ["c", "d", "e"]]
    groups = timing.split_words(words, pause_s=1.0, onsets_s=[2.4])  # Bob starts while "d" ends
    assert [[w for w, _, _ in g] for g in groups] == [["a", "b"], ["c", "d"], ["e"]]
    assert len(timing.split_words(words, pause_s=2.0)) == 1


def long_segment() -> Segment:
    text = ("We rolled the change back and added a memory check to the deploy pipeline so that it "
            "never happens again during a sale")
    toks = text.split()
    words = tuple(Word(t, 10_000 + 400 * i, 10_000 + 400 * i + 350) for i, t in enumerate(toks))
    return Segment(ALICE, words[0].start_ms, words[-1].end_ms, text, words)


def test_long_segments_become_several_readable_cues() -> None:
    seg = long_segment()
    out = cues(seg)
    assert len(out) >= 2
    assert all(c.end_ms - c.start_ms <= MAX_CUE_MS and len(c.lines) <= 2 for c in out)
    assert all(len(line) <= LINE_CHARS for c in out for line in c.lines)
    assert out[0].start_ms == seg.start_ms and out[-1].end_ms == seg.end_ms
    assert " ".join(" ".join(c.lines) for c in out) == seg.text  # no word lost or repeated
    assert all(a.end_ms <= b.start_ms for a, b in zip(out, out[1:]))
    vtt = to_vtt(Transcript("r", (seg,)))
    assert vtt.count("<v Alice>") == len(out)
    srt = to_srt(Transcript("r", (seg,)))
    assert all(len(line) <= LINE_CHARS for line in srt.splitlines())


def test_a_segment_without_word_times_is_cut_by_its_text() -> None:
    seg = Segment(ALICE, 0, 20_000, long_segment().text)
    out = cues(seg)
    assert len(out) >= 3 and out[0].start_ms == 0 and out[-1].end_ms == 20_000
    assert all(c.end_ms - c.start_ms <= MAX_CUE_MS for c in out)


def test_a_word_left_in_silence_rejoins_its_neighbour() -> None:
    x = sound(6.0, [(3.0, 3.8)])  # "Tell me about" is all said from 3.0 s
    out = timing.refine_words([("Tell", 0.5, 1.2), ("me", 3.1, 3.4), ("about", 3.4, 3.8)], x)
    assert abs(out[0][1] - 3.0) <= 0.03 and out[0][2] - out[0][1] >= timing.MIN_WORD_S, out
    kept = timing.refine_words([("Yes", 0.5, 0.9), ("fine", 3.1, 3.4)], sound(6.0, [(0.5, 0.9), (3.0, 3.4)]))
    assert abs(kept[0][1] - 0.5) <= 0.03  # a word with its own sound stays where it is
