"""Bot test harness: participants that answer the bot, the bot in-process or as `recorder bot`.

Participants are real aiortc peers (`tests.signaling.peers.RtcPeer`) talking through the
real signaling server; each answers every offer on a fresh peer connection, as a
browser client must when the (hidden) recorder re-offers after a restart.
"""
from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import structlog

from core.settings import Settings
from recorder.services import ManagedProcess
from signaling import protocol as p
from tests.conftest import LiveServer, auth
from tests.signaling.conftest import settings_env
from tests.signaling.peers import RtcPeer, SignalClient, small_video_track, tone_track

SEGMENT_S = 2.0
BOT_ID = "recorder-bot"


def default_tracks() -> list[Any]:
    return [tone_track(), small_video_track()]


class SyncedSource:
    """Audio + video tracks on ONE clock, with 1 kHz beeps and white flashes at the same instants.

    (aiortc's MediaPlayer paces audio and video each from its own first `recv()`, which
    skews them by up to tens of ms before the bot sees anything; this source does not.)
    """

    def __init__(self, events_s: tuple[float, ...], size: tuple[int, int] = (160, 120)) -> None:
        self.events_s, self.size = events_s, size
        self.t0: float | None = None

    def clock(self) -> float:
        if self.t0 is None:
            self.t0 = time.time()
        return self.t0

    def on(self, t: float) -> bool:
        return any(e <= t < e + 0.1 for e in self.events_s)

    def tracks(self) -> list[Any]:
        return [_SyncedAudio(self), _SyncedVideo(self)]


class _Paced:
    def __init__(self, source: SyncedSource, rate: int, step: int) -> None:
        self.source, self.rate, self.step, self.n = source, rate, step, 0

    async def next_pts(self) -> int:
        pts, self.n = self.n * self.step, self.n + 1
        wait = self.source.clock() + pts / self.rate - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        return pts


def _synced_track(kind: str):
    from aiortc import MediaStreamTrack

    class _Track(MediaStreamTrack):
        pass

    _Track.kind = kind
    return _Track


class _SyncedVideo(_synced_track("video")):  # type: ignore[misc]
    def __init__(self, source: SyncedSource) -> None:
        super().__init__()
        self.pace = _Paced(source, 90_000, 3_000)

    async def recv(self):
        import av

        pts = await self.pace.next_pts()
        w, h = self.pace.source.size
        level = 255 if self.pace.source.on(pts / 90_000) else 40 + (pts // 3000) % 60
        frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), level, dtype=np.uint8), format="rgb24")
        frame.pts, frame.time_base = pts, Fraction(1, 90_000)
        return frame


class _SyncedAudio(_synced_track("audio")):  # type: ignore[misc]
    def __init__(self, source: SyncedSource) -> None:
        super().__init__()
        self.pace = _Paced(source, 48_000, 960)

    async def recv(self):
        import av

        pts = await self.pace.next_pts()
        t = (pts + np.arange(960)) / 48_000
        loud = np.array([self.pace.source.on(x) for x in t[::48]]).repeat(48)
        samples = (np.sin(2 * np.pi * 1000 * t) * 16000 * loud).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48_000, pts, Fraction(1, 48_000)
        return frame


class Participant:
    """One participant socket + one aiortc peer per remote that offers to it."""

    def __init__(self, client: SignalClient, tracks: Callable[[], list[Any]] = default_tracks) -> None:
        self.client, self.tracks = client, tracks
        self.peers: dict[str, RtcPeer] = {}
        self.messages: list[Any] = []   # everything but signals (joined, participant_joined, end…)
        self.task: asyncio.Task | None = None

    async def join(self) -> p.Joined:
        joined = await self.client.join()
        self.messages.append(joined)
        self.task = asyncio.create_task(self._pump())
        return joined

    async def _pump(self) -> None:
        while True:
            msg = await self.client.inbox.get()
            if msg is None:
                return
            if msg.type != "signal":
                self.messages.append(msg)
                continue
            msg = self.incoming(msg)
            if msg.description is not None and msg.description.get("type") == "offer":
                old = self.peers.pop(msg.from_, None)
                if old is not None:
                    await old.close()
                self.peers[msg.from_] = RtcPeer(self.client, send_tracks=self.tracks())
            peer = self.peers.get(msg.from_)
            if peer is not None:
                await peer.handle(msg)

    def incoming(self, msg: p.Signal) -> p.Signal:
        """A relayed signal as this participant's peer gets it (a hook for tests' network tricks)."""
        return msg

    async def wait_peer(self, remote: str, timeout: float = 30.0) -> RtcPeer:
        async with asyncio.timeout(timeout):
            while remote not in self.peers or not self.peers[remote].connected.is_set():
                await asyncio.sleep(0.05)
        return self.peers[remote]

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        for peer in self.peers.values():
            await peer.close()
        await self.client.close()


class Api:
    """The few REST calls the tests make (async httpx against the live server)."""

    def __init__(self, base_url: str, token: str, db_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, headers=auth(token), timeout=20)
        self.db_url = db_url

    async def room(self, slot: str = "slot-1", candidate: str = "cand-1", **body: Any) -> dict:
        r = await self.http.post("/v1/rooms", json={"slot_id": slot, "candidate_id": candidate, **body})
        assert r.status_code in (200, 201), r.text
        return r.json()

    async def participant(self, room_id: str, pid: str, role: str, name: str = "") -> Participant:
        r = await self.http.post(f"/v1/rooms/{room_id}/tokens",
                                 json={"participant_id": pid, "role": role, "display_name": name or pid})
        assert r.status_code == 200, r.text
        return Participant(SignalClient(r.json()["ws_url"]))

    async def get(self, path: str) -> dict:
        r = await self.http.get(path)
        assert r.status_code == 200, r.text
        return r.json()

    async def end(self, room_id: str) -> None:
        r = await self.http.post(f"/v1/rooms/{room_id}/end", json={"reason": "interview_over"})
        assert r.status_code == 200, r.text

    async def bot_recording(self, room_id: str, timeout: float = 30.0) -> dict:
        """The room's bot recording once the bot made it (read-only: never creates one)."""
        from sqlmodel import Session, create_engine, select

        from core.models import Recording

        engine = create_engine(self.db_url)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    with Session(engine) as s:
                        rec = s.exec(select(Recording).where(Recording.room_id == room_id,
                                                             Recording.source == "bot")).first()
                    if rec is not None:
                        return await self.get(f"/v1/recordings/{rec.id}")
                    await asyncio.sleep(0.2)
        finally:
            engine.dispose()

    async def wait_chunks(self, rec_id: str, per_track: int, tracks: int, timeout: float = 60.0) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                ledger = await self.get(f"/v1/recordings/{rec_id}/ledger")
                full = [t for t in ledger["tracks"] if len(t["chunks"]) >= per_track]
                if len(full) >= tracks:
                    return ledger
                await asyncio.sleep(0.25)

    async def wait_member(self, room_id: str, pid: str, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while pid not in [m["participant_id"] for m in (await self.get(f"/v1/rooms/{room_id}"))["participants"]]:
                await asyncio.sleep(0.1)

    async def wait_finalized(self, rec_id: str, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while (await self.get(f"/v1/recordings/{rec_id}"))["status"] == "recording":
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        await self.http.aclose()


@contextlib.contextmanager
def captured_events() -> Iterator[list[dict[str, Any]]]:
    """This process's structlog events (with their bound context and arrival time `t`)."""
    events: list[dict[str, Any]] = []
    previous = structlog.get_config()

    def keep(_: Any, __: str, event: dict[str, Any]) -> Any:
        events.append({**event, "t": time.time()})
        raise structlog.DropEvent

    structlog.configure(processors=[structlog.contextvars.merge_contextvars, keep])
    try:
        yield events
    finally:
        structlog.configure(**previous)


def holes(track: dict[str, Any]) -> list[dict[str, Any]]:
    """A ledger track's gaps where media is missing, leaving out refused chunks: ingest's validator
    refuses a segment of one single video frame (it reads a lone frame at pts 0 as "no frames"),
    which the bot can make when a link closes right after a key frame."""
    return [g for g in track["gaps"] if g["detected"] != "rejected_chunk"]


def first_event(events: list[dict[str, Any]], event: str, **fields: Any) -> dict[str, Any] | None:
    return next((e for e in list(events) if e.get("event") == event
                 and all(e.get(k) == v for k, v in fields.items())), None)


@pytest.fixture
def bot_settings(settings: Settings, live_api: LiveServer) -> Settings:
    return settings.model_copy(update={"bot_api_url": live_api.url, "bot_segment_s": SEGMENT_S,
                                       "bot_ice_loopback": True})


class BotProcess:
    """`python -m recorder bot` with the test settings; JSON logs in `log_path`."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        root = Path(__file__).resolve().parents[2]
        self.proc = ManagedProcess("bot", [sys.executable, "-m", "recorder", "bot"], log_path,
                                   env=settings_env(settings), cwd=root)
        self.log_path = log_path

    def start(self) -> BotProcess:
        self.proc.start()
        return self

    def kill(self) -> None:
        self.proc.kill()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.stop()


@pytest.fixture
def bot_process(bot_settings: Settings, tmp_path: Path) -> Iterator[Callable[[str], BotProcess]]:
    started: list[BotProcess] = []

    def _start(name: str = "bot") -> BotProcess:
        bot = BotProcess(bot_settings, tmp_path / f"{name}.log").start()
        started.append(bot)
        return bot

    yield _start
    for bot in started:
        bot.stop()
