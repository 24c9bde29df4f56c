"""Output size and frame rate from the sources (pure: plain values in, plain values out)."""
from __future__ import annotations

import pytest

from compositor.layout import fit, grid, speaker_tiles
from compositor.sizing import (FormatLimits, VideoFormat, canvas_size, canvas_width, choose_format, common_format,
                               frame_rate, gop_frames, output_fps)


def test_rungs_are_even_16_by_9():
    assert [canvas_width(h) for h in (360, 480, 540, 720, 1080)] == [640, 854, 960, 1280, 1920]


def test_two_small_cameras_fit_640x360_pixel_for_pixel():
    size = canvas_size("grid", [(320, 180), (320, 180)])
    assert size == (640, 360)
    tile = grid(2, *size)[0]
    assert (fit(320, 180, tile).w, fit(320, 180, tile).h) == (320, 180)  # shown unscaled


@pytest.mark.parametrize("sources, expected", [
    ([(640, 360), (640, 360)], (1280, 720)),  # 640×360 tiles need a 1280-wide grid
    ([(640, 360)], (640, 360)),  # one person fills the canvas
    ([(480, 270), (320, 180)], (960, 540)),  # the largest source decides
    ([(1280, 720), (1280, 720)], (1280, 720)),  # capped: larger sources are scaled down
    ([(320, 180)] * 4, (640, 360)),  # 2×2 grid of 320×180
    ([(640, 480), (640, 480)], (1280, 720)),  # 4:3, 480 tall: no grid up to 720p holds it unshrunk → the largest
])
def test_grid_canvas_is_the_smallest_rung_holding_every_source(sources, expected):
    assert canvas_size("grid", sources) == expected


def test_limits_bound_the_canvas():
    assert canvas_size("grid", [(1920, 1080)] * 2, FormatLimits(max_height=1080)) == (1920, 1080)
    assert canvas_size("grid", [(160, 90)], FormatLimits(min_height=480)) == (854, 480)  # never below the floor
    assert canvas_size("grid", [(1280, 720)] * 2, FormatLimits(max_height=600, min_height=360)) == (1066, 600)
    assert canvas_size("grid", [], FormatLimits()) == (640, 360)  # audio only: the smallest rung


def test_speaker_layout_sizes_the_big_tile_for_everyone():
    w, h = canvas_size("speaker", [(320, 180), (640, 360)])
    big = speaker_tiles(2, w, h)[0]
    assert big.w >= 640 and big.h >= 360
    assert canvas_size("speaker", [(320, 180), (320, 180)]) == (640, 360)


def test_client_layout_follows_its_one_video():
    assert canvas_size("client", [(1280, 720)], tiles=1) == (1280, 720)
    assert canvas_size("client", [(854, 480)], tiles=1) == (854, 480)


def test_frame_rate_is_the_typical_interval():
    fifteen = [round(k * 1000 / 15) for k in range(30)]  # ms-rounded, as stitched tracks are
    assert frame_rate(fifteen) == pytest.approx(15, rel=0.02)
    with_gap = fifteen + [5000 + round(k * 1000 / 15) for k in range(30)]  # a 3-s hole does not count
    assert frame_rate(with_gap) == pytest.approx(15, rel=0.02)
    assert frame_rate([0]) == 0.0 and frame_rate([]) == 0.0


@pytest.mark.parametrize("rates, expected", [
    ([15.0, 14.9], 15), ([14.6], 15), ([29.4, 15], 30), ([24.0], 24), ([25.0], 25), ([27.0], 30),
    ([60.0], 30),  # capped
    ([], 15), ([0.0], 15),  # no video: the fallback
])
def test_output_fps_is_the_lowest_standard_rate_covering_the_fastest_source(rates, expected):
    assert output_fps(rates) == expected


def test_output_fps_respects_a_non_standard_cap():
    assert output_fps([30.0], FormatLimits(max_fps=28)) == 28
    assert output_fps([12.0], FormatLimits(max_fps=10)) == 10


def test_choose_and_common_format():
    fmt = choose_format("grid", [(320, 180, 15.0), (320, 180, 14.8)])
    assert fmt == VideoFormat(640, 360, 15)
    later = VideoFormat(1280, 720, 15)
    assert common_format([fmt, later, VideoFormat(640, 360, 30)]) == VideoFormat(1280, 720, 30)
    with pytest.raises(ValueError):
        common_format([])


def test_gop_is_whole_seconds_dividing_the_window():
    for fps in (10, 12, 15, 24, 25, 30):
        gop = gop_frames(fps)
        assert gop % fps == 0 and (30 * fps) % gop == 0
