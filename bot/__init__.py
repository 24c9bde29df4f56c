"""bot: the aiortc recording bot (`recorder bot`).

Joins every room that has recording on through our WebSocket signaling as a hidden
participant, receives each participant's audio and video, and writes them as WebM
segments (VP8 / Opus remuxed as received: no transcoding) uploaded to the ingest API
as they close. Talks to the API over HTTP/WebSocket only; imports `core` and the
signaling protocol types, nothing else of ours.

    service.py   run(): room events from Redis → one RoomSession per live room
    admission.py the cap on participants per process, decided before taking a seat
    fleet.py     `recorder bot --processes N`: N processes, each with its own cap
    session.py   join, participants, links, uploads, finalize
    peer.py      one receive-only RTCPeerConnection per participant
    tap.py       the encoded-frame tap (aiortc internals, isolated)
    track.py     frames → segments (policy in segments.py, sync in clock.py)
    writer.py    PyAV WebM writers (remux / transcode fallback)
    api.py       HTTP client with retries
"""
from __future__ import annotations

__all__ = ["BotConfig", "run", "serve"]


def __getattr__(name: str):  # lazy: importing `bot` must not pull aiortc/av in
    if name in ("run", "serve"):
        from bot import service

        return getattr(service, name)
    if name == "BotConfig":
        from bot.config import BotConfig

        return BotConfig
    raise AttributeError(name)
