"""Pure layout: grid tiles, speaker tiles, labels, active-speaker hysteresis."""
import itertools

import pytest

from compositor.layout import (Rect, SpeakerRules, active_speaker, fit, grid, grid_shape, label_box, segments,
                               speaker_tiles)

W, H = 1280, 720


def _overlap(a: Rect, b: Rect) -> bool:
    return a.x < b.right and b.x < a.right and a.y < b.bottom and b.y < a.bottom


@pytest.mark.parametrize("n", range(1, 10))
def test_grid_tiles_fit_the_canvas_keep_aspect_and_never_overlap(n):
    tiles = grid(n, W, H)
    assert len(tiles) == n
    for t in tiles:
        assert t.x >= 0 and t.y >= 0 and t.right <= W and t.bottom <= H
        assert t.w % 2 == 0 and t.h % 2 == 0 and t.x % 2 == 0 and t.y % 2 == 0
        assert abs(t.w / t.h - 16 / 9) < 0.02
    assert not any(_overlap(a, b) for a, b in itertools.combinations(tiles, 2))
    assert len({(t.w, t.h) for t in tiles}) == 1


def test_grid_shapes():
    assert [grid_shape(n, W, H) for n in (1, 2, 3, 4, 5, 6, 7, 9)] == \
        [(1, 1), (2, 1), (2, 2), (2, 2), (3, 2), (3, 2), (3, 3), (3, 3)]
    with pytest.raises(ValueError):
        grid_shape(10, W, H)


def test_incomplete_last_row_is_centered():
    tiles = grid(3, W, H)
    top, bottom = tiles[:2], tiles[2]
    assert bottom.y > top[0].y
    assert abs((bottom.x + bottom.right) / 2 - W / 2) <= 2


def test_fit_keeps_aspect_and_centers():
    assert fit(640, 480, Rect(0, 0, 640, 360)) == Rect(80, 0, 480, 360)
    assert fit(360, 640, Rect(100, 0, 640, 360)).h == 360
    assert fit(1920, 1080, Rect(0, 0, 640, 360)) == Rect(0, 0, 640, 360)


def test_speaker_tiles_big_tile_and_thumbnail_strip():
    big, *thumbs = speaker_tiles(4, W, H)
    assert big.w * big.h > 4 * max(t.w * t.h for t in thumbs)
    assert all(t.y >= big.bottom for t in thumbs)
    assert not any(_overlap(a, b) for a, b in itertools.combinations([big, *thumbs], 2))
    assert speaker_tiles(1, W, H) == grid(1, W, H)


def test_label_box_inside_tile_or_none():
    tile = Rect(640, 180, 640, 360)
    box = label_box(tile, 150, 24)
    assert box is not None and box.x >= tile.x and box.bottom <= tile.bottom and box.right <= tile.right
    assert label_box(Rect(0, 0, 20, 10), 150, 24) is None


def _talk(frames: int, *spans: tuple[int, int]) -> list[bool]:
    on = [False] * frames
    for a, b in spans:
        for f in range(a, b):
            on[f] = True
    return on


def test_switches_only_after_sustained_speech():
    rules = SpeakerRules(frame_ms=30, smooth_ms=300, sustain_ms=990, min_hold_ms=1980)
    a = _talk(400, (0, 100))
    b = _talk(400, (150, 300))
    who = active_speaker([a, b], rules)
    switch = who.index(1)
    # B starts at frame 150; smoothing needs ~5 frames, then 33 frames (990 ms) of speech.
    assert 150 + 33 <= switch <= 150 + 33 + 10
    assert all(w == 1 for w in who[switch:])  # stays on B after B stops (nobody else talks)


def test_short_interjection_does_not_flicker():
    rules = SpeakerRules()
    a = _talk(300, (0, 300))
    b = _talk(300, (100, 120))  # 600 ms "mm-hm"
    assert set(active_speaker([a, b], rules)) == {0}


def test_min_hold_prevents_rapid_back_and_forth():
    rules = SpeakerRules(frame_ms=30, smooth_ms=90, sustain_ms=300, min_hold_ms=3000)
    a = _talk(400, (0, 50), (80, 400))
    b = _talk(400, (50, 80))
    who = active_speaker([a, b], rules)
    switches = [f for f in range(1, len(who)) if who[f] != who[f - 1]]
    assert len(switches) >= 1
    assert all(s2 - s1 >= 100 for s1, s2 in zip(switches, switches[1:]))  # ≥ 3 s apart


def test_segments_run_length():
    assert segments([0, 0, 1, 1, 1, 0], 30, 1000) == [(1000, 1060, 0), (1060, 1150, 1), (1150, 1180, 0)]
    assert active_speaker([]) == []
