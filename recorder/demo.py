"""`recorder demo`: a two-person interview played through the real local stack.

Interviewer and candidate each get a camera+mic clip (test-pattern video with their name
and a clock, their espeak-ng voice).

`--mode call` (the default, the whole product): a room is created with recording on, both
join through our WebSocket signaling as real aiortc peers (`recorder.call`), the recording
bot joins hidden and records their tracks, the candidate's browser-side uploader also
sends 30-s client chunks of their own camera, the room ends after the interview, and the
bot's recording is processed while and after it runs.

`--mode upload`: no call; both tracks are cut into 30-s WebM chunks as a browser's
stop/start `MediaRecorder` makes them and uploaded as they "close", at real-time pace
(`--speed N` accelerates).

Both end by printing seconds from hang-up to ready, a transcript excerpt, a search hit with
its deep link, the review and recordings-list URLs with a ready-to-click short-lived
token, and where the outputs are.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from core.auth import mint_token
from recorder import synth
from recorder.stack import LocalStack, StackOptions, wait_forever

CHUNK_S = 30
ORG = "demo"
VIEWER = ("ines", "interviewer")  # who the printed links sign in as (she runs the interview)
VIEW_TTL_S = 1800
SCRIPT = [  # (speaker, text) — alternating turns, with pauses between them
    ("interviewer", "Thanks for joining today. Can you tell me about a system you scaled recently?"),
    ("candidate", "Sure. I moved our payment service to Kubernetes and split the PostgreSQL database."),
    ("interviewer", "What went wrong during the migration?"),
    ("candidate", "Connection pooling. We added a pooler in front of PostgreSQL and the errors stopped."),
    ("interviewer", "How did you test the failover?"),
    ("candidate", "We killed the primary every week in staging and measured the recovery time."),
    ("interviewer", "Great. What would you do differently next time?"),
    ("candidate", "I would write the runbook first and rehearse it with the whole team."),
]
VOICES = {"interviewer": "en-us", "candidate": "en-gb"}
NAMES = {"interviewer": "Ines Interviewer", "candidate": "Carl Candidate"}


@dataclass
class TrackMedia:
    role: str
    chunks: list[tuple[Path, int, int]]          # (file, start offset ms, duration ms)
    placed: list[tuple[float, float, str]]


def script_schedule(total_s: float, gap_s: float = 1.5) -> dict[str, list[tuple[float, str, str]]]:
    """Spread the script's turns over the interview: (start_s, text, voice) per speaker."""
    per_turn = total_s / max(1, len(SCRIPT))
    plan: dict[str, list[tuple[float, str, str]]] = {"interviewer": [], "candidate": []}
    for i, (who, text) in enumerate(SCRIPT):
        plan[who].append((round(i * per_turn + gap_s, 2), text, VOICES[who]))
    return plan


def prepare_media(out: Path, seconds: float, console: Console) -> list[TrackMedia]:
    tracks = []
    for role, segments in script_schedule(seconds).items():
        with console.status(f"generating {role} track ({seconds:.0f} s: espeak-ng voice + test pattern)…"):
            clip, placed = synth.participant_clip(out / f"{role}.webm", seconds, segments, label=NAMES[role])
            chunks = synth.split_chunks(clip, out / f"{role}-chunks", chunk_s=CHUNK_S)
        tracks.append(TrackMedia(role, chunks, placed))
    return tracks


def upload(client: httpx.Client, token: str, rec: str, track: str, seq: int, path: Path, start_ms: int,
           duration_ms: int) -> int:
    data = path.read_bytes()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "video/webm",
               "X-Content-SHA256": hashlib.sha256(data).hexdigest(), "X-Chunk-Start": str(start_ms),
               "X-Chunk-Duration": str(duration_ms)}
    for attempt in range(8):
        resp = client.put(f"/v1/recordings/{rec}/tracks/{track}/chunks/{seq}", content=data, headers=headers)
        if resp.status_code not in (429, 503):
            break
        time.sleep(float(resp.headers.get("retry-after", 2 ** attempt)))
    resp.raise_for_status()
    return resp.status_code


def run_demo(speed: float, minutes: float, exit_after: bool, data_dir: Path, api_port: int,
             mode: str = "call") -> int:
    console = Console()
    media = prepare_media(data_dir / "media", minutes * 60, console)
    # one machine: the bot and the demo's peers meet on 127.0.0.1
    stack = LocalStack(StackOptions(data_dir=data_dir, api_port=api_port,
                                    extra_env={"RECORDER_BOT_ICE_LOOPBACK": "true"}))
    try:
        stack.start(progress=lambda m: console.print(f"[dim][up] {m}[/]"))
        console.print(f"[bold]stack ready[/] at {stack.api_url}")
        if mode == "call":
            from recorder.demo_call import play_call

            ok = play_call(stack, media, minutes * 60, console)
        else:
            ok = play_interview(stack, media, speed, console)
        if ok and not exit_after:
            console.print("stack keeps running — Ctrl-C to stop")
            wait_forever(stack)
        return 0 if ok else 1
    except KeyboardInterrupt:
        return 0
    finally:
        console.print("[dim]stopping the stack…[/]")
        stack.stop()


def play_interview(stack: LocalStack, media: list[TrackMedia], speed: float, console: Console) -> bool:
    secret = stack.env["RECORDER_JWT_SECRET"]
    token = mint_token(secret, sub=VIEWER[0], org=ORG, role="admin", ttl_s=7200)
    client = httpx.Client(base_url=stack.api_url, timeout=60, headers={"Authorization": f"Bearer {token}"})
    body = {"client_key": f"demo-{int(time.time())}", "layout": "grid", "title": "Demo interview",
            "vocabulary": ["Kubernetes", "PostgreSQL"],
            "tracks": [{"track_id": t.role, "participant_id": t.role, "role": t.role,
                        "display_name": NAMES[t.role], "kind": "av"} for t in media]}
    rec = client.post("/v1/recordings", json=body).raise_for_status().json()["id"]
    console.print(f"recording [bold]{rec}[/] — {len(media[0].chunks)} chunks per track, speed {speed}×")
    t0_ms = int(time.time() * 1000)
    events = sorted((off + dur, t.role, seq, path, off, dur) for t in media
                    for seq, (path, off, dur) in enumerate(t.chunks))
    start = time.monotonic()
    with _progress(console) as prog:
        up = prog.add_task("chunks uploaded", total=len(events))
        steps = prog.add_task("processing steps done", total=None)
        for close_ms, role, seq, path, off, dur in events:
            while (wait := close_ms / 1000 / speed - (time.monotonic() - start)) > 0:
                time.sleep(min(wait, 1.0))
                _update_steps(client, rec, prog, steps)
            upload(client, token, rec, role, seq, path, t0_ms + off, dur)
            prog.advance(up)
        hangup = time.monotonic()
        client.post(f"/v1/recordings/{rec}/finalize").raise_for_status()
        status = _wait_ready(client, rec, prog, steps)
    took = time.monotonic() - hangup
    if status["status"] != "ready":
        console.print(f"[red]recording ended {status['status']}: {status.get('error')}[/]")
        return False
    console.print(f"\n[bold green]ready {took:.1f} s after hang-up[/]")
    _report(client, stack, rec, status, console)
    return True


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=console)


def _update_steps(client: httpx.Client, rec: str, prog: Progress, task) -> dict:  # noqa: ANN001
    status = client.get(f"/v1/recordings/{rec}").json()
    done = sum(1 for s in status["steps"] if s["status"] == "done")
    prog.update(task, completed=done, total=max(len(status["steps"]), 1))
    return status


def _wait_ready(client: httpx.Client, rec: str, prog: Progress, task, timeout_s: float = 900) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _update_steps(client, rec, prog, task)
        if status["status"] in ("ready", "failed"):
            return status
        time.sleep(0.5)
    return {**status, "status": "timeout", "error": f"not ready after {timeout_s}s"}


def _report(client: httpx.Client, stack: LocalStack, rec: str, status: dict, console: Console) -> None:
    text = client.get(f"/v1/recordings/{rec}/transcript", params={"format": "txt"}).text
    console.print("[bold]transcript excerpt[/]")
    for line in text.strip().splitlines()[:6]:
        console.print(f"  {line}")
    found = client.get("/v1/search", params={"q": "PostgreSQL", "role": "candidate"}).raise_for_status().json()
    console.print(f"[bold]search[/] 'PostgreSQL' said by the candidate: {found['count']} hit(s)")
    for hit in found["hits"][:2]:
        snippet = hit["snippet"].replace("<mark>", "[reverse]").replace("</mark>", "[/reverse]")
        console.print(f"  {hit.get('speaker', '')}: {snippet} → {stack.api_url}{hit['link']}")
    console.print("[bold]outputs[/]")
    for name, key in sorted((status.get("outputs") or {}).items()):
        console.print(f"  {name}: s3://recordings/{key}" if isinstance(key, str) else f"  {name}: {key}")
    console.print(f"  recording: {stack.api_url}/v1/recordings/{rec}")
    console.print(f"  transcript: {stack.api_url}/v1/recordings/{rec}/transcript?format=vtt")
    console.print(f"  data + logs: {stack.data_dir}")
    viewer = mint_token(stack.env["RECORDER_JWT_SECRET"], sub=VIEWER[0], org=ORG, role=VIEWER[1], ttl_s=VIEW_TTL_S)
    console.print(f"[bold]open in a browser[/] (token valid {VIEW_TTL_S // 60} min, as {VIEWER[1]} {VIEWER[0]}):")
    console.print(f"  review: {stack.api_url}/review/{rec}?token={viewer}", soft_wrap=True)
    console.print(f"  recordings: {stack.api_url}/recordings?token={viewer}", soft_wrap=True)
    console.print("  later, from a new shell: ?token=$(recorder token --role interviewer --sub ines)")
