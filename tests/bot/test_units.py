"""Pure parts of the bot: bitstream facts, clocks, cut policy, ids, events, errors, spool."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from bot.api import error_for
from bot.bitstream import opus_samples, vp8_keyframe, vp8_size
from bot.clock import ClockOffset, StreamClock, ntp_to_epoch_s, unwrap32
from bot.segments import ClosedSegment, SegmentPolicy, frame_duration, track_id_for
from bot.service import live_rooms
from core import errors
from core.keys import check_id


def vp8_packets(n: int, size=(64, 48), keyframe_every: int = 0) -> list[bytes]:
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = size[0], size[1], "yuv420p"
    enc.time_base = Fraction(1, 30)
    enc.options = {"deadline": "realtime", "lag-in-frames": "0"}
    out = []
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), (i * 7) % 255, np.uint8), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        if keyframe_every and i % keyframe_every == 0:
            frame.pict_type = av.video.frame.PictureType.I
        out += [bytes(p) for p in enc.encode(frame)]
    return out + [bytes(p) for p in enc.encode(None)]


def opus_packets(n: int) -> list[bytes]:
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format = 48000, "mono", "s16"
    out = []
    for i in range(n):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48000, i * 960
        out += [bytes(p) for p in enc.encode(frame)]
    return out


def test_vp8_keyframes_and_size_are_read_from_the_frame_header():
    packets = vp8_packets(3)
    assert vp8_keyframe(packets[0]) and vp8_size(packets[0]) == (64, 48)
    assert not vp8_keyframe(packets[1]) and vp8_size(packets[1]) is None
    assert not vp8_keyframe(b"") and not vp8_keyframe(b"\x00\x01")


def test_opus_packet_lengths_from_the_toc_byte():
    assert {opus_samples(p) for p in opus_packets(5)} == {960}
    assert opus_samples(bytes([(31 << 3) | 0])) == 960          # CELT 20 ms, one frame
    assert opus_samples(bytes([(16 << 3) | 1])) == 240          # CELT 2.5 ms, two frames
    assert opus_samples(bytes([(3 << 3) | 3, 2])) == 5760       # SILK 60 ms × 2 (code 3)
    assert opus_samples(bytes([(3 << 3) | 3, 3])) == 0          # 180 ms: over the limit → malformed
    assert opus_samples(b"") == 0 and opus_samples(bytes([3])) == 0


def test_ntp_and_32_bit_unwrapping():
    assert ntp_to_epoch_s((2_208_988_800 + 10) << 32 | (1 << 31)) == 10.5
    assert unwrap32(5, near=(1 << 32) - 10) == (1 << 32) + 5       # just past the wrap
    assert unwrap32((1 << 32) - 5, near=3) == -5                    # just before the origin
    assert unwrap32(1000, near=900) == 1000


def _ntp(epoch_s: float) -> int:
    return int((epoch_s + 2_208_988_800) * (1 << 32))


def test_stream_clock_maps_through_the_earliest_report_plus_the_frozen_offset():
    offset = ClockOffset()
    clock = StreamClock(90_000, offset)
    clock.sender_report(123, _ntp(1000.0), arrival_s=1000.5)       # before the origin: ignored
    assert clock.wall_s(0) is None
    clock.origin = (1 << 32) - 90_000                               # the stream wraps 1 s in
    clock.frame(2 * 90_000)
    clock.sender_report(90_000, _ntp(1002.0), arrival_s=1002.30)    # raw ts wrapped: ext 180000
    clock.sender_report(2 * 90_000, _ntp(1003.05), arrival_s=1003.25)  # late stamp; smaller offset
    assert offset.estimate_s == pytest.approx(0.20)
    assert clock.wall_s(0) == pytest.approx(1000.0 + 0.20)          # earliest report wins
    offset.observe(1004.0, 1003.99)                                 # frozen after first use
    assert offset.estimate_s == pytest.approx(0.20)
    clock.reset()
    assert clock.wall_s(0) is None


def test_arrival_anchor_takes_the_fastest_frame_then_freezes():
    clock = StreamClock(48_000, ClockOffset())
    clock.frame(0, arrival_s=100.10, hold_s=0.08)
    clock.frame(960, arrival_s=100.11, hold_s=0.08)                 # 20 ms later media, 10 ms later arrival
    assert clock.arrival_s(48_000) == pytest.approx(1.0 + 100.11 - 0.08 - 0.02)
    clock.frame(1920, arrival_s=50.0)                               # frozen: ignored
    assert clock.arrival_s(0) == pytest.approx(100.01)


def test_segment_policy_cuts_audio_anywhere_and_video_on_keyframes_near_the_end():
    pol = SegmentPolicy(segment_ms=2000, keyframe_lead_ms=150, keyframe_retry_ms=1000)
    assert pol.cut_due("audio", 2000, False) and not pol.cut_due("audio", 1999, False)
    assert not pol.cut_due("video", 1849, True) and pol.cut_due("video", 1850, True)
    assert not pol.cut_due("video", 5000, False)                    # never on a delta frame
    assert not pol.keyframe_due(1800, None) and pol.keyframe_due(1850, None)
    assert not pol.keyframe_due(2500, 999) and pol.keyframe_due(2500, 1000)
    assert frame_duration(None, 10, 3000) == 3000 and frame_duration(10, 10, 3000) == 3000
    assert frame_duration(0, 2970, 3000) == 2970


@pytest.mark.parametrize("pid", ["cand-1", "a:b", "..x..", "_", "é" * 10, "x" * 128])
def test_track_ids_are_valid_object_key_parts(pid):
    for kind in ("audio", "video"):
        tid = track_id_for(pid, kind)
        assert check_id(tid, "track") == tid and tid.endswith(f"-{kind}")
    assert track_id_for("cand-1", "video") == "cand-1-video"


def test_live_rooms_come_from_the_latest_event_of_each_room():
    ev = [{"room_id": "r1", "org": "o", "to": "created", "record": True},
          {"room_id": "r1", "org": "o", "to": "active", "record": True},
          {"room_id": "r2", "org": "o", "to": "active", "record": True},
          {"room_id": "r2", "org": "o", "to": "ended", "record": True},
          {"room_id": "r3", "org": "p", "to": "orphaned", "record": True},
          {"room_id": "r4", "org": "o", "to": "active", "record": False}]
    assert live_rooms(ev) == {"r1": "o", "r3": "p"}


def test_http_errors_become_our_errors_with_retry_after():
    e = error_for(429, {"code": "rate_limited", "message": "slow down"}, "3")
    assert isinstance(e, errors.RateLimited) and e.retryable and e.details["retry_after_s"] == 3.0
    e = error_for(503, {"code": "storage_unavailable"}, None)
    assert isinstance(e, errors.DependencyDown) and e.retryable and "retry_after_s" not in e.details
    e = error_for(409, {"code": "chunk_conflict"}, None)
    assert isinstance(e, errors.Conflict) and not e.retryable and e.code == "chunk_conflict"
    assert isinstance(error_for(422, {"code": "invalid_media"}, None), errors.InvalidMedia)
    assert isinstance(error_for(422, {"code": "room_ended"}, None), errors.InvalidState)
    assert isinstance(error_for(404, {}, "soon"), errors.NotFound)


def test_spool_keeps_closed_segments_and_drops_incomplete_ones(tmp_path: Path):
    from bot import spool
    from bot.track import TrackInfo

    info = TrackInfo("cand-1-audio", "cand-1", "audio", "candidate", "Zoë")
    seg = ClosedSegment(track_id=info.track_id, seq=4, path=tmp_path / "cand-1-audio.000004.webm", start_ms=1,
                        duration_ms=2000, sha256="0" * 64, size=3, content_type="audio/webm", clock="rtcp_sr")
    seg.path.write_bytes(b"abc")
    spool.save(info, seg)
    (tmp_path / "cand-1-audio.000005.webm").write_bytes(b"open")     # no sidecar: was still open
    assert spool.leftovers(tmp_path) == [(info, seg)]
    assert not (tmp_path / "cand-1-audio.000005.webm").exists()
    spool.discard(seg)
    assert spool.leftovers(tmp_path) == [] and list(tmp_path.iterdir()) == []
