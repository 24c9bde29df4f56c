"""Bot benchmark: receiver CPU per media-second, by recording path; then participants per process.

    python -m bench.bot            # 30 s of 640×360@30 VP8 + Opus per path, then the concurrency run
    python -m bench.bot --quick    # 10 s per path, concurrency N ≤ 8 (BENCH_QUICK=1 is --quick)
    python -m bench.bot --concurrency-only [--steps 1,2,4,8,16,24,32]

A sender process plays an `av_clip` (640×360, 30 fps, VP8 + Opus, key frame every second)
with aiortc's MediaPlayer(decode=False), so it sends the file's packets without encoding
and costs the receiver nothing. A fresh receiver process per path takes the call
(offer/answer over pipes, ICE on 127.0.0.1) and records; its own CPU time
(`getrusage`, all threads: SRTP, jitter buffer, decode/encode, muxing) is divided by the
media seconds received. Paths:

- `mediarecorder` — baseline: aiortc's MediaRecorder to WebM (decode + re-encode);
- `decode` — decode only, frames dropped (what any decoded-frame path pays at least);
- `transcode` — the bot's fallback (`TrackRecorder` on decoded frames → VP8/Opus WebM);
- `remux` — the bot's encoded-frame tap (`TrackRecorder` + `bot.tap` → WebM, no codec).

The concurrency run (`bench.bot.capacity`) records N participants at once in one bot
process and derives the admission cap (`RECORDER_BOT_MAX_PARTICIPANTS`) from its cost.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from bench.results import emit

RESULTS = Path(__file__).with_name("RESULTS.md")
CACHE = Path(tempfile.gettempdir()) / "recorder-bench-bot"
MODES = ("mediarecorder", "decode", "transcode", "remux")


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _lines(stream: asyncio.StreamReader) -> dict:
    return json.loads(await stream.readline())


# ---- sender process ------------------------------------------------------------------
async def sender(clip: str) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaPlayer

    from bot.peer import restrict_ice_to_loopback

    restrict_ice_to_loopback()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    offer = await _lines(reader)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    player = MediaPlayer(clip, decode=False)
    await pc.setRemoteDescription(RTCSessionDescription(**offer))
    for track in (player.audio, player.video):
        pc.addTrack(track)
    await pc.setLocalDescription(await pc.createAnswer())
    print(json.dumps({"type": pc.localDescription.type, "sdp": pc.localDescription.sdp}), flush=True)
    await reader.readline()  # the receiver closes stdin when done
    await pc.close()


# ---- receiver process -----------------------------------------------------------------
class Counter:
    def __init__(self) -> None:
        self.first: float | None = None
        self.last = 0.0
        self.frames = 0

    def tick(self) -> None:
        now = time.monotonic()
        self.first = self.first or now
        self.last, self.frames = now, self.frames + 1


def _recorder(mode: str, kind: str, work: Path, counter: Counter, segments: list):
    from bot.clock import ClockOffset
    from bot.segments import SegmentPolicy
    from bot.track import TrackInfo, TrackRecorder

    seqs = iter(range(10_000))
    rec = TrackRecorder(TrackInfo(f"p-{kind}", "p", kind, "candidate", "P"), work, SegmentPolicy(segment_ms=10_000),
                        ClockOffset(), lambda: next(seqs), segments.append, lambda: None)
    if kind == "video":  # count frames on their way in, whichever path
        encoded, decoded = rec.encoded, rec.decoded
        rec.encoded = lambda *a: (counter.tick(), encoded(*a))[1]  # type: ignore[method-assign]
        rec.decoded = lambda *a: (counter.tick(), decoded(*a))[1]  # type: ignore[method-assign]
    return rec


async def receiver(mode: str, clip: str, seconds: float) -> dict:
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaRecorder
    from aiortc.mediastreams import MediaStreamError

    from bot import tap
    from bot.peer import ice_configuration, preferred_codecs, restrict_ice_to_loopback

    restrict_ice_to_loopback()
    work = Path(tempfile.mkdtemp(prefix=f"bench-bot-{mode}-"))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.bot.run", "--sender", clip,
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    pc = RTCPeerConnection(ice_configuration([]))
    counter, arrived, segments, recorders, tasks = Counter(), Counter(), [], [], []
    media_recorder = MediaRecorder(str(work / "out.webm")) if mode == "mediarecorder" else None

    async def drain(track) -> None:
        try:
            while True:
                await track.recv()
                if track.kind == "video":
                    counter.tick()
        except MediaStreamError:
            pass

    def on_track(track) -> None:
        receiver_ = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
        if media_recorder is not None:
            media_recorder.addTrack(track)
            if track.kind == "video":
                tasks.append(asyncio.ensure_future(_count_via_stats(track, counter)))
        elif mode == "decode":
            tasks.append(asyncio.ensure_future(drain(track)))
        else:
            rec = _recorder(mode, track.kind, work, counter, segments)
            recorders.append(rec)
            if mode == "remux":
                assert tap.install(receiver_, rec), "tap unavailable"
            tasks.append(asyncio.ensure_future(rec.consume(track)))
        if track.kind == "video":  # count frames leaving the jitter buffer (bench only: aiortc internals)
            queue = receiver_._RTCRtpReceiver__decoder_queue
            put = queue.put
            queue.put = lambda item, *a, **k: (item is not None and arrived.tick(), put(item, *a, **k))[1]

    def received_frames() -> int:
        """Video frames out of the jitter buffer, whatever the path did with them."""
        return arrived.frames

    pc.on("track", on_track)
    for kind in ("audio", "video"):
        pc.addTransceiver(kind, direction="recvonly").setCodecPreferences(preferred_codecs(kind))
    await pc.setLocalDescription(await pc.createOffer())
    proc.stdin.write((json.dumps({"type": "offer", "sdp": pc.localDescription.sdp}) + "\n").encode())
    await proc.stdin.drain()
    await pc.setRemoteDescription(RTCSessionDescription(**await _lines(proc.stdout)))
    if media_recorder is not None:
        await media_recorder.start()
    async with asyncio.timeout(60):
        while counter.first is None:
            await asyncio.sleep(0.01)
    await asyncio.sleep(1.0)  # warm-up: ICE/DTLS done, decoders open
    c0, t0, f0, r0 = cpu_s(), time.monotonic(), counter.frames, received_frames()
    await asyncio.sleep(seconds)
    frames, dropped = counter.frames - f0, sum(r.dropped for r in recorders)
    received = (received_frames() - r0) / 30
    await pc.close()                       # no more input; then finish what was taken in
    for rec in recorders:
        await rec.close()
    if media_recorder is not None:
        await media_recorder.stop()
    cpu, wall = cpu_s() - c0, time.monotonic() - t0
    proc.stdin.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await proc.wait()
    media_s = (frames - dropped) / 30
    return {"mode": mode, "received_s": round(received, 2), "media_s": round(media_s, 2), "dropped_s": round(dropped / 30, 2), "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 3), "cpu_per_media_s": round(cpu / media_s, 4) if media_s else None,
            "segments": len(segments)}


async def _count_via_stats(track, counter: Counter) -> None:
    """MediaRecorder consumes the track itself: count its frames by wrapping recv."""
    original = track.recv

    async def recv():
        frame = await original()
        counter.tick()
        return frame

    track.recv = recv


# ---- orchestration --------------------------------------------------------------------
def make_clip(seconds: float) -> Path:
    from recorder.synth import av_clip

    path = CACHE / f"clip-640x360-{int(seconds)}s.webm"
    if not path.exists():
        av_clip(path, seconds, size=(640, 360), fps=30, beeps_s=[1.0], flashes_s=[1.0], label="bench")
    return path


def run_mode(mode: str, clip: Path, seconds: float) -> dict:
    import subprocess

    cmd = [sys.executable, "-m", "bench.bot.run", "--receiver", mode, "--clip", str(clip), "--seconds", str(seconds)]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=seconds * 4 + 120,
                         env={**os.environ, "RECORDER_LOG_LEVEL": "WARNING"})
    if out.returncode != 0:
        raise RuntimeError(f"{mode} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_results(rows: list[dict], seconds: float) -> str:
    base = next(r for r in rows if r["mode"] == "mediarecorder")["cpu_per_media_s"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        "# Bot benchmark: receiver CPU per media-second", "",
        (f"`python -m bench.bot` — {time.strftime('%Y-%m-%d %H:%M')}, {seconds:.0f} s per path of 640×360@30 VP8 + "
         f"Opus sent pre-encoded over loopback; load average at the end {load} (2 shared cores)."), "",
        ("| path | media s received | recorded | dropped | receiver CPU s | CPU s per recorded media s | vs. "
         "MediaRecorder |"), "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = r["cpu_per_media_s"] / base if base else float("nan")
        if r["mode"] != "mediarecorder":
            emit("bot", f"receiver CPU per media-s, {r['mode']} vs aiortc MediaRecorder", r["cpu_per_media_s"], base,
                 unit="CPU-s")
        lines.append(f"| {r['mode']} | {r['received_s']:.1f} | {r['media_s']:.1f} | {r['dropped_s']:.1f} | "
                     f"{r['cpu_s']:.2f} | {r['cpu_per_media_s']:.3f} | {ratio:.2f}× |")
    lines += ["", ("CPU is the receiving process only (all its threads: ICE/DTLS/SRTP, jitter buffer, codecs, "
              "muxing), measured with `getrusage` from 1 s after the first frame until everything taken in is "
              "written. \"media s recorded\" counts video frames actually recorded (MediaRecorder consumes "
              "frames more slowly than real time when it cannot keep up; the bot's fallback drops them instead "
              "of queueing without bound). `remux` is what `recorder bot` runs; `transcode` is its fallback "
              "when the encoded-frame tap is unavailable."), ""]
    text = "\n".join(lines)
    from bench.bot.capacity import SECTION

    old = RESULTS.read_text() if RESULTS.exists() else ""
    RESULTS.write_text(text + ("\n" + SECTION + old.split(SECTION, 1)[1] if SECTION in old else ""))
    return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK", "") not in ("", "0"),
                    help="10 s per path; concurrency steps 1, 2, 4, 8 of 6 s")
    ap.add_argument("--seconds", type=float, default=None, help="per path")
    ap.add_argument("--concurrency-only", action="store_true", help="skip the per-path run")
    ap.add_argument("--no-concurrency", action="store_true", help="skip the concurrency run")
    ap.add_argument("--steps", type=lambda v: tuple(int(x) for x in v.split(",")), default=None,
                    help="concurrency steps, e.g. 1,2,4,8,16 (N=1 is always run: the baseline)")
    ap.add_argument("--step-seconds", type=float, default=None, help="measured seconds per concurrency step")
    ap.add_argument("--sender", metavar="CLIP", help=argparse.SUPPRESS)
    ap.add_argument("--receiver", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--clip", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.sender:
        asyncio.run(sender(args.sender))
        return
    if args.receiver:
        print(json.dumps(asyncio.run(receiver(args.receiver, args.clip, args.seconds))), flush=True)
        return
    seconds = args.seconds or (10.0 if args.quick else 30.0)
    clip = make_clip(seconds + 15)
    if not args.concurrency_only:
        rows = []
        for mode in MODES:
            rows.append(run_mode(mode, clip, seconds))
            print(json.dumps(rows[-1]), flush=True)
        print(write_results(rows, seconds))
    if not args.no_concurrency:
        from bench.bot import capacity

        print(capacity.run(args.quick, args.step_seconds, args.steps, clip, RESULTS))


if __name__ == "__main__":
    main()
