"""Pure parts of quality and recovery: stats → sample, frozen detection, the recovery ladder on a
fake clock, absences, the outbox, the jitter-buffer skip, and a track's cut at a media hole."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot import tap
from bot.clock import ClockOffset
from bot.ladder import Ladder, LadderConfig, Step
from bot.outbox import QualityOutbox
from bot.quality import Absences, Counters, GapReport, TrackRef, frozen, sample
from bot.segments import SegmentPolicy
from bot.track import TrackInfo, TrackRecorder
from core import errors
from tests.bot.test_units import opus_packets, vp8_packets

T0 = 1_700_000_000.0


def _c(at: float, packets: int = 0, lost: int = 0, jitter: int | None = 0, bytes_: int = 0, frames: int = 0,
       size=None, rate: int = 90_000) -> Counters:
    return Counters(T0 + at, packets, lost, jitter, rate, bytes_, frames, size)


# ---------------------------------------------------------------- samples

def test_sample_from_two_readings() -> None:
    video = TrackRef("cand", "cand-video", "video")
    s = sample(video, _c(0, 100, 2, 0, 10_000, 30, (640, 360)),
               _c(5, 250, 7, 900, 322_500, 180, (640, 360)), connected=True, warm=True, rtt_ms=23.456)
    assert s is not None and s.at_ms == round(T0 * 1000) and s.window_ms == 5000
    assert (s.packets, s.lost, s.jitter_ms, s.rtt_ms) == (150, 5, 10.0, 23.46)   # 900 ticks at 90 kHz = 10 ms
    assert (s.bitrate_kbps, s.fps, s.width, s.height, s.frozen) == (500.0, 30.0, 640, 360, False)
    audio = sample(TrackRef("cand", "cand-audio", "audio"), _c(0, 0, rate=48_000), _c(5, 250, 0, 48, 20_000, 250,
                                                                                         rate=48_000),
                   connected=True, warm=True)
    assert audio.jitter_ms == 1.0 and audio.fps is None and audio.width is None and audio.bitrate_kbps == 32.0
    assert "rtt_ms" not in audio.to_json() and audio.to_json()["packets"] == 250
    assert sample(video, _c(5), _c(5), connected=True, warm=True) is None          # an empty window


def test_frozen_means_connected_and_nothing_moved() -> None:
    before, same = _c(0, 100, bytes_=5000, frames=30), _c(5, 100, bytes_=5000, frames=30)
    assert frozen(before, same, connected=True, warm=True)
    assert not frozen(before, same, connected=False, warm=True)          # a closed link is missing, not frozen
    assert not frozen(before, _c(5, 101, bytes_=5000, frames=30), connected=True, warm=True)
    assert not frozen(before, _c(5, 100, bytes_=5100, frames=30), connected=True, warm=True)
    assert frozen(before, same, connected=True, warm=False)              # it had media: warm-up is over for it
    assert not frozen(_c(0), _c(5), connected=True, warm=False)          # never sent anything, still warming up
    assert sample(TrackRef("p", "p-video", "video"), before, same, connected=True, warm=True).frozen


# ---------------------------------------------------------------- the ladder (fake clock)

def _climb(ladder: Ladder, beats: list[tuple[float, bool, bool]]) -> list[tuple[float, Step]]:
    out = []
    for now, healthy, socket_up in beats:
        out += [(now, step) for step in ladder.tick(now, healthy, socket_up)]
    return out


def test_ladder_climbs_problem_ice_restart_renegotiate_then_recovers() -> None:
    cfg = LadderConfig()
    ladder = Ladder(cfg, started_s=0.0)
    beats = [(t * 2.5, t * 2.5 < 10 or t * 2.5 > 35, True) for t in range(1, 17)]   # bad from 10 s to 35 s
    steps = _climb(ladder, beats)
    # first bad beat at 10 s, the second (12.5 s) declares the problem; the first beats past +9 s and
    # +18 s restart ICE and renegotiate
    assert steps == [(12.5, Step.PROBLEM), (22.5, Step.ICE_RESTART), (32.5, Step.RENEGOTIATE),
                     (37.5, Step.RECOVERED)]
    assert not ladder.in_trouble and ladder.taken == set()


def test_ladder_debounces_one_bad_beat_and_ignores_the_warm_up() -> None:
    ladder = Ladder(LadderConfig(), started_s=0.0)
    assert _climb(ladder, [(2.5, False, True), (5.0, False, True), (7.5, False, True)]) == []   # warming up
    assert _climb(ladder, [(10.0, False, True), (12.5, True, True), (15.0, False, True), (17.5, True, True)]) == []


def test_ladder_waits_while_the_socket_is_down_and_rejoins_after_60_s() -> None:
    cfg = LadderConfig(warmup_s=0)
    ladder = Ladder(cfg, started_s=0.0)
    beats = [(2.5 * t, False, t < 4) for t in range(1, 30)]                  # socket down from 10 s on
    steps = _climb(ladder, beats)
    assert steps[0] == (5.0, Step.PROBLEM)
    assert (10.0, Step.WAIT_SOCKET) in steps and (70.0, Step.REJOIN) in steps
    assert Step.ICE_RESTART not in [s for _, s in steps] and Step.RENEGOTIATE not in [s for _, s in steps]
    # the socket is back at 72.5 s: the recovery clock restarts there (ICE restart at +9, new offer at +18)
    later = _climb(ladder, [(72.5 + 2.5 * t, False, True) for t in range(9)])
    assert later == [(82.5, Step.ICE_RESTART), (92.5, Step.RENEGOTIATE)]


def test_a_failed_connection_goes_straight_to_renegotiation() -> None:
    ladder = Ladder(LadderConfig(), started_s=0.0)
    assert ladder.tick(1.0, False, True, failed=True) == [Step.PROBLEM, Step.RENEGOTIATE]
    assert ladder.tick(3.5, False, True, failed=True) == []


def test_ladder_config_is_checked_at_start() -> None:
    with pytest.raises(ValueError, match="ice_restart_s < renegotiate_s"):
        LadderConfig(ice_restart_s=20, renegotiate_s=18)
    with pytest.raises(ValueError):
        LadderConfig(bad_ticks=0)


# ---------------------------------------------------------------- absences and the outbox

def test_absences_open_switch_and_close() -> None:
    a = Absences()
    assert a.start("p", "network", 10.0) is None
    assert a.start("p", "network", 12.0) is None and a.since("p") == 10.0      # the earlier start stays
    assert a.start("p", "participant_left", 15.0) == GapReport("p", "network", 10.0, 15.0)
    assert a.end("p", 30.0) == GapReport("p", "participant_left", 15.0, 30.0)
    assert a.end("p", 31.0) is None
    a.start("q", "bot_restart", 5.0)
    a.start("r", "network", 5.0)
    assert a.end("q", 4.0) is None                                             # nothing missing after all
    a.start("q", "bot_restart", 5.0)
    assert a.close_all(9.0, keep=("network",)) == [GapReport("r", "network", 5.0, 9.0)] and not a.open
    assert GapReport("p", "network", 1.5, 2.25).to_json() == {"participant_id": "p", "cause": "network",
                                                               "start_ms": 1500, "end_ms": 2250}


def test_outbox_batches_keeps_transient_failures_and_drops_refusals() -> None:
    from bot.quality import Sample

    posted, fail = [], []

    async def post(samples, gaps):
        if fail:
            raise fail.pop(0)
        posted.append((len(samples), len(gaps)))

    def s(i: int) -> Sample:
        return Sample("p", "p-audio", i, 5000, 1, 0, None, None, None, None, None, None, False)

    async def run():
        box = QualityOutbox(post)
        fail.append(errors.DependencyDown("api down"))
        box.add([s(i) for i in range(700)], GapReport("p", "network", 1, 2))
        await box.task
        assert posted == [] and len(box.samples) == 700 and len(box.gaps) == 1    # kept for later
        fail.append(errors.InvalidInput("bad", code="bad_request"))
        box.kick()
        await box.task
        await box.drain(5)
        return box

    box = asyncio.run(run())
    assert posted == [(200, 0)] and box.dropped == 501 and box.posted == 200    # first batch refused: dropped


# ---------------------------------------------------------------- aiortc's jitter buffer

def test_skip_lost_releases_frames_held_behind_a_hole() -> None:
    from aiortc.jitterbuffer import JitterBuffer
    from aiortc.rtp import RtpPacket

    class Receiver:
        pass

    receiver = Receiver()
    jb = JitterBuffer(capacity=64, is_video=True)
    setattr(receiver, tap._JITTER, jb)

    def packet(seq: int) -> RtpPacket:
        p = RtpPacket(sequence_number=seq, timestamp=seq * 3000)
        p._data = bytes([seq])  # type: ignore[attr-defined]
        return p

    out = [jb.add(packet(seq))[1] for seq in range(5)]
    assert sum(f is not None for f in out) == 4                     # each frame leaves when the next begins
    held = [jb.add(packet(seq))[1] for seq in range(30, 40)]        # 25 packets lost in a cut
    assert all(f is None for f in held)                             # ... and everything after waits for them
    assert tap.skip_lost(receiver) == 25
    assert jb.add(packet(40))[1] is not None                        # frames flow again
    assert tap.skip_lost(receiver) == 0 and tap.skip_lost(Receiver()) == 0


# ---------------------------------------------------------------- a track's cut at a hole

def _recorder(tmp_path: Path, kind: str):
    got, asks, seqs = [], [], iter(range(100))
    rec = TrackRecorder(TrackInfo(f"p-{kind}", "p", kind, "candidate", "P"), tmp_path,
                        SegmentPolicy(segment_ms=10_000, stall_ms=1500), ClockOffset(), lambda: next(seqs),
                        got.append, lambda: asks.append(1))
    return rec, got, asks


def test_a_hole_in_audio_closes_the_segment_and_the_next_is_placed_by_rtp_time(tmp_path) -> None:
    packets = opus_packets(150)

    async def run():
        rec, got, _ = _recorder(tmp_path, "audio")
        for i, data in enumerate(packets):
            ts = i * 960 + (3 * 48_000 if i >= 50 else 0)             # 3 s missing after 1 s
            arrival = T0 + ts / 48_000 + (2.0 if i >= 50 else 0)     # ... and they arrived late, in a burst
            rec.encoded("opus", ts, data, arrival)
        await rec.close()
        return rec, got

    rec, got = asyncio.run(run())
    assert [s.seq for s in got] == [0, 1] and got[0].duration_ms == 1000 and got[1].duration_ms == 2000
    assert got[1].start_ms - got[0].start_ms == 4000                 # RTP time, not the late arrival
    assert rec.frames == 150 and rec.bytes == sum(map(len, packets))
    assert rec.resumed_s == pytest.approx(T0 + 4 + 2.0)               # media came back (our clock)


def test_a_hole_in_video_waits_for_a_key_frame_and_keeps_frame_durations_short(tmp_path) -> None:
    packets = vp8_packets(120, keyframe_every=30)

    async def run():
        rec, got, asks = _recorder(tmp_path, "video")
        for i, data in enumerate(packets):
            if 20 <= i < 70:
                continue                                             # lost: frames 20-69 (key frames 30, 60)
            rec.encoded("VP8", i * 3000, data, T0 + i / 30)
        await rec.close()
        return got, asks

    got, asks = asyncio.run(run())
    assert [s.seq for s in got] == [0, 1]
    assert got[0].duration_ms == 667                                  # frames 0-19
    assert got[1].start_ms - got[0].start_ms == 3000 and got[1].duration_ms == 1000   # from key frame 90
    assert len(asks) >= 1                                             # a key frame was asked for at the hole
