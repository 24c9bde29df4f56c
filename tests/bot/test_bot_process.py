"""`recorder bot` as a real process: killed mid-recording it loses at most the open segment,
and the next bot process continues the same recording (same tracks, next seqs), reports the
hole as a `bot_restart` gap and finalizes."""
from __future__ import annotations

import asyncio
import json
import time

from tests.bot.conftest import BOT_ID, SEGMENT_S, Api
from tests.signaling.peers import loopback_only

SLACK_MS = 700  # key-frame wait at the cut + scheduling on a loaded 2-core machine


def _logged(path, event: str) -> list[dict]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == event:
                out.append(entry)
    return out


def test_killed_bot_loses_at_most_the_open_segment_and_a_new_one_continues(bot_process, settings, live_api,
                                                                           token_for, monkeypatch):
    loopback_only(monkeypatch)
    first = bot_process("bot1")

    async def scenario():
        api = Api(live_api.url, token_for("interviewer"), settings.database_url)
        room = await api.room(record=True)
        people = [await api.participant(room["id"], "int-1", "interviewer"),
                  await api.participant(room["id"], "cand-1", "candidate")]
        try:
            for who in people:
                await who.join()
            for who in people:
                await who.wait_peer(BOT_ID, timeout=60)
            rec = await api.bot_recording(room["id"])
            await api.wait_chunks(rec["id"], per_track=2, tracks=4, timeout=60)
            await asyncio.sleep(SEGMENT_S / 2)            # somewhere inside the next segment
            killed_ms = time.time() * 1000
            first.kill()
            before = await api.get(f"/v1/recordings/{rec['id']}/ledger")
            second = bot_process("bot2")
            async with asyncio.timeout(60):               # the new bot re-offers to everyone
                while True:
                    ledger = await api.get(f"/v1/recordings/{rec['id']}/ledger")
                    if all(any(c["start_epoch_ms"] > killed_ms for c in t["chunks"]) for t in ledger["tracks"]):
                        break
                    await asyncio.sleep(0.25)
            await api.end(room["id"])
            await api.wait_finalized(rec["id"])
            after = await api.get(f"/v1/recordings/{rec['id']}/ledger")
        finally:
            for who in people:
                await who.close()
            await api.close()
        return killed_ms, before, after, second

    killed_ms, before, after, second = asyncio.run(scenario())
    assert len(after["tracks"]) == 4 and after["status"] == "processing"
    for t in after["tracks"]:
        chunks = t["chunks"]
        assert [c["seq"] for c in chunks] == list(range(len(chunks))), t["track_id"]  # no seq reused or skipped
        old = [c for c in chunks if c["start_epoch_ms"] < killed_ms]
        new = [c for c in chunks if c["start_epoch_ms"] > killed_ms]
        assert len(old) >= 2 and new, t["track_id"]
        covered_until = max(c["start_epoch_ms"] + c["duration_ms"] for c in old)
        # only the segment open at the kill is missing: everything older is in the ledger
        assert killed_ms - covered_until <= SEGMENT_S * 1000 + SLACK_MS, (t["track_id"], killed_ms - covered_until)
        holes = [g for g in t["gaps"] if g["detected"] == "timeline_hole"]
        assert len(holes) == 1 and holes[0]["cause"] == "bot_restart", t["gaps"]  # the new bot said why
    assert _logged(second.log_path, "bot_finalized"), second.log_path.read_text()[-3000:]
    before_tracks = {t["track_id"]: len(t["chunks"]) for t in before["tracks"]}
    assert all(n >= 2 for n in before_tracks.values()), before_tracks
