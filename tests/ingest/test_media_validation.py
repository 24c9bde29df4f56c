"""Structural chunk validation (ingest.ebml, ingest.isobmff) against ffprobe, damage and fuzz."""
from __future__ import annotations

import struct
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.errors import InvalidMedia, UnsupportedMedia
from ingest import ebml, isobmff, matroska
from ingest.media import (
    check_magic,
    ffprobe_file,
    judge,
    judge_matroska,
    judge_mp4,
    probe_file,
)
from tests.media import chromium_chunks

VP8 = "video/webm;codecs=vp8,opus"


def _file(tmp: Path, name: str, data: bytes) -> str:
    path = tmp / name
    path.write_bytes(data)
    return str(path)


def _same_as_ffprobe(path: str, container: str, checker: str) -> None:
    ours, theirs = probe_file(path, container), ffprobe_file(path, container)
    assert ours.checker == checker
    assert ours.streams == theirs.streams
    assert ours.duration_ms == pytest.approx(theirs.duration_ms, rel=0.05)


# ---------------------------------------------------------------- pure decoding

def test_ebml_headers_decode_and_reserved_values_are_corrupt() -> None:
    assert ebml.vint(b"\x81", 0) == (0x81, 1)
    assert ebml.element_header(bytes.fromhex("1a45dfa39f")) == (ebml.EBML, 0x1F, 5)
    assert ebml.element_header(bytes.fromhex("1853806701ffffffffffffff")) == (ebml.SEGMENT, None, 12)
    assert ebml.element_header(bytes.fromhex("a34123")) == (ebml.SIMPLE_BLOCK, 0x123, 3)
    for bad in (b"\x00\x81", b"\xff\x81", b"\x80\x81", b"\x08\x00\x00\x00\x00\x81"):
        with pytest.raises(InvalidMedia) as err:  # >8-byte vint, reserved ids, 5-byte id
            ebml.element_header(bad)
        assert err.value.code == "corrupt_media"
    assert ebml.float_value(struct.pack(">d", 1.5)) == 1.5 and ebml.float_value(struct.pack(">f", 2.0)) == 2.0


def test_opus_toc_gives_packet_length() -> None:
    assert matroska.opus_packet_ns(bytes([0xFC])) == 20_000_000       # CELT 20 ms, one frame
    assert matroska.opus_packet_ns(bytes([0xFD])) == 40_000_000       # two frames
    assert matroska.opus_packet_ns(bytes([0xFB, 0x03])) == 60_000_000  # code 3: frame count byte
    assert matroska.opus_packet_ns(bytes([0x08])) == 20_000_000       # SILK NB 20 ms
    assert matroska.opus_packet_ns(b"") is None and matroska.opus_packet_ns(bytes([0x03])) is None


def test_media_end_counts_known_frame_lengths_and_estimates_only_without_any() -> None:
    opus = matroska.TrackInfo(number=1, kind="audio", codec_id="A_OPUS")
    vp8 = matroska.TrackInfo(number=2, kind="video", codec_id="V_VP8")
    mk = matroska.Matroska(tracks={1: opus, 2: vp8})
    for t in range(0, 1000, 20):          # Opus packets of 20 ms (TOC 0xFC) up to 980 ms
        mk.tails.setdefault(1, matroska.BlockTail()).add(t * 1_000_000, None, bytes([0x00, 0xFC]))
    for t in (990, 0, 495):               # video blocks out of order (B-frames): the latest counts
        mk.tails.setdefault(2, matroska.BlockTail()).add(t * 1_000_000, None, b"\x80")
    assert mk.end_s == pytest.approx(1.0)  # audio knows its length; video adds none (as ffprobe)
    video_only = matroska.Matroska(tracks={2: vp8}, tails={2: mk.tails[2]})
    assert video_only.end_s == pytest.approx(0.99 + 0.495)  # nothing knows: mean gap estimated
    laced = matroska.BlockTail()
    laced.add(0, None, bytes([0x02, 0x03]))  # Xiph lacing: the byte after the flags is no TOC
    assert laced.frame_ns(opus) is None and laced.frame_ns(matroska.TrackInfo(1, "audio", default_ns=5)) == 5


def test_judge_rules() -> None:
    av = [{"type": "audio"}]
    assert judge("f", av, 30.0, 29.8, "ebml", need_frames=True).duration_ms == 30000
    assert judge("f", av, None, 12.5, "ebml").duration_ms == 12500
    assert judge("f", av, None, None, "ebml").duration_ms is None  # a live blob without whole blocks
    cases = [((30.0, 29.7, True), "truncated_media"), ((None, None, True), "no_media_frames"),
             ((30.0, None, True), "truncated_media")]
    for (declared, end, need), code in cases:
        with pytest.raises(InvalidMedia) as err:
            judge("f", av, declared, end, "ebml", need_frames=need)
        assert err.value.code == code
    with pytest.raises(InvalidMedia, match="no audio or video"):
        judge("f", [], 1.0, 1.0, "ebml")


def test_mp4_box_and_table_parsing() -> None:
    assert isobmff.box_header(b"\0\0\0\0mdat", 0, 100) == (b"mdat", 8, 100)           # size 0: to the end
    assert isobmff.box_header(b"\0\0\0\1mdat" + struct.pack(">Q", 40), 0, 100) == (b"mdat", 16, 40)
    for bad in (b"\0\0\0\4mdat", b"\0\0\0\x10m\x01at"):
        with pytest.raises(InvalidMedia):
            isobmff.box_header(bad, 0, 100)
    # chunks 1-2 hold two samples each, chunk 3 one: ends 100+30, 200+70, 300+50
    stsc, sizes = (1, 2, 1, 3, 1, 1), (10, 20, 30, 40, 50)
    assert isobmff.sample_data_end(stsc, 0, sizes, 5, (100, 200, 300)) == 350
    assert isobmff.sample_data_end((1, 4, 1), 8, (), 8, (0, 1000)) == 1032  # constant sample size
    for bad_stsc, count in (((2, 1, 1, 1, 1, 1), 5), ((1, 2, 1), 3)):       # out of order; too many samples
        with pytest.raises(InvalidMedia):
            isobmff.sample_data_end(bad_stsc, 0, sizes, count, (100, 200, 300))
    trun = bytes([0, 0, 0x03, 0x01]) + struct.pack(">Ii", 2, -8) + struct.pack(">4I", 512, 100, 1024, 200)
    assert isobmff.parse_trun(trun, 0, len(trun), 0, 0) == (-8, 1536, 300)
    assert isobmff.parse_trun(bytes(4) + struct.pack(">I", 3), 0, 8, 512, 77) == (None, 1536, 231)
    with pytest.raises(InvalidMedia):  # a sample count the box cannot hold
        isobmff.parse_trun(bytes([0, 0, 1, 0]) + struct.pack(">I", 1000), 0, 8, 0, 0)


# ---------------------------------------------------------------- real media agrees with ffprobe

def test_ffmpeg_webm_and_mp4_chunks_validate_like_ffprobe(webm_chunks, mp4_chunks, tmp_path) -> None:
    for i, (data, _, _) in enumerate(webm_chunks):
        _same_as_ffprobe(_file(tmp_path, f"{i}.webm", data), "webm", "ebml")
    for i, (data, _, _) in enumerate(mp4_chunks):
        _same_as_ffprobe(_file(tmp_path, f"{i}.mp4", data), "mp4", "isobmff")


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> dict[str, Path]:
    """ffmpeg outputs the chunk fixtures lack: a 30-s chunk, live WebM, plain MP4 both ways, Ogg."""
    d = tmp_path_factory.mktemp("encoded")
    src = ["-f", "lavfi", "-i", "testsrc2=size=160x90:rate=30:duration=3", "-f", "lavfi", "-i", "sine=d=3"]
    outs = {"long.webm": ["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=15:duration=30", "-f", "lavfi", "-i",
                          "sine=d=30", "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus"],
            "live.webm": [*src, "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus",
                          "-live", "1", "-f", "webm"],
            "moov-last.mp4": [*src, "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
            "faststart.mp4": [*src, "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-c:a", "aac",
                              "-movflags", "+faststart"],
            "audio.ogg": ["-f", "lavfi", "-i", "sine=d=2", "-c:a", "libopus"]}
    for name, args in outs.items():
        subprocess.run(["ffmpeg", "-v", "error", "-y", *args, str(d / name)], check=True, timeout=120)
    return {name: d / name for name in outs}


def test_other_layouts_validate_and_ogg_goes_to_ffprobe(encoded) -> None:
    _same_as_ffprobe(str(encoded["long.webm"]), "webm", "ebml")
    _same_as_ffprobe(str(encoded["live.webm"]), "webm", "ebml")
    assert ebml.read_matroska(str(encoded["live.webm"])).live
    for name in ("moov-last.mp4", "faststart.mp4"):
        _same_as_ffprobe(str(encoded[name]), "mp4", "isobmff")
        assert not isobmff.read_mp4(str(encoded[name])).fragmented
    assert probe_file(str(encoded["audio.ogg"]), "ogg").checker == "ffprobe"


@pytest.mark.browser
@pytest.mark.parametrize("mime", [VP8, "video/webm;codecs=vp9,opus", "video/mp4"])
def test_chromium_stopstart_blobs_validate_like_ffprobe(tmp_path, mime) -> None:
    container = "mp4" if "mp4" in mime else "webm"
    for blob in chromium_chunks(tmp_path / "blobs", mode="stopstart", seconds=4.0, chunk_ms=1000, mime=mime):
        _same_as_ffprobe(str(blob["path"]), container, "isobmff" if container == "mp4" else "ebml")


@pytest.mark.browser
def test_chromium_timeslice_first_blob_is_live_and_cut_anywhere_after_tracks(tmp_path) -> None:
    first = chromium_chunks(tmp_path / "blobs", mode="timeslice", seconds=4.0, chunk_ms=1000, mime=VP8)[0]
    path = str(first["path"])
    _same_as_ffprobe(path, "webm", "ebml")
    assert ebml.read_matroska(path).live
    data = first["path"].read_bytes()
    clusters = data.index(bytes.fromhex("1f43b675"), data.index(bytes.fromhex("1654ae6b")))
    last = None
    for cut in range(clusters, len(data), max(1, (len(data) - clusters) // 60)):
        result = probe_file(_file(tmp_path, "cut.webm", data[:cut]), "webm")  # a later timeslice cut point
        assert last is None or (result.duration_ms or 0) >= last
        last = result.duration_ms or 0
    with pytest.raises(InvalidMedia) as err:  # cut inside Tracks: no usable header
        probe_file(_file(tmp_path, "head.webm", data[:data.index(bytes.fromhex("1654ae6b")) + 20]), "webm")
    assert err.value.code == "truncated_media"


# ---------------------------------------------------------------- damage

def test_corrupt_truncated_and_mislabelled_inputs(webm_chunks, mp4_chunks, tmp_path) -> None:
    good = webm_chunks[1][0]
    corrupt = good[:40] + bytes(b ^ 0xFF for b in good[40:4000]) + good[4000:]
    for name, data, code in [("corrupt", corrupt, "corrupt_media"), ("half", good[: len(good) // 2], "truncated_media"),
                             ("mp4-half", mp4_chunks[1][0][: len(mp4_chunks[1][0]) // 2], "truncated_media")]:
        with pytest.raises(InvalidMedia) as err:
            probe_file(_file(tmp_path, name, data), "mp4" if name.startswith("mp4") else "webm")
        assert err.value.code == code, err.value.message
    with pytest.raises(UnsupportedMedia):
        check_magic(b"\x89PNG\r\n\x1a\n" + bytes(100), "webm", continuation=False)
    with pytest.raises(UnsupportedMedia):
        check_magic(mp4_chunks[0][0][:64], "webm", continuation=False)
    doc = good.index(b"webm")  # same length DocType that is not Matroska
    with pytest.raises(UnsupportedMedia):
        probe_file(_file(tmp_path, "doctype.webm", good[:doc] + b"xyzw" + good[doc + 4:]), "webm")


def test_every_cut_of_a_known_size_file_is_truncated(webm_chunks, mp4_chunks, tmp_path) -> None:
    webm, mp4 = webm_chunks[2][0], mp4_chunks[2][0]
    for cut in range(1, len(webm), max(1, len(webm) // 150)):
        with pytest.raises(InvalidMedia):
            judge_matroska(ebml.read_matroska(_file(tmp_path, "cut.webm", webm[:cut])))
    boundaries = _top_level_box_ends(mp4)  # a cut between whole fragments leaves a valid, shorter file
    for cut in range(1, len(mp4), max(1, len(mp4) // 150)):
        if cut not in boundaries:
            with pytest.raises(InvalidMedia):
                judge_mp4(isobmff.read_mp4(_file(tmp_path, "cut.mp4", mp4[:cut])))


def _top_level_box_ends(data: bytes) -> set[int]:
    ends, pos = set(), 0
    while pos < len(data):
        pos += struct.unpack_from(">I", data, pos)[0]
        ends.add(pos)
    return ends


def test_what_the_walk_cannot_decide_goes_to_ffprobe(webm_chunks, tmp_path) -> None:
    chained = _file(tmp_path, "chained.webm", webm_chunks[0][0] + webm_chunks[1][0])
    with pytest.raises(ebml.Undecided):
        ebml.read_matroska(chained)
    result = probe_file(chained, "webm")  # ffprobe reads the first document
    assert result.checker == "ffprobe" and result.duration_ms == pytest.approx(1000, rel=0.05)
    trailing = _file(tmp_path, "trailing.webm", webm_chunks[0][0] + b"garbage!")
    with pytest.raises(InvalidMedia):
        probe_file(trailing, "webm")


# ---------------------------------------------------------------- fuzz: never crash

def _mutations(size: int):
    """(cut length, bit flips, an optional deleted span), biased towards the header bytes."""
    position = st.one_of(st.integers(0, min(size - 1, 800)), st.integers(0, size - 1))
    return st.tuples(st.integers(1, size), st.lists(st.tuples(position, st.integers(1, 255)), max_size=8),
                     st.one_of(st.none(), st.tuples(position, st.integers(1, 64))))


def _mutate(data: bytes, cut: int, flips: list[tuple[int, int]], hole: tuple[int, int] | None) -> bytes:
    out = bytearray(data)
    for pos, mask in flips:
        out[pos] ^= mask
    if hole:
        del out[hole[0]:hole[0] + hole[1]]
    return bytes(out[:cut]) or b"\x1a"


def _outcome(check, data: bytes) -> str:
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(data)
        f.flush()
        try:
            check(f.name)
            return "valid"
        except (InvalidMedia, UnsupportedMedia, ebml.Undecided, isobmff.Undecided) as exc:
            return type(exc).__name__


FUZZ = hsettings(max_examples=250, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.data())
def test_fuzzed_webm_never_crashes_the_walker(webm_chunks, data) -> None:
    good = webm_chunks[1][0]
    assert _outcome(lambda p: judge_matroska(ebml.read_matroska(p)), _mutate(good, *data.draw(_mutations(len(good)))))


@FUZZ
@given(st.data())
def test_fuzzed_mp4_never_crashes_the_walker(mp4_chunks, data) -> None:
    good = mp4_chunks[1][0]
    assert _outcome(lambda p: judge_mp4(isobmff.read_mp4(p)), _mutate(good, *data.draw(_mutations(len(good)))))


@FUZZ
@given(st.data())
def test_fuzzed_live_webm_never_crashes_the_walker(encoded, data) -> None:
    good = encoded["live.webm"].read_bytes()
    assert _outcome(lambda p: judge_matroska(ebml.read_matroska(p)), _mutate(good, *data.draw(_mutations(len(good)))))


def test_a_lone_frame_at_pts_zero_is_media_not_an_empty_file() -> None:
    """The bot closes a segment right after a key frame: one block at time 0 ends at 0.0 s."""
    from ingest.media import judge

    streams = [{"codec_type": "video", "codec_name": "vp8"}]
    assert judge("matroska,webm", streams, None, 0.0, "ebml", need_frames=True).streams == streams
    with pytest.raises(InvalidMedia):
        judge("matroska,webm", streams, None, None, "ebml", need_frames=True)  # no block at all
