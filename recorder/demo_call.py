"""The call path of `recorder demo`: room → two peers + the bot → client chunks → ready.

Steps, each visible on the console: the interviewer creates a room with recording on; the
interviewer and the candidate join through the signaling WebSocket as aiortc peers sending
their clips; the recording bot (started by `recorder up`) joins hidden and records both;
the candidate's uploader also sends their own camera as 30-s client chunks (a second
source: `room:{id}:client`); after the interview the room ends, the bot finalizes its
recording, and the workers finish it.
"""
from __future__ import annotations

import asyncio
import time

import httpx
from rich.console import Console

from core.auth import mint_token
from recorder.call import CallParticipant, loopback_ice
from recorder.demo import NAMES, ORG, VIEWER, TrackMedia, _progress, _report, _update_steps, _wait_ready, upload
from recorder.stack import LocalStack

BOT_JOIN_TIMEOUT_S = 60


def play_call(stack: LocalStack, media: list[TrackMedia], seconds: float, console: Console) -> bool:
    secret = stack.env["RECORDER_JWT_SECRET"]
    token = mint_token(secret, sub=VIEWER[0], org=ORG, role="interviewer", ttl_s=7200)
    client = httpx.Client(base_url=stack.api_url, timeout=60, headers={"Authorization": f"Bearer {token}"})
    slot = f"demo-{int(time.time())}"
    room = client.post("/v1/rooms", json={"slot_id": slot, "candidate_id": "carl", "record": True,
                                          "title": "Demo interview (call)", "layout": "grid",
                                          "vocabulary": ["Kubernetes", "PostgreSQL"]}).raise_for_status().json()
    console.print(f"room [bold]{room['id']}[/] created with recording on")
    clips = {t.role: t for t in media}
    joins = {role: client.post(f"/v1/rooms/{room['id']}/tokens", json={
        "participant_id": pid, "role": role, "display_name": NAMES[role]}).raise_for_status().json()
        for role, pid in (("interviewer", VIEWER[0]), ("candidate", "carl"))}
    loopback_ice()
    rec, hangup = asyncio.run(_call(stack, client, room["id"], joins, clips, seconds, secret, console))
    if rec is None:
        console.print("[red]the recording bot never joined the room[/]")
        return False
    with _progress(console) as prog:
        steps = prog.add_task("processing steps done", total=None)
        status = _wait_ready(client, rec, prog, steps)
    took = time.monotonic() - hangup
    if status["status"] != "ready":
        console.print(f"[red]recording ended {status['status']}: {status.get('error')}[/]")
        return False
    console.print(f"\n[bold green]ready {took:.1f} s after hang-up[/] (the bot's recording of the call)")
    ledger = client.get(f"/v1/recordings/{rec}/ledger").json()
    for t in ledger["tracks"]:
        console.print(f"  track {t['track_id']} ({t['role']}): {len(t['chunks'])} segments, "
                      f"{t['covered_seconds']:.0f} s covered, gaps: {[g['cause'] for g in t['gaps']] or 'none'}",
                      soft_wrap=True)
    _report(client, stack, rec, status, console)
    return True


async def _call(stack: LocalStack, client: httpx.Client, room_id: str, joins: dict, clips: dict[str, TrackMedia],
                seconds: float, secret: str, console: Console) -> tuple[str | None, float]:
    people = {role: CallParticipant(j["ws_url"], clips[role].chunks[0][0].parent.parent / f"{role}.webm", role)
              for role, j in joins.items()}
    for person in people.values():
        await person.join()
    console.print("interviewer and candidate joined; waiting for the recording bot…")
    rec = await _bot_recording(client, room_id)
    if rec is None:
        await _leave(people)
        return None, time.monotonic()
    console.print(f"the bot is recording [bold]{rec}[/] (hidden from the participants)")
    uploads = asyncio.create_task(_client_chunks(stack, client, room_id, clips["candidate"], secret))
    start = time.monotonic()
    with _progress(console) as prog:
        task = prog.add_task("interview (s)", total=int(seconds))
        steps = prog.add_task("processing steps done (live)", total=None)
        while (left := seconds - (time.monotonic() - start)) > 0:
            await asyncio.sleep(min(left, 2.0))
            prog.update(task, completed=int(time.monotonic() - start))
            await asyncio.to_thread(_update_steps, client, rec, prog, steps)
    hangup = time.monotonic()
    await asyncio.to_thread(lambda: client.post(f"/v1/rooms/{room_id}/end").raise_for_status())
    console.print("hang-up: the room ended; the bot uploads its last segments and finalizes")
    await _leave(people)
    sent = await uploads
    console.print(f"the candidate's uploader sent {sent} client chunks (second source of their camera)")
    return rec, hangup


async def _bot_recording(client: httpx.Client, room_id: str) -> str | None:
    deadline = time.monotonic() + BOT_JOIN_TIMEOUT_S
    while time.monotonic() < deadline:
        page = await asyncio.to_thread(lambda: client.get("/v1/recordings", params={"room": room_id}).json())
        bot = [r for r in page.get("items", []) if r["status"] == "recording"]
        if bot:
            return bot[0]["id"]
        await asyncio.sleep(0.5)
    return None


async def _client_chunks(stack: LocalStack, client: httpx.Client, room_id: str, clip: TrackMedia,
                         secret: str) -> int:
    """The candidate's browser-side uploader: their camera as 30-s chunks, at real-time pace."""
    admin = mint_token(secret, sub=VIEWER[0], org=ORG, role="admin", ttl_s=3600)
    http = httpx.Client(base_url=stack.api_url, timeout=60, headers={"Authorization": f"Bearer {admin}"})
    body = {"room_id": room_id, "source": "client", "title": "Demo interview (candidate's own upload)",
            "tracks": [{"track_id": "carl-cam", "participant_id": "carl", "role": "candidate",
                        "display_name": NAMES["candidate"], "kind": "av"}]}
    rec = (await asyncio.to_thread(lambda: http.post("/v1/recordings", json=body).raise_for_status().json()))["id"]
    up = await asyncio.to_thread(lambda: http.post(f"/v1/recordings/{rec}/upload-token",
                                                   json={"participant_id": "carl"}).raise_for_status().json())
    t0_ms, start, sent = int(time.time() * 1000), time.monotonic(), 0
    for seq, (path, off, dur) in enumerate(clip.chunks):
        if (wait := (off + dur) / 1000 - (time.monotonic() - start)) > 0:
            await asyncio.sleep(wait)
        await asyncio.to_thread(upload, http, up["token"], rec, "carl-cam", seq, path, t0_ms + off, dur)
        sent += 1
    await asyncio.to_thread(lambda: http.post(f"/v1/recordings/{rec}/finalize").raise_for_status())
    http.close()
    return sent


async def _leave(people: dict[str, CallParticipant]) -> None:
    for person in people.values():
        await person.leave()
