"""Pure timeline math: chunk placement, timestamp conversion, window audio/video bounds."""
from fractions import Fraction

import pytest

from compositor.timing import ChunkTiming, audio_bounds, frame_ticks, ms_scale, ms_to_pts, place_chunks, pts_to_ms


def test_chunks_are_placed_at_their_real_start_not_after_previous_duration():
    # The second chunk's media says 0..2950 (a short timeslice) but it started at 3000.
    placed = place_chunks([ChunkTiming(0, 0, 3100), ChunkTiming(3100, 0, 2950), ChunkTiming(6050, 0, 3000)])
    assert [p.start_ms for p in placed] == [0, 3100, 6050]
    assert [p.offset_ms for p in placed] == [0, 3100, 6050]
    assert all(p.gap_before_ms == 0 and p.shifted_ms == 0 for p in placed)


def test_media_clock_that_does_not_start_at_zero_is_offset_to_the_real_start():
    placed = place_chunks([ChunkTiming(5000, 120_000, 150_000)])
    assert placed[0].offset_ms == 5000 - 120_000
    assert (placed[0].start_ms, placed[0].end_ms) == (5000, 35_000)


def test_gap_stays_a_hole_and_is_reported():
    placed = place_chunks([ChunkTiming(0, 0, 3000), ChunkTiming(5000, 0, 3000)])
    assert placed[1].start_ms == 5000
    assert placed[1].gap_before_ms == 2000


def test_tiny_gap_below_tolerance_is_not_reported():
    placed = place_chunks([ChunkTiming(0, 0, 3000), ChunkTiming(3020, 0, 3000)], gap_tolerance_ms=40)
    assert placed[1].gap_before_ms == 0
    assert placed[1].start_ms == 3020


def test_overlap_pushes_later_media_later_never_earlier():
    placed = place_chunks([ChunkTiming(0, 0, 3100), ChunkTiming(3000, 0, 3000)], overlap_tolerance_ms=40)
    assert placed[1].start_ms == 3100
    assert placed[1].shifted_ms == 100
    assert placed[1].start_ms >= 3000  # never earlier than its real start


def test_codec_padding_overlap_does_not_accumulate_into_drift():
    # Each chunk's audio runs 7 ms past its real 3-s length (Opus padding).
    chunks = [ChunkTiming(i * 3000, 0, 3007) for i in range(100)]
    placed = place_chunks(chunks, overlap_tolerance_ms=40)
    assert [p.start_ms for p in placed] == [i * 3000 for i in range(100)]
    assert all(p.shifted_ms == 0 and p.gap_before_ms == 0 for p in placed)


@pytest.mark.parametrize("tb", [Fraction(1, 1000), Fraction(1, 48000), Fraction(1, 15360), Fraction(1, 90000)])
def test_ms_pts_round_trip(tb):
    for ms in (0, 1, 21.333, 30000, 1_799_999):
        assert abs(pts_to_ms(ms_to_pts(ms, tb), tb) - ms) <= float(tb * 1000) / 2 + 1e-9


def test_audio_bounds_are_whole_frames_and_tile_the_timeline():
    rate, window = 48000, 30000
    bounds = [audio_bounds(i, window, rate) for i in range(100)]
    assert bounds[0][0] == 0
    for (a0, a1), (b0, _) in zip(bounds, bounds[1:]):
        assert a1 == b0  # no sample lost or repeated between windows
        assert a0 % 1024 == 0 and (a1 - a0) % 1024 == 0
    for i, (a0, _) in enumerate(bounds):
        video_start = i * window * rate // 1000
        assert 0 <= a0 - video_start < 1024  # audio starts less than one frame after video


def test_frame_ticks_cover_the_window_exactly():
    assert frame_ticks(0, 30000, 30) == range(0, 900)
    assert frame_ticks(30000, 60000, 30) == range(900, 1800)
    assert len(frame_ticks(60000, 61000, 30)) == 30
    # Windows not on a frame boundary still tile without overlap.
    assert frame_ticks(0, 1010, 30).stop == frame_ticks(1010, 2000, 30).start


@pytest.mark.parametrize("tb", [Fraction(1, 1000), Fraction(1, 48000), Fraction(1, 15360), Fraction(1, 20000),
                                Fraction(1001, 30000)])
def test_ms_scale_is_exactly_pts_to_ms(tb):
    num, den = ms_scale(tb)
    for pts in (-312, 0, 1, 7, 1023, 48_000, 123_456_789, 2**40 + 3):
        assert pts * num / den == pts_to_ms(pts, tb)
