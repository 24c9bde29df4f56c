"""Transcript exports: JSON round trip, WebVTT voice tags, SRT, plain text (pure)."""
from __future__ import annotations

import json

import pytest

from transcribe.export import from_dict, render, to_dict, to_srt, to_text, to_vtt
from transcribe.types import Segment, Speaker, Transcript, Word

ALICE = Speaker("p1", "Alice <Lead>", "interviewer", "trk-a")
BOB = Speaker("p2", "Bob", "candidate", "trk-b")


def transcript() -> Transcript:
    segs = (
        Segment(ALICE, 1000, 3500, "Welcome & thanks.", (Word("Welcome", 1000, 1600, 0.9),
                                                          Word("&", 1700, 1800, 0.5),
                                                          Word("thanks.", 1900, 3500, 0.8))),
        Segment(BOB, 3723004, 3725000, "Glad to be here -> really.", flags=("low_logprob",)),
        Segment(BOB, 3726000, 3727000, "Thank you.", flags=("text_in_silence",)),
    )
    return Transcript("rec_1", segs, version=2, model="tiny.en", params={"beam_size": 5})


def test_vtt_has_voice_tags_escaping_and_hides_suppressed() -> None:
    vtt = to_vtt(transcript())
    assert vtt.startswith("WEBVTT\n\n1\n00:00:01.000 --> 00:00:03.500\n<v Alice &lt;Lead&gt;>Welcome &amp; thanks.\n")
    assert "2\n01:02:03.004 --> 01:02:05.000\n<v Bob>Glad to be here -&gt; really.\n" in vtt
    assert "Thank you" not in vtt and "\n3\n" not in vtt


def test_srt_uses_commas_and_speaker_prefix() -> None:
    srt = to_srt(transcript())
    assert srt.startswith("1\n00:00:01,000 --> 00:00:03,500\nAlice <Lead>: Welcome & thanks.\n\n2\n")
    assert "01:02:03,004 --> 01:02:05,000\nBob: Glad to be here -> really." in srt
    assert "Thank you" not in srt


def test_text_lists_speaker_role_and_time() -> None:
    assert to_text(transcript()).splitlines() == [
        "[00:00:01] Alice <Lead> (interviewer): Welcome & thanks.",
        "[01:02:03] Bob (candidate): Glad to be here -> really.",
    ]


def test_json_keeps_everything_and_round_trips() -> None:
    t = transcript()
    data = json.loads(render(t, "json"))
    assert data["version"] == 2 and data["model"] == "tiny.en"
    assert [s["speaker"]["participant_id"] for s in data["segments"]] == ["p1", "p2", "p2"]
    assert data["segments"][0]["words"][0] == {"word": "Welcome", "start_ms": 1000, "end_ms": 1600,
                                                "probability": 0.9}
    assert data["segments"][2]["suppressed"] is True and data["segments"][2]["flags"] == ["text_in_silence"]
    assert data["segments"][1]["start"] == 3723.004
    assert from_dict(to_dict(t)) == t


def test_empty_transcript_and_unknown_format() -> None:
    empty = Transcript("rec_2", ())
    assert to_vtt(empty) == "WEBVTT\n" and to_srt(empty) == "" and to_text(empty) == ""
    with pytest.raises(ValueError):
        render(empty, "docx")
