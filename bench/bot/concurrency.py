"""Bot benchmark, concurrency: one step (`--bot N`) and its sender processes (`--sender`).

The run over N, the summary and the report are `bench.bot.capacity`'s.

Per step N a fresh bot process (`--bot N`) offers one `bot.peer.PeerLink` per participant,
exactly as a `RoomSession` does (encoded-frame tap → `TrackRecorder` → WebM segments, the
heartbeat / quality monitor of `bot.recovery` running over the links); no signaling or API
is involved (offer/answer go over pipes). The participants are aiortc peers in sender
processes (`--sender`, up to `PER_SENDER` each) sending the pre-encoded 640×360@30 VP8 +
Opus clip packet by packet, paced by its timestamps and looped, so they cost no codec.
Everything runs on this machine's 2 cores: senders and bot compete for them.

Measured in the bot process over a steady window (after every link delivers and a
warm-up): CPU (`getrusage`, all threads), RSS (VmRSS growth over the same process before
the first link, / N), video frames recorded vs. the real-time expectation, and how late
its event loop runs (a 50-ms probe). Then the senders stop and report the frames they
sent; the bot waits for what is in flight and counts what it recorded. Lost = sent −
recorded − 1 per participant (aiortc's jitter buffer holds each track's last frame until
a newer packet arrives, which after the stop never does).
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import resource
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

PER_SENDER = 6             # participants per sender process
LAG_PROBE_S = 0.05


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def udp_drops() -> int:
    """Datagrams the kernel dropped because a receiving socket's buffer was full (system-wide)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")]) if len(lines) == 2 else 0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---- sender process: many participants --------------------------------------------------
def load_packets(clip: str) -> dict[str, Any]:
    """The clip's packets per kind: (bytes, pts seconds), and its length (loop period)."""
    import av

    out: dict[str, list[tuple[bytes, float]]] = {"audio": [], "video": []}
    with av.open(clip) as c:
        for pkt in c.demux():
            if pkt.size and pkt.pts is not None:
                out[pkt.stream.type].append((bytes(pkt), float(pkt.pts * pkt.time_base)))
    period = max(t for kind in out.values() for _, t in kind) + 1 / 30
    return {"packets": out, "period": period}


def _packet_track(kind: str, packets: list[tuple[bytes, float]], period: float):
    import av
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError

    class PacketTrack(MediaStreamTrack):
        """Sends the clip's encoded packets in real time (looped); `halt()` ends it cleanly."""

        def __init__(self) -> None:
            super().__init__()
            self.kind, self.n, self.sent, self.t0, self.halted = kind, 0, 0, None, False

        def halt(self) -> None:
            self.halted = True

        async def recv(self):
            if self.halted:
                raise MediaStreamError
            data, t = packets[self.n % len(packets)]
            t += (self.n // len(packets)) * period
            self.t0 = self.t0 if self.t0 is not None else time.monotonic() - t
            wait = self.t0 + t - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            pkt = av.Packet(data)
            pkt.pts, pkt.time_base = round(t * 1000), Fraction(1, 1000)
            self.n += 1
            self.sent += 1
            return pkt

    return PacketTrack()



async def sender(clip: str) -> None:
    """One sender process: answers offers (`{"id", "sdp"}` lines on stdin), `stop`, `cpu`."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from bot.peer import restrict_ice_to_loopback

    restrict_ice_to_loopback()
    media = load_packets(clip)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pcs: dict[str, Any] = {}
    videos: dict[str, Any] = {}
    tracks: list[Any] = []
    while line := await reader.readline():
        msg = json.loads(line)
        if msg.get("cmd") == "stop":
            stopped = time.monotonic()
            for t in tracks:
                t.halt()
            await asyncio.sleep(0.2)
            _reply({"sent": {pid: v.sent for pid, v in videos.items()}, "stopped": stopped, "cpu_s": cpu_s()})
        elif msg.get("cmd") == "cpu":
            _reply({"cpu_s": cpu_s()})
        else:
            pc = pcs[msg["id"]] = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="offer"))
            for kind in ("audio", "video"):
                track = _packet_track(kind, media["packets"][kind], media["period"])
                tracks.append(track)
                pc.addTrack(track)
                if kind == "video":
                    videos[msg["id"]] = track
            await pc.setLocalDescription(await pc.createAnswer())
            _reply({"id": msg["id"], "sdp": pc.localDescription.sdp})
    await asyncio.gather(*(pc.close() for pc in pcs.values()), return_exceptions=True)


def _reply(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


# ---- bot process: one PeerLink per participant --------------------------------------------
class Arrivals:
    """Video frames recorded per participant (counted where the tap hands them to the recorder)."""

    def __init__(self) -> None:
        self.frames: dict[str, int] = {}
        self.last = 0.0

    def wrap(self, rec: Any) -> Any:
        pid, encoded = rec.info.participant_id, rec.encoded
        self.frames.setdefault(pid, 0)

        def counted(*args: Any) -> None:
            self.frames[pid] += 1
            self.last = time.monotonic()
            encoded(*args)

        rec.encoded = counted
        return rec

    def total(self) -> int:
        return sum(self.frames.values())


class SenderPipe:
    """One sender process and the replies it owes us, in order."""

    def __init__(self, proc: asyncio.subprocess.Process, links: dict[str, Any]) -> None:
        self.proc, self.links = proc, links
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        from signaling import protocol as p

        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            msg = json.loads(line)
            if "sdp" in msg:
                await self.links[msg["id"]].handle(p.Signal(to="bot", description={"type": "answer", "sdp": msg["sdp"]}))
            else:
                await self.replies.put(msg)

    async def ask(self, cmd: str) -> dict[str, Any]:
        self.send({"cmd": cmd})
        return await asyncio.wait_for(self.replies.get(), 30)

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())

    async def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self.task.cancel()


class LagProbe:
    """How late the event loop wakes up (ms), sampled every `LAG_PROBE_S`."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(LAG_PROBE_S)
            self.lags.append(max(0.0, (time.monotonic() - t - LAG_PROBE_S) * 1000))

    def p95(self) -> float:
        lags = sorted(self.lags)
        return lags[min(len(lags) - 1, int(0.95 * len(lags)))] if lags else 0.0


async def _open_links(n: int, clip: str, work: Path, arrivals: Arrivals) -> tuple[dict[str, Any], list[SenderPipe]]:
    from bot.peer import PeerLink
    from bot.segments import SegmentPolicy
    from bot.track import TrackInfo, TrackRecorder

    policy, seqs = SegmentPolicy(segment_ms=10_000), iter(range(1_000_000))

    def recorder(pid: str, kind: str, offset: Any, ask: Any) -> TrackRecorder:
        rec = TrackRecorder(TrackInfo(f"{pid}-{kind}", pid, kind, "candidate", pid), work / pid, policy, offset,
                            lambda: next(seqs), lambda seg: seg.path.unlink(missing_ok=True), ask)
        return arrivals.wrap(rec) if kind == "video" else rec

    links: dict[str, Any] = {}
    pipes = []
    for i in range(math.ceil(n / PER_SENDER)):
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.bot.concurrency", "--sender", clip,
                                                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        pipes.append(SenderPipe(proc, links))
    for i in range(n):
        pid, pipe = f"p{i:02d}", pipes[i // PER_SENDER]

        async def send(msg: Any, pid: str = pid, pipe: SenderPipe = pipe) -> None:
            if msg.description is not None:
                pipe.send({"id": pid, "sdp": msg.description["sdp"]})

        links[pid] = PeerLink(pid, [], send, recorder)
        await links[pid].offer()
    return links, pipes


async def _settle(arrivals: Arrivals, quiet_s: float = 1.0, limit_s: float = 30.0) -> None:
    """Until no frame has arrived for `quiet_s` (what was in flight is in)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and time.monotonic() - arrivals.last < quiet_s:
        await asyncio.sleep(0.1)


async def bot(n: int, clip: str, seconds: float) -> dict[str, Any]:
    from bot.monitor import MonitorConfig
    from bot.peer import restrict_ice_to_loopback
    from bot.recovery import Recovery
    from core.logging import configure_logging

    configure_logging("WARNING", False)
    restrict_ice_to_loopback()
    work = Path(tempfile.mkdtemp(prefix=f"bench-bot-n{n}-"))
    arrivals, rss0, drops0 = Arrivals(), rss_mb(), udp_drops()
    links, pipes = await _open_links(n, clip, work, arrivals)

    async def nothing(*_: Any) -> None:
        return None

    recovery = Recovery(MonitorConfig(), lambda: links, lambda _: True, nothing, lambda: True, nothing)
    recovery.start()
    async with asyncio.timeout(60 + 5 * n):
        while len([f for f in arrivals.frames.values() if f]) < n:
            await asyncio.sleep(0.05)
    await asyncio.sleep(2.0)  # warm-up: every link delivering, first segments open
    probe = LagProbe()
    s0 = sum([(await pipe.ask("cpu"))["cpu_s"] for pipe in pipes])
    c0, t0, f0 = cpu_s(), time.monotonic(), arrivals.total()
    await asyncio.sleep(seconds)
    c1, t1, f1, rss1 = cpu_s(), time.monotonic(), arrivals.total(), rss_mb()
    threads = len(os.listdir("/proc/self/task"))
    s1 = sum([(await pipe.ask("cpu"))["cpu_s"] for pipe in pipes])
    probe.task.cancel()
    stops = [await pipe.ask("stop") for pipe in pipes]
    await _settle(arrivals)
    sent = sum(v for s in stops for v in s["sent"].values())
    drain_s = max(0.0, arrivals.last - max(s["stopped"] for s in stops))
    recorded = arrivals.total()
    await recovery.stop()
    await asyncio.gather(*(link.close() for link in links.values()), return_exceptions=True)
    for pipe in pipes:
        await pipe.close()
    wall, media_s = t1 - t0, (f1 - f0) / 30
    return {"n": n, "seconds": round(wall, 2), "media_s": round(media_s, 2),
            "realtime": round(media_s / (n * wall), 4),
            "cpu_s": round(c1 - c0, 3), "cpu_per_media_s": round((c1 - c0) / media_s, 4) if media_s else None,
            "sender_cpu_per_media_s": round((s1 - s0) / media_s, 4) if media_s else None,
            "rss0_mb": round(rss0, 1), "rss_mb": round(rss1, 1), "rss_per_participant_mb": round((rss1 - rss0) / n, 2),
            "sent": sent, "recorded": recorded, "lost": max(0, sent - recorded - n), "drain_s": round(drain_s, 2),
            "udp_drops": udp_drops() - drops0, "lag_p95_ms": round(probe.p95(), 1), "lag_max_ms": round(max(probe.lags, default=0.0), 1),
            "threads": threads}


def main(argv: list[str]) -> None:
    if argv[0] == "--sender":
        asyncio.run(sender(argv[1]))
        return
    n, clip, seconds = int(argv[1]), argv[3], float(argv[5])
    print(json.dumps(asyncio.run(bot(n, clip, seconds))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
