"""Helpers for ingest tests: small real media, recording creation, chunk PUTs, snapshots."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from core.storage import ObjectStore
from tests.conftest import auth
from tests.media import av_clip, chromium_chunks, split_chunks

T0 = 1_795_000_000_000  # a fixed wall-clock start (epoch ms)


@pytest.fixture(scope="session")
def webm_chunks(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[bytes, int, int]]:
    """Four self-contained 1-s WebM chunks (VP8+Opus) as a stop/start recorder makes them."""
    d = tmp_path_factory.mktemp("webm")
    src = av_clip(d / "src.webm", 4, "webm", size=(160, 90))
    return [(p.read_bytes(), off, dur) for p, off, dur in split_chunks(src, d / "chunks", chunk_s=1)]


@pytest.fixture(scope="session")
def mp4_chunks(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[bytes, int, int]]:
    """Three fragmented-MP4 chunks (H.264+AAC) as Safari makes them."""
    d = tmp_path_factory.mktemp("mp4")
    src = av_clip(d / "src.mp4", 3, "mp4", size=(160, 90))
    return [(p.read_bytes(), off, dur) for p, off, dur in split_chunks(src, d / "chunks", chunk_s=1)]


@pytest.fixture(scope="session")
def live_webm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """6 s of VP8+Opus as a live muxer writes it (unknown-size Segment, no Cues): a timeslice
    recorder's bytes, to be cut into a header blob and continuations at any offsets."""
    import subprocess

    d = tmp_path_factory.mktemp("live")
    src = av_clip(d / "src.webm", 6, "webm", size=(160, 90))
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c", "copy", "-live", "1", "-f", "webm",
                    str(d / "live.webm")], check=True, timeout=60)
    return (d / "live.webm").read_bytes()


@pytest.fixture(scope="session")
def fragmented_mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """4 s of H.264+AAC fragmented MP4 (ftyp + empty moov, then one moof + mdat per second)."""
    return av_clip(tmp_path_factory.mktemp("fmp4") / "src.mp4", 4, "mp4", size=(160, 90)).read_bytes()


@pytest.fixture(scope="session")
def timeslice_webm(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """A real Chromium `start(1000)` recording, 4 s of VP8+Opus: blob 0 the header, then
    continuations (the arguments of test_chromium_chunks: one cached recording serves both)."""
    return chromium_chunks(tmp_path_factory.mktemp("timeslice"), mode="timeslice", seconds=4.0, chunk_ms=1000,
                           mime="video/webm;codecs=vp8,opus")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunk_headers(data: bytes, start_ms: int, ctype: str = "video/webm", **extra: str) -> dict[str, str]:
    return {"Content-Type": ctype, "X-Content-SHA256": sha(data), "X-Chunk-Start": str(start_ms), **extra}


def create_recording(client: Any, token: str, key: str = "k1", tracks: list[str] = ("cam-a",), **body: Any) -> str:
    payload = {"client_key": key, "tracks": [{"track_id": t, "participant_id": f"p-{t}", "role": "candidate",
                                               "display_name": t} for t in tracks], **body}
    resp = client.post("/v1/recordings", json=payload, headers=auth(token))
    assert resp.status_code in (200, 201), resp.text
    return resp.json()["id"]


def put(client: Any, token: str, rec: str, track: str, seq: int, data: bytes, start_ms: int,
        ctype: str = "video/webm", **extra: str):
    return client.put(f"/v1/recordings/{rec}/tracks/{track}/chunks/{seq}", content=data,
                      headers={**chunk_headers(data, start_ms, ctype, **extra), **auth(token)})


def snapshot(store: ObjectStore, prefix: str = "") -> dict[str, tuple[int, str]]:
    """Every object under `prefix` with size and SHA-256 of its bytes (to prove nothing changed)."""
    return {o.key: (o.size, sha(store.get_bytes(o.key))) for o in store.list(prefix)}


def read(path: Path) -> bytes:
    return path.read_bytes()
