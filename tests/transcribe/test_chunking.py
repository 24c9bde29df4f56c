"""Carry/split/time-map math of live per-track transcription (pure)."""
from __future__ import annotations

import numpy as np
import pytest

from transcribe import chunking
from transcribe.chunking import Block, CarryOptions, join, layout, place, split_ready
from transcribe.vad import Region

SR = chunking.SAMPLE_RATE


def tone(seconds: float, value: float = 0.1) -> np.ndarray:
    return np.full(int(seconds * SR), value, np.float32)


def test_block_maps_buffer_time_through_anchors() -> None:
    b = Block(tone(4), ((0.0, 1000.0), (2.0, 5000.0)))
    assert b.timeline_ms(0.5) == 1500 and b.timeline_ms(2.5) == 5500
    assert b.start_ms == 1000 and b.end_ms == 7000


def test_tail_keeps_the_timeline() -> None:
    b = Block(tone(4), ((0.0, 1000.0), (2.0, 5000.0)))
    t = b.tail(1.5)
    assert t.duration_s == pytest.approx(2.5)
    assert t.timeline_ms(0.0) == pytest.approx(2500) and t.timeline_ms(1.0) == pytest.approx(5500)


def test_join_contiguous_chunks_concatenates() -> None:
    carry, new = place(tone(1), 29_000), place(tone(2), 30_000)
    flushed, work = join(carry, new)
    assert flushed == [] and work.duration_s == pytest.approx(3)
    assert work.timeline_ms(2.0) == pytest.approx(31_000)


def test_join_fills_a_small_gap_with_silence() -> None:
    flushed, work = join(place(tone(1), 0), place(tone(1), 1_400))
    assert flushed == [] and work.duration_s == pytest.approx(2.4)
    assert float(np.abs(work.samples[int(1.1 * SR):int(1.3 * SR)]).max()) == 0.0
    assert work.timeline_ms(1.4) == pytest.approx(1_400)


def test_join_flushes_the_carry_across_a_large_gap() -> None:
    carry = place(tone(1), 0)
    flushed, work = join(carry, place(tone(1), 10_000))
    assert flushed == [carry] and work.start_ms == 10_000


def test_join_with_overlap_keeps_the_new_chunk_on_its_real_start() -> None:
    flushed, work = join(place(tone(1), 0), place(tone(1), 900))
    assert flushed == [] and work.timeline_ms(1.5) == pytest.approx(1_400)


NO_HOLD = CarryOptions(min_batch_s=0.0)


def test_split_ready_carries_the_open_region() -> None:
    found = [Region(1, 3, True), Region(5, 8, True), Region(9, 10, False)]
    ready, tail = split_ready(found, 10.0, final=False, opts=NO_HOLD)
    assert ready == found[:2] and tail == 9


def test_split_ready_without_open_region_keeps_a_little() -> None:
    ready, tail = split_ready([Region(1, 3, True)], 10.0, final=False, opts=CarryOptions(keep_s=0.3, min_batch_s=0))
    assert ready == [Region(1, 3, True)] and tail == pytest.approx(9.7)


def test_split_ready_final_takes_everything() -> None:
    ready, tail = split_ready([Region(1, 3, True), Region(9, 12, False)], 10.0, final=True)
    assert [(r.start_s, r.end_s) for r in ready] == [(1, 3), (9, 10)] and tail is None


def test_finished_speech_is_held_until_a_batch_is_ready() -> None:
    opts = CarryOptions(min_batch_s=20.0, max_hold_s=60.0)
    found = [Region(1, 6, True), Region(8, 14, True), Region(29, 30, False)]
    assert split_ready(found, 30.0, final=False, opts=opts) == ([], 1)  # 11 s ready: hold from 1 s
    found = [Region(1, 12, True), Region(13, 25, True), Region(29, 30, False)]
    assert split_ready(found, 30.0, final=False, opts=opts) == (found[:2], 29)  # 23 s: go
    found = [Region(1, 3, True), Region(70, 71, True)]
    ready, tail = split_ready(found, 75.0, final=False, opts=opts)  # held too long: go
    assert ready == found and tail == pytest.approx(74.7)


def test_speech_without_a_pause_is_cut_at_its_quietest_point() -> None:
    samples = tone(40)
    samples[int(22 * SR):int(22.06 * SR)] = 0.0  # a dip inside the search window
    block = place(samples, 0)
    out = chunking.cut_long_speech(block, [Region(0.0, 40.0, False, 0.1)], CarryOptions(max_carry_s=25, search_s=5))
    assert len(out) == 2 and out[0].closed and not out[1].closed
    assert out[0].end_s == pytest.approx(22.0, abs=0.031) and out[1].start_s == out[0].end_s
    short = [Region(0.0, 20.0, False)]
    assert chunking.cut_long_speech(block, short, CarryOptions(max_carry_s=25)) == short


def test_layout_maps_model_time_back_and_snaps_gaps() -> None:
    plan = layout([Region(1.0, 2.0, True, 1.2), Region(5.0, 6.0, True, 5.0)], gap_s=0.5)
    assert plan.duration_s == pytest.approx(2.5)
    assert plan.to_buffer(0.5) == pytest.approx(1.5)
    assert plan.to_buffer(0.1, "start") == pytest.approx(1.2)  # before the first voiced frame
    assert plan.to_buffer(1.6, "end") == pytest.approx(5.1)
    assert plan.to_buffer(1.2, "start") == pytest.approx(5.0)  # in the gap: next region
    assert plan.to_buffer(1.2, "end") == pytest.approx(2.0)  # in the gap: previous region's end


def test_assemble_puts_speech_at_model_times() -> None:
    samples = np.arange(10 * SR, dtype=np.float32) / (10 * SR)
    plan = layout([Region(1.0, 2.0), Region(5.0, 6.0)], gap_s=0.5)
    audio = chunking.assemble(samples, plan)
    assert audio.size == int(2.5 * SR)
    assert audio[0] == samples[SR] and audio[int(1.5 * SR)] == samples[5 * SR]
    assert float(np.abs(audio[int(1.1 * SR):int(1.4 * SR)]).max()) == 0.0


def test_first_word_of_a_region_snaps_back_to_the_voiced_onset() -> None:
    from transcribe.model import RawWord
    from transcribe.pipeline import snap_first_words

    plan = layout([Region(1.0, 3.0, True, 1.2), Region(5.0, 6.0, True, 5.2)], gap_s=0.5)
    late = [(RawWord("Thank", 0, 0, 1), 1.6, 1.8), (RawWord("you", 0, 0, 1), 1.8, 2.0)]
    second = [(RawWord("Fine", 0, 0, 1), 5.25, 5.6)]
    snapped = snap_first_words([late, second], plan, voiced=lambda a, b: 1.0)
    assert [b0 for _, b0, _ in snapped[0]] == [1.2, 1.8]  # only the region's first word moves
    assert snapped[1][0][1] == 5.25  # within the slack: unchanged
    unvoiced = snap_first_words([late], plan, voiced=lambda a, b: 0.0)
    assert unvoiced[0][0][1] == 1.6  # silence before it: the model was right


def test_a_model_segment_across_a_pause_is_split_there() -> None:
    from transcribe.model import RawSegment, RawWord
    from transcribe.pipeline import TrackOptions, split_segment

    plan = layout([Region(0.5, 4.0, True, 0.5), Region(7.0, 10.0, True, 7.0)], gap_s=0.3)
    words = [(RawWord(" Welcome.", 0, 0, 1), 0.5, 1.2), (RawWord(" Please", 0, 0, 1), 1.3, 2.0),
             (RawWord(" What", 0, 0, 1), 7.0, 7.3), (RawWord(" now?", 0, 0, 1), 7.3, 7.9)]
    raw = RawSegment(0, 5, " Welcome. Please What now?", (), -0.2, 0.1, 1.0)
    block = chunking.place(np.zeros(10 * SR, np.float32), 0)
    parts = split_segment(raw, words, plan, block, TrackOptions())
    assert [(text, len(ws)) for text, ws in parts] == [(" Welcome. Please", 2), (" What now?", 2)]
    assert split_segment(raw, words[:2], plan, block, TrackOptions()) == [(raw.text, words[:2])]


def test_regions_are_packed_in_order_into_model_windows() -> None:
    found = [Region(0, 10), Region(11, 21), Region(22, 30), Region(40, 45)]
    windows = chunking.pack(tone(50), found, max_s=28.0, gap_s=0.3)
    assert [[p[1] for p in w.pieces] for w in windows] == [[0, 11], [22, 40]]
    assert all(w.duration_s <= 28.0 for w in windows)
    assert windows[1].duration_s == pytest.approx(8 + 0.3 + 5)


def test_a_region_longer_than_a_window_is_cut_at_a_quiet_point() -> None:
    samples = tone(70)
    samples[int(26 * SR):int(26.03 * SR)] = 0.0  # the dip to cut at, inside the last 5 s of 28
    windows = chunking.pack(samples, [Region(0, 70, True, 0.2)], max_s=28.0)
    starts = [w.pieces[0][1] for w in windows]
    assert starts[1] == pytest.approx(26.0) and len(windows) == 3
    assert all(w.duration_s <= 28.0 for w in windows)
    assert sum(w.duration_s for w in windows) == pytest.approx(70.0)  # nothing lost or doubled


def test_full_windows_counts_regions_that_fill_windows() -> None:
    ten = [Region(i * 11, i * 11 + 10) for i in range(5)]  # five 10-s regions: 2 per 28-s window
    assert chunking.full_windows(ten, 28.0, 20.0, gap_s=0.3) == 4  # the 5th alone is only 10 s
    assert chunking.full_windows(ten, 28.0, 0.0, gap_s=0.3) == 5  # no minimum: everything goes
    assert chunking.full_windows(ten[:1], 28.0, 20.0) == 0
    assert chunking.full_windows([], 28.0, 20.0) == 0


def test_only_whole_windows_are_released_the_rest_is_carried() -> None:
    opts = CarryOptions(min_batch_s=20.0, max_hold_s=60.0, window_s=28.0)
    found = [Region(0, 10), Region(11, 21), Region(22, 30), Region(31.5, 32, False)]
    ready, tail = split_ready(found, 32.0, final=False, opts=opts)
    assert ready == found[:2] and tail == 22  # 8 s more would overfill the window: it waits
    found = [Region(0, 10), Region(11, 21), Region(22, 29), Region(29.5, 30, False)]
    ready, tail = split_ready(found, 30.0, final=False, opts=opts)
    assert ready == found[:3] and tail == 29.5  # 27.6 s: one nearly full window goes
