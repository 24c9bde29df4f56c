"""Pure window planning: readiness, inputs (incl. continuations), fingerprints."""
from compositor.windows import (ChunkRef, fingerprint, ready_windows, timeline_end, window_count, window_inputs,
                                with_ends)

W = 30_000


def _chunks(track: str, spans, continuation_from: int | None = None):
    return [ChunkRef(track, i, s, e, continuation=continuation_from is not None and i >= continuation_from,
                     sha256=f"{track}{i}") for i, (s, e) in enumerate(spans)]


def test_unknown_ends_run_to_next_start():
    cs = with_ends([ChunkRef("a", 1, 30_000, None), ChunkRef("a", 0, 0, None), ChunkRef("a", 2, 61_000, None)])
    assert [(c.seq, c.end_ms) for c in cs] == [(0, 30_000), (1, 61_000), (2, 61_000)]


def test_window_ready_when_every_track_covers_it():
    tracks = {"a": _chunks("a", [(0, 30_100), (30_100, 60_050)]), "b": _chunks("b", [(20, 30_010)])}
    assert ready_windows(tracks, W, grace_ms=W) == [0]
    tracks["b"] = _chunks("b", [(20, 30_010), (30_010, 60_000)])
    assert ready_windows(tracks, W, grace_ms=W) == [0, 1]


def test_window_ready_after_grace_when_one_track_stops():
    a = _chunks("a", [(i * W, (i + 1) * W) for i in range(4)])
    b = _chunks("b", [(0, W)])
    assert ready_windows({"a": a, "b": b}, W, grace_ms=W) == [0, 1, 2]
    assert ready_windows({"a": a[:1], "b": b}, W, grace_ms=W) == [0]
    assert ready_windows({}, W, grace_ms=W) == []


def test_inputs_are_overlapping_chunks():
    a = _chunks("a", [(0, 30_100), (30_100, 60_050), (60_050, 90_000)])
    groups = window_inputs(a, 30_000 - 5000, 60_000)
    assert [g.header.seq for g in groups] == [0, 1]
    assert all(not g.parts for g in groups)


def test_continuations_bring_their_header():
    a = _chunks("a", [(0, None), (30_000, None), (60_000, None), (90_000, 120_000)], continuation_from=1)
    first = window_inputs(a, 0, 30_000)
    assert len(first) == 1 and first[0].header.seq == 0 and not first[0].parts
    resumed = window_inputs(a, 60_000, 90_000)
    assert len(resumed) == 1
    assert resumed[0].header.seq == 0 and [p.seq for p in resumed[0].parts] == [2]
    assert not resumed[0].contiguous
    joined = window_inputs(a, 25_000, 60_000)
    assert joined[0].contiguous and [p.seq for p in joined[0].parts] == [1]


def test_end_and_count_and_fingerprint():
    tracks = {"a": _chunks("a", [(0, 30_000), (30_000, 61_000)])}
    assert timeline_end(tracks) == 61_000
    assert window_count(61_000, W) == 3 and window_count(0, W) == 1
    assert fingerprint({"b": 1, "a": [1, 2]}) == fingerprint({"a": [1, 2], "b": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
