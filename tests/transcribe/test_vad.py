"""VAD smoothing (pure generators) and webrtcvad on real speech/silence/noise."""
from __future__ import annotations

import numpy as np

from transcribe import vad
from transcribe.vad import Frame, Region, VadOptions

OPTS = VadOptions(padding_ms=300, lead_ms=0, trail_ms=0, min_speech_ms=0, merge_gap_ms=0)


def flags(pattern: str, frame_ms: int = 30) -> list[tuple[Frame, bool]]:
    """'0011…' → frames 30 ms apart with the given verdicts."""
    return [(Frame(i * frame_ms / 1000, b"", -20.0), c == "1") for i, c in enumerate(pattern)]


def test_single_click_does_not_open_a_region() -> None:
    assert list(vad.regions(flags("0000010000000000"), OPTS)) == []


def test_speech_opens_and_a_pause_closes_it() -> None:
    found = list(vad.regions(flags("0" * 10 + "1" * 20 + "0" * 15), OPTS))
    assert len(found) == 1
    r = found[0]
    assert r.closed and abs(r.start_s - 0.30) < 1e-9 and abs(r.end_s - 0.90) < 1e-9
    assert r.onset_s == r.start_s


def test_short_breath_does_not_close_the_region() -> None:
    found = list(vad.regions(flags("1" * 15 + "000" + "1" * 15 + "0" * 12), OPTS))
    assert len(found) == 1 and found[0].closed


def test_speech_running_at_the_end_is_open() -> None:
    found = list(vad.regions(flags("0" * 5 + "1" * 20), OPTS))
    assert len(found) == 1 and not found[0].closed


def test_lead_and_trail_pad_the_region_but_onset_stays() -> None:
    opts = VadOptions(padding_ms=300, lead_ms=150, trail_ms=210, min_speech_ms=0, merge_gap_ms=0)
    (r,) = list(vad.regions(flags("0" * 10 + "1" * 20 + "0" * 15), opts))
    assert abs(r.start_s - 0.15) < 1e-9 and abs(r.onset_s - 0.30) < 1e-9 and abs(r.end_s - 1.11) < 1e-9


def test_tidy_merges_close_regions_drops_clicks_and_clips() -> None:
    opts = VadOptions(merge_gap_ms=400, min_speech_ms=150)
    found = [Region(0.0, 1.0, True, 0.1), Region(1.2, 2.0, True, 1.3), Region(3.0, 3.1, True),
             Region(5.0, 9.0, False)]
    assert vad.tidy(found, opts, end_s=8.0) == [Region(0.0, 2.0, True, 0.1), Region(5.0, 8.0, False)]


def test_frames_and_levels() -> None:
    samples = np.concatenate([np.zeros(480, np.float32), np.full(480, 0.5, np.float32), np.zeros(100, np.float32)])
    got = list(vad.frames(samples))
    assert [f.start_s for f in got] == [0.0, 0.03]  # the partial frame is left out
    assert got[0].level_db == -120.0 and abs(got[1].level_db - 20 * np.log10(0.5)) < 0.01
    assert len(got[1].pcm) == 960


def test_webrtcvad_finds_espeak_speech_where_it_was_placed(speech_clip) -> None:
    samples, placed = speech_clip
    found = vad.speech_regions(samples)
    assert len(found) == len(placed)
    for r, (start, end, _text) in zip(found, placed):
        assert abs(r.speech_start_s - start) < 0.1
        assert r.start_s <= start and r.end_s >= end - 0.05
        assert r.end_s - end < 0.5


def test_silence_has_no_speech_and_quiet_hiss_is_not_speech() -> None:
    rng = np.random.default_rng(7)
    assert vad.speech_regions(np.zeros(16000 * 3, np.float32)) == []
    hiss = (rng.standard_normal(16000 * 3) * 0.001).astype(np.float32)  # -60 dBFS
    assert vad.speech_regions(hiss) == []
