"""Stitching real chunk files: offsets from real starts, gaps, continuations, codec changes."""
from __future__ import annotations

import subprocess

import pytest

from compositor.container import first_sync_offset, init_segment
from compositor.layout import Rect
from compositor.probe import probe
from compositor.stitch import Source, join_parts, stitch
from core.errors import InvalidMedia
from tests.compositor.conftest import A_FLASHES
from tests.compositor.measure import beep_onsets_ms, flash_onsets_ms, nearest_offsets
from tests.media import split_chunks

FULL = Rect(80, 45, 160, 90)  # centre of a 320×180 frame (away from the clock label)


@pytest.fixture(scope="module")
def webm_chunks(clip_a, tmp_path_factory):
    return split_chunks(clip_a, tmp_path_factory.mktemp("webm-chunks"), chunk_s=3)


def _assert_events(path, expected_ms, tol=40.0):
    flashes = nearest_offsets(flash_onsets_ms(path, FULL), expected_ms)
    beeps = nearest_offsets(beep_onsets_ms(path), expected_ms)
    assert all(abs(o) <= tol for o in flashes), flashes
    assert all(abs(o) <= tol for o in beeps), beeps


def test_self_contained_chunks_are_remuxed_without_reencoding(webm_chunks, tmp_path):
    out = tmp_path / "a.mkv"
    report = stitch([Source(p, start) for p, start, _ in webm_chunks], out)
    assert report.transcoded == [] and report.gaps == []
    info = probe(out)
    assert info.stream("video").codec == "vp8" and info.stream("audio").codec == "opus"
    assert abs(info.duration_ms - 9000) <= 60
    assert info.stream("video").packets == sum(probe(p).stream("video").packets for p, _, _ in webm_chunks)
    _assert_events(out, [s * 1000 for s in A_FLASHES])


def test_gap_leaves_a_hole_and_never_moves_media_earlier(webm_chunks, tmp_path):
    out = tmp_path / "gap.mkv"
    sources = [Source(p, start + (2000 if seq == 2 else 0)) for seq, (p, start, _) in enumerate(webm_chunks)]
    report = stitch(sources, out)
    assert len(report.gaps) == 1
    gap = report.gaps[0]
    assert abs(gap.start_ms - 6000) <= 60 and gap.end_ms == 8000
    # The flash at 7.2 s of the source is in the third chunk: it now plays at 9.2 s.
    _assert_events(out, [1000, 3600, 9200])
    assert abs(probe(out).end_ms - 11000) <= 60


@pytest.fixture(scope="module")
def mp4_chunks(clip_mp4, tmp_path_factory):
    return split_chunks(clip_mp4, tmp_path_factory.mktemp("mp4-chunks"), chunk_s=3)


def test_fragmented_mp4_chunks(mp4_chunks, tmp_path):
    chunks = mp4_chunks
    out = tmp_path / "c.mkv"
    report = stitch([Source(p, start) for p, start, _ in chunks], out)
    assert report.transcoded == []
    info = probe(out)
    assert (info.stream("video").codec, info.stream("audio").codec) == ("h264", "aac")
    _assert_events(out, [1000, 4000])


def _cut(data: bytes, n: int) -> list[bytes]:
    """Cut a file into n blobs at arbitrary byte offsets (as a timeslice recorder does)."""
    step = len(data) // n
    return [data[i * step:(i + 1) * step if i < n - 1 else len(data)] for i in range(n)]


def test_timeslice_continuations_are_byte_joined_then_remuxed(clip_a, tmp_path):
    blobs = _cut(clip_a.read_bytes(), 5)
    paths = []
    for i, blob in enumerate(blobs):
        paths.append(tmp_path / f"{i}.part")
        paths[-1].write_bytes(blob)
    with pytest.raises(InvalidMedia):
        probe(paths[2])  # a continuation blob is not playable alone
    joined = join_parts(paths, tmp_path / "joined.webm")
    out = tmp_path / "ts.mkv"
    stitch([Source(joined, 500)], out)
    _assert_events(out, [500 + s * 1000 for s in A_FLASHES])


def test_resumed_continuation_keeps_the_recording_clock(clip_a, tmp_path):
    data = clip_a.read_bytes()
    blobs = _cut(data, 4)
    sync = first_sync_offset(blobs[2], "webm")
    assert sync is not None
    resumed = join_parts([init_segment(blobs[0], "webm"), blobs[2][sync:], blobs[3]], tmp_path / "resumed.webm")
    header = tmp_path / "header.webm"
    header.write_bytes(blobs[0])
    out = tmp_path / "resumed.mkv"
    stitch([Source(resumed, 500, origin_ms=probe(header).origin_ms)], out)
    info = probe(out)
    assert info.start_ms > 3000  # only the later part, at its true place
    assert abs(info.end_ms - 9500) <= 60
    _assert_events(out, [7700])


def test_resume_offsets_for_fragmented_mp4(clip_mp4):
    data = clip_mp4.read_bytes()
    first = first_sync_offset(data, "mp4")
    assert first is not None and data[first + 4:first + 8] == b"moof"
    later = first_sync_offset(data, "mp4", first + 1)
    assert later is not None and later > first
    assert init_segment(data, "mp4") == data[:first]


def test_codec_change_transcodes_only_that_part(webm_chunks, mp4_chunks, tmp_path):
    sources = [Source(webm_chunks[0][0], 0), Source(mp4_chunks[1][0], 3000)]
    out = tmp_path / "mixed.mkv"
    report = stitch(sources, out)
    assert report.transcoded == [1]
    info = probe(out)
    assert (info.stream("video").codec, info.stream("audio").codec) == ("vp8", "opus")
    # Chunk 1 of the mp4 clip starts at its 3.0 s; its flash at 4.0 s lands at 3000 + 1000.
    _assert_events(out, [1000, 4000])
    assert abs(info.end_ms - 6000) <= 80


def test_not_media_is_invalid(tmp_path):
    png = tmp_path / "image.webm"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=red:s=32x32", "-frames:v", "1",
                    "-f", "image2", "-c:v", "png", str(png)], check=True)
    with pytest.raises(InvalidMedia) as err:
        stitch([Source(png, 0)], tmp_path / "x.mkv")
    assert err.value.code == "unsupported_container"
    garbage = tmp_path / "garbage.webm"
    garbage.write_bytes(b"\x00" * 1000)
    with pytest.raises(InvalidMedia):
        probe(garbage)


def test_header_only_sources_are_skipped(clip_mp4, tmp_path):
    # A timeslice header can hold only the init segment (Chromium's MP4: ftyp + moov).
    head = tmp_path / "head.mp4"
    head.write_bytes(init_segment(clip_mp4.read_bytes(), "mp4"))
    info = probe(head, require_packets=False)
    assert info.streams and not any(s.packets for s in info.streams)
    with pytest.raises(InvalidMedia) as err:
        stitch([Source(head, 0)], tmp_path / "empty.mkv")
    assert err.value.code == "empty_media"
    report = stitch([Source(head, 0), Source(clip_mp4, 0)], tmp_path / "c.mkv")
    assert len(report.placements) == 1 and report.placements[0].start_ms == 0
    _assert_events(tmp_path / "c.mkv", [1000, 4000])
