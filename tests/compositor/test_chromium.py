"""Real Chromium `MediaRecorder` chunks through stitch and composite.

Headless Chromium records its fake camera + microphone (`tests.media.chromium_chunks`,
cached under /tmp per arguments; the same arguments as the ingest tests, so one recording
serves both). The fake microphone beeps every 500 ms in step with the fake camera's
clock: in a correctly placed track every beep sits on one 500-ms grid, across every
chunk boundary. Placing stop/start blobs one after the other (sum of durations) would
move each later blob earlier by the ~60-110 ms the recorder needs to restart, and the
beeps would drift off the grid by the accumulated pauses.
"""
from __future__ import annotations

import av
import pytest

from compositor.composite import CompositeOptions, Participant, composite_window
from compositor.container import first_sync_offset, init_segment
from compositor.outputs import concat_windows
from compositor.probe import probe
from compositor.stitch import Source, join_parts, stitch
from tests.compositor.measure import beep_onsets_ms, grid_residuals_ms, nearest_offsets, packet_times_ms
from tests.media import chromium_chunks

pytestmark = pytest.mark.browser

WEBM, MP4 = "video/webm;codecs=vp8,opus", "video/mp4"
SECONDS, CHUNK_MS = 4.0, 1000
BEEP_MS = 500
CODECS = {"webm": ("vp8", "opus"), "mp4": ("vp9", "opus")}


def _record(tmp_path_factory, mode: str, mime: str) -> list[dict]:
    return chromium_chunks(tmp_path_factory.mktemp(f"chromium-{mode}"), mode=mode, seconds=SECONDS,
                           chunk_ms=CHUNK_MS, mime=mime)


@pytest.fixture(scope="module")
def stopstart_webm(tmp_path_factory):
    return _record(tmp_path_factory, "stopstart", WEBM)


@pytest.fixture(scope="module")
def stopstart_mp4(tmp_path_factory):
    return _record(tmp_path_factory, "stopstart", MP4)


@pytest.fixture(scope="module")
def timeslice_webm(tmp_path_factory):
    return _record(tmp_path_factory, "timeslice", WEBM)


@pytest.fixture(scope="module")
def timeslice_mp4(tmp_path_factory):
    return _record(tmp_path_factory, "timeslice", MP4)


def _sources(blobs: list[dict], offset_ms: int = 0) -> list[Source]:
    """Each blob at its real start (epoch ms from the recorder) on a timeline from blob 0."""
    t0 = blobs[0]["start_ms"]
    return [Source(b["path"], b["start_ms"] - t0 + offset_ms) for b in blobs]


def _assert_monotonic(path) -> None:
    for kind, times in packet_times_ms(path).items():
        dts = [d for d, _ in times]
        assert all(b > a for a, b in zip(dts, dts[1:])), f"{kind} timestamps go back in {path.name}"


def _assert_on_beep_grid(path, min_beeps: int) -> list[float]:
    beeps = beep_onsets_ms(path, min_gap_ms=300)
    assert len(beeps) >= min_beeps, beeps
    residuals = grid_residuals_ms(beeps, BEEP_MS)
    assert all(abs(r) <= 40 for r in residuals), list(zip(beeps, residuals))
    return beeps


@pytest.mark.parametrize("kind", ["webm", "mp4"])
def test_stopstart_blobs_land_at_their_real_starts_without_drift(kind, request, tmp_path):
    blobs = request.getfixturevalue(f"stopstart_{kind}")
    assert len(blobs) >= 4 and not any(b["continuation"] for b in blobs)
    starts = [s.start_ms for s in _sources(blobs)]
    pauses = [b - (a + blob["duration_ms"]) for a, b, blob in zip(starts, starts[1:], blobs)]
    assert sum(pauses) > 120, pauses  # a duration-sum placement would drift beyond 40 ms
    out = tmp_path / "track.mkv"
    report = stitch(_sources(blobs), out)
    assert report.transcoded == []  # remuxed, not re-encoded
    assert [p.start_ms for p in report.placements] == starts  # nothing shifted
    # Each blob's media is about as long as the recorder ran (60-ms Opus packets, guessed last frame).
    for p, b in zip(report.placements, blobs):
        assert abs((p.end_ms - p.start_ms) - b["duration_ms"]) <= 150, (p, b["duration_ms"])
    info = probe(out)
    assert (info.stream("video").codec, info.stream("audio").codec) == CODECS[kind]
    assert abs(info.end_ms - (starts[-1] + blobs[-1]["duration_ms"])) <= 150
    _assert_monotonic(out)
    _assert_on_beep_grid(out, min_beeps=int(SECONDS * 1000 / BEEP_MS) - 1)


@pytest.mark.parametrize("kind", ["webm", "mp4"])
def test_timeslice_continuations_byte_join_and_resume_on_the_recording_clock(kind, request, tmp_path):
    blobs = request.getfixturevalue(f"timeslice_{kind}")
    assert [b["continuation"] for b in blobs] == [False] + [True] * (len(blobs) - 1)
    joined = join_parts([b["path"] for b in blobs], tmp_path / f"joined.{kind}")
    full = tmp_path / "full.mkv"
    report = stitch([Source(joined, 0)], full)
    assert report.transcoded == [] and report.gaps == []
    info = probe(full)
    assert (info.stream("video").codec, info.stream("audio").codec) == CODECS[kind]
    # One recorder: its media spans the blobs' total (the JS clock starts at `onstart`, a bit late).
    assert abs(info.duration_ms - sum(b["duration_ms"] for b in blobs)) <= 250
    _assert_monotonic(full)
    beeps = _assert_on_beep_grid(full, min_beeps=int(SECONDS * 1000 / BEEP_MS) - 1)
    # Resume a later continuation (cut inside a block) from the header's init segment:
    # the resumed file keeps the recording's clock, so its beeps are the same beeps.
    k = min(2, len(blobs) - 1)
    later = blobs[k]["path"].read_bytes()
    sync = first_sync_offset(later, kind)
    assert sync is not None
    header = blobs[0]["path"].read_bytes()
    resumed = join_parts([init_segment(header, kind), later[sync:], *[b["path"] for b in blobs[k + 1:]]],
                         tmp_path / f"resumed.{kind}")
    part = tmp_path / "part.mkv"
    head = probe(blobs[0]["path"], require_packets=False)  # Chromium's MP4 header blob: ftyp + moov only
    stitch([Source(resumed, 0, origin_ms=head.origin_ms)], part)
    first = probe(part).start_ms
    assert (head.end_ms if head.end_ms is not None else -1) < first < info.end_ms  # only the later part
    assert probe(part).stream("audio").end_ms == info.stream("audio").end_ms  # same packets, same clock
    kept = [b for b in beep_onsets_ms(part, min_gap_ms=300) if b > first + 100]  # not cut at the resume point
    assert kept and all(abs(o) <= 1 for o in nearest_offsets(beeps, kept))


def test_composite_of_two_chromium_tracks(stopstart_webm, stopstart_mp4, tmp_path):
    a, b = tmp_path / "a.mkv", tmp_path / "b.mkv"
    stitch(_sources(stopstart_webm), a)
    stitch(_sources(stopstart_mp4), b)
    # Start B so that its beeps fall between A's: both must be found in the mix, each in place.
    a_beeps, b_beeps = beep_onsets_ms(a, min_gap_ms=300), beep_onsets_ms(b, min_gap_ms=300)
    offset = int(a_beeps[0] + BEEP_MS / 2 - b_beeps[0]) % BEEP_MS + BEEP_MS
    stitch(_sources(stopstart_mp4, offset), b)
    b_beeps = beep_onsets_ms(b, min_gap_ms=300)
    end = int(max(probe(a).end_ms, probe(b).end_ms))
    window = 2500
    people = [Participant("Chromium WebM", a, a), Participant("Chromium MP4", b, b)]
    opts = CompositeOptions(width=640, height=360)
    windows = [composite_window(people, i, window, tmp_path / f"w{i}.mp4", opts, end_ms=end).path
               for i in range(-(-end // window))]
    final = tmp_path / "final.mp4"
    concat_windows(windows, window, final)
    info = probe(final)
    assert (info.container, info.stream("video").codec, info.stream("audio").codec) == ("mp4", "h264", "aac")
    with av.open(str(final)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (640, 360)
        # one frame slot per 1/30 s of the timeline; a partial last slot is rendered or not
        assert abs(c.streams.video[0].frames - end * 30 / 1000) < 1, (c.streams.video[0].frames, end)
    assert abs(info.stream("video").end_ms - end) <= 34 and abs(info.stream("audio").end_ms - end) <= 25
    _assert_monotonic(final)
    found = beep_onsets_ms(final, min_gap_ms=150)
    offsets = nearest_offsets(found, sorted(a_beeps + b_beeps))
    assert all(abs(o) <= 40 for o in offsets), offsets
