"""TrackRecorder on encoded frames without a network: cuts, seqs, keyframe requests, files."""
from __future__ import annotations

import asyncio
from pathlib import Path

import av
import pytest

from bot.clock import ClockOffset
from bot.segments import SegmentPolicy
from bot.track import TrackInfo, TrackRecorder
from tests.bot.test_units import opus_packets, vp8_packets

T0 = 1_700_000_000.0


def _recorder(tmp_path: Path, kind: str, segment_ms: int = 1000):
    got, asks, seqs = [], [], iter(range(7, 100))
    rec = TrackRecorder(TrackInfo(f"p-{kind}", "p", kind, "candidate", "P"), tmp_path,
                        SegmentPolicy(segment_ms=segment_ms, keyframe_lead_ms=100), ClockOffset(),
                        lambda: next(seqs), got.append, lambda: asks.append(1))
    return rec, got, asks


def _frames(path: Path, kind: str) -> list:
    with av.open(str(path)) as c:
        return list(c.decode(**{kind: 0}))


def test_video_segments_start_on_keyframes_and_decode(tmp_path):
    packets = vp8_packets(90, keyframe_every=10)

    async def run():
        rec, got, asks = _recorder(tmp_path, "video")
        for i, data in enumerate(packets[1:], start=1):   # the stream's first key frame was lost
            rec.encoded("VP8", i * 3000, data, T0 + i / 30)
        await rec.close()
        return got, asks

    got, asks = asyncio.run(run())
    assert [s.seq for s in got] == [7, 8, 9]
    assert [s.duration_ms for s in got] == [1000, 1000, 667]     # frames 10-39, 40-69, 70-89
    assert len(asks) == 3                                        # at the start, then ~100 ms before each cut
    assert got[0].start_ms == round((T0 + 10 / 30 - 1 / 30) * 1000)  # arrival minus the one-frame hold
    assert got[1].start_ms - got[0].start_ms == 1000 and got[0].clock == "arrival"
    for seg, n in zip(got, (30, 30, 20)):
        frames = _frames(seg.path, "video")
        assert len(frames) == n and frames[0].key_frame and (frames[0].width, frames[0].height) == (64, 48)
        assert seg.content_type == "video/webm" and seg.size == seg.path.stat().st_size


def test_audio_segments_are_cut_on_time_and_after_a_timestamp_jump(tmp_path):
    packets = opus_packets(160)

    async def run():
        rec, got, _ = _recorder(tmp_path, "audio")
        for i, data in enumerate(packets[:120]):
            rec.encoded("opus", i * 960, data, T0 + i / 50)
        for i, data in enumerate(packets[120:]):                  # the sender restarted its stream
            rec.encoded("opus", 50 * 48_000 + i * 960, data, T0 + 60 + i / 50)
        await rec.close()
        return got

    got = asyncio.run(run())
    assert [s.duration_ms for s in got] == [1000, 1000, 400, 800]
    assert [s.seq for s in got] == [7, 8, 9, 10]
    assert got[1].start_ms - got[0].start_ms == 1000
    assert got[3].start_ms == round((T0 + 60 - 4 * 0.02) * 1000)  # re-anchored after the jump
    for seg in got:
        frames = _frames(seg.path, "audio")
        assert sum(f.samples for f in frames) == pytest.approx(seg.duration_ms * 48, abs=960)


def test_a_late_sender_report_does_not_seam_a_running_track(tmp_path):
    """Segment 1 is timed by arrival (no report yet); a report that disagrees by 90 ms
    arrives during segment 2: segment 2 still follows segment 1 by RTP time."""
    from tests.bot.test_units import _ntp

    packets = opus_packets(150)

    async def run():
        rec, got, _ = _recorder(tmp_path, "audio")
        rec.origin(0)
        for i, data in enumerate(packets):
            if i == 70:  # the sender's clock says each frame was sent 90 ms later than we think
                rec.sender_report(i * 960, _ntp(T0 + i / 50 + 0.09), arrival_s=T0 + i / 50 + 0.1)
            rec.encoded("opus", i * 960, data, T0 + i / 50)
        await rec.close()
        return got

    got = asyncio.run(run())
    assert [s.clock for s in got] == ["arrival"] * 3
    assert [b.start_ms - a.start_ms for a, b in zip(got, got[1:])] == [a.duration_ms for a in got[:-1]]
