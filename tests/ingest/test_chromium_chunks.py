"""Real Chromium MediaRecorder chunks (stop/start blobs, timeslice continuations, MP4)."""
from __future__ import annotations

import random

import pytest

from core.storage import ObjectStore
from tests.conftest import auth
from tests.ingest.conftest import create_recording, put, sha, snapshot
from tests.media import chromium_chunks


@pytest.mark.browser
@pytest.mark.parametrize("mode,mime", [
    ("stopstart", "video/webm;codecs=vp8,opus"),
    ("timeslice", "video/webm;codecs=vp8,opus"),
    ("stopstart", "video/mp4"),
])
def test_browser_chunks_out_of_order_with_duplicates(client, settings, token_for, tmp_path, mode, mime) -> None:
    blobs = chromium_chunks(tmp_path / "blobs", mode=mode, seconds=4.0, chunk_ms=1000, mime=mime)
    assert len(blobs) >= 3
    if mode == "timeslice":
        assert not blobs[0]["continuation"] and all(b["continuation"] for b in blobs[1:])
    tok = token_for(role="service")
    rec = create_recording(client, tok, key=f"chromium-{mode}-{mime[:9]}")
    sends = blobs + random.Random(1).sample(blobs, len(blobs))
    random.Random(5).shuffle(sends)
    ctype = mime.split(";")[0]
    codes = []
    for b in sends:
        extra = {"X-Chunk-Duration": str(int(b["duration_ms"]))}
        if b["continuation"]:
            extra["X-Chunk-Continuation"] = "1"
        resp = put(client, tok, rec, "cam-a", b["seq"], b["path"].read_bytes(), int(b["start_ms"]), ctype, **extra)
        assert resp.status_code in (200, 201), resp.text
        codes.append(resp.status_code)
    assert codes.count(201) == len(blobs)
    ledger = client.get(f"/v1/recordings/{rec}/ledger", headers=auth(tok)).json()
    track = ledger["tracks"][0]
    assert ledger["complete"], track["gaps"]
    assert [c["seq"] for c in track["chunks"]] == [b["seq"] for b in blobs]
    assert track["covered_seconds"] == pytest.approx(sum(b["duration_ms"] for b in blobs) / 1000, rel=0.15)
    stored = snapshot(ObjectStore.from_settings(settings), f"acme/recordings/{rec}/chunks/")
    assert sorted(v[1] for v in stored.values()) == sorted(sha(b["path"].read_bytes()) for b in blobs)
