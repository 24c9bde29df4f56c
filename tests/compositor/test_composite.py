"""Compositing windows from stitched tracks: layout, A/V sync, gaps, speaker, client, outputs."""
from __future__ import annotations

import re

import av
import pytest

from compositor.composite import CompositeOptions, Participant, composite_window, output_format, sized
from compositor.layout import Rect, grid, speaker_tiles
from compositor.outputs import concat_windows, grab_jpeg, hls_playlist, thumbnail_strip, window_hls
from compositor.probe import probe
from compositor.sizing import VideoFormat
from compositor.stitch import Source, stitch
from tests.compositor.conftest import A_FLASHES, B_FLASHES, B_START_MS
from tests.compositor.measure import beep_onsets_ms, decode_audio, flash_onsets_ms, nearest_offsets
from tests.media import av_clip

WINDOW = 4000
SMALL = CompositeOptions(width=640, height=360)


def _centre(r: Rect) -> Rect:
    return Rect(r.x + r.w // 4, r.y + r.h // 4, r.w // 2, r.h // 3)  # above the label


@pytest.fixture(scope="module")
def tracks(clip_a, clip_b, tmp_path_factory):
    d = tmp_path_factory.mktemp("tracks")
    stitch([Source(clip_a, 0)], d / "a.mkv")
    stitch([Source(clip_b, B_START_MS)], d / "b.mkv")
    return {"a": d / "a.mkv", "b": d / "b.mkv", "dir": d}


@pytest.fixture(scope="module")
def grid_windows(tracks):
    """The two-person grid at 1280×720, 9 s cut into 4-s windows (the last one 1 s)."""
    people = [Participant("Alice Candidate", tracks["a"], tracks["a"]), Participant("Bob", tracks["b"], tracks["b"])]
    out = []
    for i in range(3):
        out.append(composite_window(people, i, WINDOW, tracks["dir"] / f"w{i}.mp4", CompositeOptions(), end_ms=9000))
    return out


def test_window_stream_layout(grid_windows):
    first = grid_windows[0]
    with av.open(str(first.path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert (v.codec_context.name, v.codec_context.pix_fmt, v.width, v.height) == ("h264", "yuv420p", 1280, 720)
        assert v.average_rate == 30
        assert (a.codec_context.name, a.sample_rate, a.codec_context.channels) == ("aac", 48000, 1)
    assert [w.frames for w in grid_windows] == [120, 120, 30]
    assert grid_windows[0].labels  # drawtext via the ffmpeg CLI was available
    data = first.path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart: the index comes first


def test_concatenated_windows_keep_av_sync_between_tracks(grid_windows, tmp_path):
    final = tmp_path / "final.mp4"
    concat_windows([w.path for w in grid_windows], WINDOW, final)
    info = probe(final)
    assert abs(info.stream("video").end_ms - 9000) <= 1
    assert abs(info.stream("audio").end_ms - 9000) <= 25
    tiles = grid(2, 1280, 720)
    a_exp = [s * 1000 for s in A_FLASHES]
    b_exp = [B_START_MS + s * 1000 for s in B_FLASHES]
    a_flash = nearest_offsets(flash_onsets_ms(final, _centre(tiles[0])), a_exp)
    b_flash = nearest_offsets(flash_onsets_ms(final, _centre(tiles[1])), b_exp)
    beeps = nearest_offsets(beep_onsets_ms(final), sorted(a_exp + b_exp))
    assert all(abs(o) <= 40 for o in a_flash + b_flash + beeps), (a_flash, b_flash, beeps)
    # A/V offset per event: flash vs beep of the same event, ≤ 40 ms.
    by_time = dict(zip(sorted(a_exp + b_exp), beeps))
    for exp, off in list(zip(a_exp, a_flash)) + list(zip(b_exp, b_flash)):
        assert abs(off - by_time[exp]) <= 40


def test_window_seams_have_no_drift_or_clicks(grid_windows, tmp_path):
    final = tmp_path / "final.mp4"
    concat_windows([w.path for w in grid_windows], WINDOW, final)
    pcm, start = decode_audio(final)
    for seam_ms in (4000, 8000):  # silence around each seam in this clip: no click from the join
        at = int((seam_ms - start) * 48)
        assert abs(pcm[at - 480:at + 480]).max() < 0.01


def test_hls_segments_and_playlist_follow_the_timeline(grid_windows, tmp_path):
    segs = []
    for w in grid_windows:
        segs += window_hls(w.path, w.index, WINDOW, tmp_path, "w")
    text = hls_playlist(segs)
    (tmp_path / "index.m3u8").write_text(text)
    assert text.startswith("#EXTM3U") and text.rstrip().endswith("#EXT-X-ENDLIST")
    durations = [float(x) for x in re.findall(r"#EXTINF:([0-9.]+),", text)]
    assert abs(sum(durations) - 9.0) < 0.05
    assert all((tmp_path / s.uri).stat().st_size > 0 for s in segs)
    beeps = beep_onsets_ms(tmp_path / "index.m3u8")
    first = beeps[0] - A_FLASHES[0] * 1000  # HLS timestamps carry a constant offset
    rel = nearest_offsets([b - first for b in beeps], [s * 1000 for s in A_FLASHES])
    assert all(abs(o) <= 40 for o in rel), rel


def test_poster_and_thumbnail_strip(grid_windows):
    poster = grab_jpeg(grid_windows[0].path, 2000, 1280)
    assert poster[:2] == b"\xff\xd8"
    strip = thumbnail_strip([grab_jpeg(w.path, 500, 160) for w in grid_windows])
    frame = av.CodecContext.create("mjpeg", "r").decode(av.Packet(strip))[0]
    assert (frame.width, frame.height) == (480, 90)


def test_gap_freezes_then_goes_black_and_silent(clip_a, tmp_path, tracks):
    # Track A with its middle missing: media 0-3 s at 0, then 3-9 s placed at 6 s (3 s hole).
    from tests.media import split_chunks

    chunks = split_chunks(clip_a, tmp_path / "chunks", chunk_s=3)
    holed = tmp_path / "holed.mkv"
    report = stitch([Source(chunks[0][0], 0), Source(chunks[2][0], 6000)], holed)
    assert len(report.gaps) == 1
    out = tmp_path / "gap.mp4"
    composite_window([Participant("A", holed, holed)], 0, 9000, out, SMALL)
    tile = grid(1, 640, 360)[0]
    luma = []
    with av.open(str(out)) as c:
        for f in c.decode(c.streams.video[0]):
            luma.append(float(f.to_ndarray(format="gray")[_slice(_centre(tile))].mean()))
    frozen, black = luma[int(3.5 * 30)], luma[int(5.0 * 30)]
    assert frozen > 40  # held last frame during the first second of the gap
    assert black < 20  # then black
    assert luma[int(7.0 * 30)] > 40  # media again after the gap (6 s + 1 s)
    beeps = beep_onsets_ms(out)
    # Source beeps at 1.0 s (chunk 0, kept in place) and 7.2 s (chunk 2, placed at its 6-s start:
    # also 7.2 s); the one at 3.6 s was in the missing chunk 1.
    assert nearest_offsets(beeps, [1000, 7200]) == pytest.approx([0, 0], abs=40)
    pcm, start = decode_audio(out)
    assert abs(pcm[int((3500 - start) * 48):int((5500 - start) * 48)]).max() < 1e-3  # silence in the gap


def _slice(r: Rect):
    return slice(r.y, r.bottom), slice(r.x, r.right)


def test_active_speaker_follows_espeak_speech(speech, tracks, tmp_path):
    a = tmp_path / "sa.mkv"
    b = tmp_path / "sb.mkv"
    stitch([Source(speech["a"], 0)], a)
    stitch([Source(speech["b"], 0)], b)
    people = [Participant("A", tracks["a"], a), Participant("B", tracks["b"], b)]
    out = tmp_path / "speaker.mp4"
    result = composite_window(people, 0, 9000, out, CompositeOptions(width=640, height=360, layout="speaker"))
    b_start = speech["b_span"][0] * 1000
    assert result.speakers[0][2] == 0
    switch = next(s for s, _, who in result.speakers if who == 1)
    assert b_start + 600 <= switch <= b_start + 2000, result.speakers
    assert len(result.speakers) == 2  # no flicker
    big = speaker_tiles(2, 640, 360)[0]
    # A's flash at 1.0 s shows in the big tile (A speaks). B's flash at 5.5 s comes before the
    # switch (B is still a thumbnail) and A's flash at 7.2 s after it (A is the thumbnail).
    flashes = flash_onsets_ms(out, _centre(big))
    assert nearest_offsets(flashes, [1000]) == pytest.approx([0], abs=40)
    assert all(abs(f - 7200) > 100 for f in flashes)


def test_client_layout_muxes_composite_video_with_mixed_audio(tracks, clip_b, tmp_path):
    people = [Participant("", video=tracks["a"]), Participant("Alice", audio=tracks["a"]),
              Participant("Bob", audio=tracks["b"])]
    out = tmp_path / "client.mp4"
    result = composite_window(people, 0, 9000, out, CompositeOptions(width=640, height=360, layout="client"))
    assert not result.labels
    full = Rect(160, 90, 320, 180)
    assert nearest_offsets(flash_onsets_ms(out, full), [s * 1000 for s in A_FLASHES]) == \
        pytest.approx([0, 0, 0], abs=40)
    expected = sorted([s * 1000 for s in A_FLASHES] + [B_START_MS + s * 1000 for s in B_FLASHES])
    assert all(abs(o) <= 40 for o in nearest_offsets(beep_onsets_ms(out), expected))


def test_window_follows_its_sources_size_and_rate(clip_a, tracks, tmp_path):
    """320×180 cameras: a 640×360 grid (tiles unscaled); a 15 fps camera: 15 fps, keyframes every 5 s."""
    people = [Participant("Alice", tracks["a"], tracks["a"]), Participant("Bob", tracks["b"], tracks["b"])]
    assert output_format(people, "grid") == VideoFormat(640, 360, 30)
    slow = tmp_path / "a15.mkv"
    stitch([Source(av_clip(tmp_path / "a15.webm", 9, fps=15, beeps_s=A_FLASHES, flashes_s=A_FLASHES), 0)], slow)
    people = [Participant("Alice", slow, slow), Participant("Bob", tracks["b"], tracks["b"])]
    assert output_format([people[0]], "grid") == VideoFormat(640, 360, 15)
    fmt = output_format(people, "grid")
    assert fmt == VideoFormat(640, 360, 30)  # the fastest source decides
    fmt = VideoFormat(640, 360, 15)
    out = tmp_path / "w.mp4"
    result = composite_window([people[0]], 0, 9000, out, sized(CompositeOptions(), fmt))
    assert result.frames == 9 * 15
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height, v.average_rate) == (640, 360, 15)
        keys = [float(p.pts * p.time_base) for p in c.demux(v) if p.is_keyframe and p.pts is not None]
    assert keys == [0.0, 5.0]
    tile = grid(1, 640, 360)[0]
    flashes = nearest_offsets(flash_onsets_ms(out, _centre(tile)), [s * 1000 for s in A_FLASHES])
    beeps = nearest_offsets(beep_onsets_ms(out), [s * 1000 for s in A_FLASHES])
    assert all(abs(o) <= 67 for o in flashes) and all(abs(o) <= 40 for o in beeps), (flashes, beeps)


def test_grab_jpeg_seeks_and_never_upscales(grid_windows, tracks, tmp_path):
    small = tmp_path / "small.mp4"
    composite_window([Participant("Alice", tracks["a"], tracks["a"])], 0, 9000, small,
                     sized(CompositeOptions(), VideoFormat(640, 360, 15)))
    frame = av.CodecContext.create("mjpeg", "r").decode(av.Packet(grab_jpeg(small, 7000, 1280)))[0]
    assert (frame.width, frame.height) == (640, 360)
    late = grab_jpeg(grid_windows[0].path, 3500, 160)  # seeks to the keyframe before 3.5 s
    assert late[:2] == b"\xff\xd8" and late != grab_jpeg(grid_windows[0].path, 0, 160)
