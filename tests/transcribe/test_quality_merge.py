"""Quality flags and the multi-speaker merge (pure)."""
from __future__ import annotations

from dataclasses import replace

from transcribe.merge import merge_segments
from transcribe.quality import QualityOptions, repetition_loop, segment_flags, similarity
from transcribe.types import Segment, Speaker

ALICE = Speaker("p1", "Alice", "interviewer", "trk-a")
BOB = Speaker("p2", "Bob", "candidate", "trk-b")


def seg(sp: Speaker, start: int, end: int, text: str, **kw) -> Segment:
    base = dict(avg_logprob=-0.3, no_speech_prob=0.1, level_db=-20.0, voiced_ratio=0.9)
    base.update(kw)
    return Segment(sp, start, end, text, **base)


def test_repetition_loops() -> None:
    assert repetition_loop("thank you thank you thank you")
    assert repetition_loop("so so so so so")
    assert not repetition_loop("no no no, that is not it")
    assert not repetition_loop("we tested it and we tested it again")


def test_segment_flags() -> None:
    assert segment_flags(seg(BOB, 0, 1000, "Fine.")) == ()
    assert "text_in_silence" in segment_flags(seg(BOB, 0, 1000, "Thank you.", level_db=-70.0))
    assert "text_in_silence" in segment_flags(seg(BOB, 0, 1000, "Thank you.", voiced_ratio=0.0))
    assert segment_flags(seg(BOB, 0, 1000, "Hmm.", avg_logprob=-1.4)) == ("low_logprob",)
    assert segment_flags(seg(BOB, 0, 1000, "Hmm.", no_speech_prob=0.7)) == ("high_no_speech_prob",)
    assert "no_speech" in segment_flags(seg(BOB, 0, 1000, "Hmm.", no_speech_prob=0.7, avg_logprob=-1.2))
    assert "no_speech" in segment_flags(seg(BOB, 0, 1000, "Hmm.", no_speech_prob=0.9))
    assert "repetition_loop" in segment_flags(seg(BOB, 0, 1000, "x", compression_ratio=3.0))
    squeezed = seg(BOB, 3741, 4021, "will be available.")  # 15 letters in 0.28 s
    assert segment_flags(squeezed) == ("implausible_rate",) and squeezed.with_flags("implausible_rate").suppressed
    assert segment_flags(seg(BOB, 0, 2500, "Tell me about your last project.")) == ()


def test_suppressed_flags_hide_segments() -> None:
    s = seg(BOB, 0, 1000, "Hi")
    assert not s.with_flags("low_logprob").suppressed
    assert s.with_flags("text_in_silence").suppressed and s.with_flags("crosstalk_duplicate").suppressed
    assert s.with_flags("a", "b", "a").flags == ("a", "b")


def test_merge_orders_all_speakers_by_time() -> None:
    out = merge_segments([seg(BOB, 5000, 6000, "second"), seg(ALICE, 1000, 2000, "first"),
                          seg(ALICE, 7000, 8000, "third")])
    assert [s.text for s in out] == ["first", "second", "third"]
    assert [s.speaker.display_name for s in out] == ["Alice", "Bob", "Alice"]


def test_crosstalk_keeps_the_louder_microphone() -> None:
    loud = seg(ALICE, 1000, 4000, "Tell me about your last project.", level_db=-20.0)
    bleed = seg(BOB, 1100, 3900, "about your last project", level_db=-38.0)
    other = seg(BOB, 2000, 3000, "Sure, happy to.", level_db=-22.0)  # overlapping but different words
    out = {s.text: s for s in merge_segments([bleed, loud, other])}
    assert out["about your last project"].flags == ("crosstalk_duplicate",)
    assert out["about your last project"].suppressed
    assert out["Tell me about your last project."].flags == () and out["Sure, happy to."].flags == ()


def test_a_faint_leak_is_hidden_whatever_the_model_made_of_it() -> None:
    answer = seg(BOB, 7000, 11000, "We wrote every migration twice and tested it.", level_db=-21.0)
    leak = seg(ALICE, 7500, 10500, "on the top of your head.", level_db=-46.0)  # 25 dB down, other words
    nod = seg(ALICE, 8000, 8600, "Right.", level_db=-24.0)  # a real backchannel over the answer
    quiet = seg(ALICE, 9000, 9800, "I see.", level_db=-35.0)  # softly spoken, but 14 dB down only
    out = {s.text: s for s in merge_segments([answer, leak, nod, quiet])}
    assert out["on the top of your head."].flags == ("crosstalk_duplicate",)
    assert all(out[t].flags == () for t in ("Right.", "I see.", answer.text))


def test_same_words_at_different_times_are_not_crosstalk() -> None:
    a = seg(ALICE, 1000, 2000, "yes exactly", level_db=-20.0)
    b = seg(BOB, 5000, 6000, "yes exactly", level_db=-30.0)
    assert all(s.flags == () for s in merge_segments([a, b]))


def test_repeated_segments_are_a_loop() -> None:
    segs = [seg(BOB, i * 1000, i * 1000 + 900, "Thank you for watching.") for i in range(4)]
    out = merge_segments(segs + [seg(ALICE, 500, 900, "Thank you for watching.", level_db=-60)])
    flagged = [s for s in out if s.speaker == BOB and "repetition_loop" in s.flags]
    assert len(flagged) == 2


def test_similarity_uses_normalized_words() -> None:
    assert similarity("Twenty-one clusters!", "21 clusters") == 1.0
    assert similarity("", "x") == 0.0
    assert replace(seg(BOB, 0, 1, "a"), text="b").text == "b"
    assert QualityOptions().crosstalk_similarity == 0.6


def test_compression_ratio_of_a_segments_own_text() -> None:
    from transcribe.quality import compression_ratio

    prose = "We describe the infrastructure with Terraform and ship the services with rolling updates."
    loop = "I am going to the store. " * 12
    assert compression_ratio(prose) < 1.5 < 2.4 < compression_ratio(loop)
    assert compression_ratio("") == 1.0
    flags = segment_flags(seg(ALICE, 0, 20_000, loop, compression_ratio=compression_ratio(loop)))
    assert "repetition_loop" in flags
