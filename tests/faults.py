"""Helpers for the fault matrix (tests/test_fault_matrix.py): one short interview played
through the real API to real workers, the faults to inject, and what a run produced.

    Stack         the services of one module: own restartable Redis, the session S3 server,
                  a restartable in-thread API on a fixed port, one replaceable worker
    play()        create a recording, upload each track's chunks at real-time pace from one
                  thread per participant (retrying 429/503/507 and dropped connections with
                  backoff, as the browser uploader does), hang up, wait for ready/failed
    Outcome       what a run produced, reduced to what must not depend on timing
    requeue_lost  what Dramatiq's maintenance does for a dead worker's unacked messages
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av
import httpx
import redis as redis_lib
from sqlmodel import select

from compositor.probe import probe
from core.db import make_engine, session_scope
from core.models import ProcessingStep
from core.settings import Settings
from core.storage import ObjectStore
from recorder.services import ManagedProcess, start_redis
from tests.compositor.measure import frame_hashes
from tests.conftest import LiveServer, auth
from tests.media import participant_clip, split_chunks
from tests.workers.conftest import WorkerProcess, settings_env, wait_for

T0 = 1_796_000_000_000  # the interview's fixed wall-clock start: every run sends identical headers
RETRY_CODES = (429, 503, 507)
LINES = {  # (start_s, text, voice) per participant; 9 s, cut into 3 chunks of 3 s
    "ines": [(0.3, "Tell me about your last project.", "en-us"), (6.2, "Why that database?", "en-us")],
    "carl": [(3.1, "I moved payments to Kubernetes.", "en-gb")],
}
SECONDS, CHUNK_S = 9, 3


@dataclass(frozen=True)
class Chunk:
    track: str
    seq: int
    data: bytes
    offset_ms: int
    duration_ms: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def make_interview(out: Path) -> list[Chunk]:
    """Two participants (espeak voice + test pattern with a clock), 3 self-contained chunks each."""
    chunks = []
    for track, lines in LINES.items():
        clip, _ = participant_clip(out / f"{track}.webm", SECONDS, lines, label=track, size=(160, 90))
        for seq, (path, off, dur) in enumerate(split_chunks(clip, out / track, chunk_s=CHUNK_S)):
            chunks.append(Chunk(track, seq, path.read_bytes(), off, dur))
    return chunks


# ---------------------------------------------------------------- the services of one module

class Stack:
    """Own Redis (restartable, no persistence), the S3 server, an API and one worker."""

    def __init__(self, settings: Settings, s3, work: Path, port: int) -> None:
        self.settings, self.s3, self.work, self.redis_port = settings, s3, work, port
        self.redis: ManagedProcess = start_redis(work / "redis", port)
        self.api: LiveServer | None = None
        self.worker: WorkerProcess | None = None
        self.workers: list[WorkerProcess] = []
        self.engine = make_engine(settings.database_url)
        self.store = ObjectStore.from_settings(settings)

    # -- redis
    def restart_redis(self, down_s: float) -> None:
        self.redis.stop()
        time.sleep(down_s)
        self.redis = start_redis(self.work / "redis", self.redis_port)

    # -- api
    def start_api(self, port: int | None = None) -> None:
        api = LiveServer(self.settings)
        if port:  # the same address as before, as a restarted process behind a fixed port
            api.port, api.url, api.server.config.port = port, f"http://127.0.0.1:{port}", port
        self.api = api.__enter__()

    def restart_api(self, down_s: float) -> None:
        port = self.api.port
        self.api.__exit__(None, None, None)
        time.sleep(down_s)
        self.start_api(port)

    # -- workers
    def start_worker(self, **extra: str) -> WorkerProcess:
        knobs = {"RECORDER_WINDOW_MS": "3000", "RECORDER_WORKER_MAX_RETRIES": "12",  # ~40 s of retries
                 "RECORDER_WORKER_MIN_BACKOFF_MS": "500", "RECORDER_WORKER_MAX_BACKOFF_MS": "4000"}
        env = settings_env(self.settings, **{**knobs, **extra})
        self.worker = WorkerProcess(env, ["media", "transcribe", "default"],
                                    self.work / f"worker{len(self.workers)}.log")
        self.workers.append(self.worker)
        return self.worker

    def replace_worker(self, kill: bool = True, **extra: str) -> int:
        """Kill (SIGKILL) or stop the worker, start a new one; hand it the old one's unacked
        messages (returns how many were requeued). A graceful stop leaves none behind — unless
        it outlived its grace period and was killed (a step stuck on a slow dependency), so the
        hand-over runs after a stop too."""
        ids = heartbeat_ids(self.settings.redis_url)
        if kill:
            self.worker.kill()
        else:
            self.worker.stop()
        self.start_worker(**extra)
        return requeue_lost(self.settings.redis_url, ids)

    def logs(self) -> str:
        return "\n".join(f"--- {w.log_path.name}\n{w.log()}" for w in self.workers)

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        if self.api:
            self.api.__exit__(None, None, None)
        self.redis.stop()
        self.engine.dispose()

    # -- state seen from the database
    def steps(self, rec: str) -> dict[str, ProcessingStep]:
        with session_scope(self.engine) as s:
            rows = s.exec(select(ProcessingStep).where(ProcessingStep.recording_id == rec)).all()
            for r in rows:
                s.expunge(r)
            return {r.step: r for r in rows}

    def running(self, rec: str, prefix: str) -> bool:
        return any(n.startswith(prefix) and st.status == "running" for n, st in self.steps(rec).items())


def heartbeat_ids(redis_url: str) -> list[str]:
    r = redis_lib.Redis.from_url(redis_url)
    try:
        return [m.decode() for m in r.zrange("dramatiq:__heartbeats__", 0, -1)]
    finally:
        r.close()


def requeue_lost(redis_url: str, worker_ids: list[str]) -> int:
    """Put a dead worker's unacked messages back on their queues, as Dramatiq's maintenance
    does (dispatch.lua) — but that only runs for workers silent for 60 s, by a 0.1 % chance per
    broker command: minutes on an idle stack. Returns how many messages were requeued."""
    r = redis_lib.Redis.from_url(redis_url)
    moved = 0
    try:
        for wid in worker_ids:
            prefix = f"dramatiq:__acks__.{wid}."
            for key in r.keys(prefix + "*"):
                queue = key.decode()[len(prefix):]
                for mid in r.smembers(key):
                    if r.hexists(f"dramatiq:{queue}.msgs", mid):
                        r.rpush(f"dramatiq:{queue}", mid)
                        moved += 1
                r.delete(key)
            r.zrem("dramatiq:__heartbeats__", wid)
    finally:
        r.close()
    return moved


# ---------------------------------------------------------------- the client

@dataclass
class Played:
    rec: str
    status: dict
    answers: dict[tuple[str, int], list[object]] = field(default_factory=dict)  # codes / error names


def _backoff(attempt: int, resp: httpx.Response | None) -> float:
    hinted = float(resp.headers.get("retry-after", 0)) if resp is not None else 0.0
    return min(max(hinted, 0.25 * 2 ** attempt), 2.0)  # a hint of 5 s is honoured up to 2 s


def _call(c: httpx.Client, method: str, url: str, log: list, deadline_s: float = 120, **kw) -> httpx.Response:
    """One request, retried on 429/503/507 and on dropped connections until `deadline_s`."""
    deadline = time.monotonic() + deadline_s
    for attempt in range(1000):
        resp = None
        try:
            resp = c.request(method, url, **kw)
            log.append(resp.status_code)
            if resp.status_code not in RETRY_CODES:
                return resp
        except httpx.TransportError as exc:
            log.append(type(exc).__name__)
        if time.monotonic() > deadline:
            break
        time.sleep(_backoff(min(attempt, 4), resp))
    raise AssertionError(f"{method} {url} still failing after {deadline_s}s: {log[-10:]}")


def play(stack: Stack, key: str, chunks: list[Chunk], token: str, timeout_s: float = 240,
         fault: Callable[[str], None] | None = None) -> Played:
    """Create the recording, upload at the interview's pace, hang up, wait for ready/failed.

    `fault(recording_id)` runs in a thread beside the interview from its creation on."""
    c = httpx.Client(timeout=30, headers=auth(token))
    def url() -> str:  # the API may be a new process by the next request
        return stack.api.url

    body = {"client_key": key, "layout": "grid", "tracks": [
        {"track_id": t, "participant_id": t, "role": "candidate" if t == "carl" else "interviewer",
         "display_name": t, "kind": "av"} for t in LINES]}
    log: list = []
    rec = _call(c, "POST", f"{url()}/v1/recordings", log, json=body).json()["id"]
    played = Played(rec, {})
    join = in_thread(lambda: fault(rec)) if fault else None
    start = time.monotonic()

    def participant(track: str) -> None:
        with httpx.Client(timeout=30, headers=auth(token)) as pc:
            for ch in (ch for ch in chunks if ch.track == track):
                time.sleep(max(0.0, (ch.offset_ms + ch.duration_ms) / 1000 - (time.monotonic() - start)))
                answers = played.answers.setdefault((track, ch.seq), [])
                headers = {"Content-Type": "video/webm", "X-Content-SHA256": ch.sha256,
                           "X-Chunk-Start": str(T0 + ch.offset_ms), "X-Chunk-Duration": str(ch.duration_ms)}
                resp = _call(pc, "PUT", f"{url()}/v1/recordings/{rec}/tracks/{track}/chunks/{ch.seq}", answers,
                             content=ch.data, headers=headers)
                assert resp.status_code in (200, 201), resp.text

    with ThreadPoolExecutor(len(LINES)) as pool:
        list(pool.map(participant, LINES))
    assert _call(c, "POST", f"{url()}/v1/recordings/{rec}/finalize", log).status_code == 202

    def settled() -> dict | None:
        try:
            status = c.get(f"{url()}/v1/recordings/{rec}").json()
        except httpx.TransportError:
            return None
        return status if status.get("status") in ("ready", "failed") else None

    played.status = wait_for(settled, timeout_s, f"recording {rec} ready or failed", interval_s=0.5,
                             on_timeout=stack.logs)
    c.close()
    if join:
        join()
    return played


# ---------------------------------------------------------------- what a run produced

@dataclass
class Outcome:
    """A run reduced to what must not depend on timing (see test_fault_matrix's docstring)."""

    transcript: list[tuple]         # (speaker, text, start_ms, end_ms, words)
    media: dict                     # codecs, sizes, frame counts, durations, decoded-frame hashes
    ledger: dict                    # per track: chunks (seq, sha256, start, duration), gaps
    chunk_objects: list[str]        # SHA-256 of every stored chunk object, sorted


def _decoded_audio(path: Path) -> tuple[int, str]:
    digest, samples = hashlib.sha256(), 0
    with av.open(str(path)) as c:
        for frame in c.decode(c.streams.audio[0]):
            arr = frame.to_ndarray()
            samples += frame.samples
            digest.update(arr.tobytes())
    return samples, digest.hexdigest()[:16]


def media_outcome(store: ObjectStore, outputs: dict, work: Path) -> dict:
    path = work / f"{outputs['composite'].replace('/', '_')}"
    store.download(outputs["composite"], str(path))
    info = probe(path)
    video, audio = info.stream("video"), info.stream("audio")
    frames = frame_hashes(path)
    samples, audio_hash = _decoded_audio(path)
    path.unlink()
    playlist = store.get_bytes(outputs["hls"]).decode()
    return {"duration_ms": outputs["duration_ms"], "windows": outputs["windows"],
            "media_gaps": outputs.get("media_gaps"),
            "video": (video.codec, video.end_ms, len(frames)), "audio": (audio.codec, samples),
            "frames": frames, "audio_samples": audio_hash,
            "hls_segments": sum(1 for ln in playlist.splitlines() if ln.endswith(".ts"))}


def outcome(stack: Stack, played: Played, token: str, work: Path) -> Outcome:
    with httpx.Client(base_url=stack.api.url, timeout=30, headers=auth(token)) as c:
        tx = c.get(f"/v1/recordings/{played.rec}/transcript", params={"format": "json"})
        assert tx.status_code == 200, tx.text
        ledger = c.get(f"/v1/recordings/{played.rec}/ledger").json()
    segments = [(s["speaker"]["track_id"], s["text"], s["start_ms"], s["end_ms"],
                 tuple((w["word"], w["start_ms"], w["end_ms"]) for w in s.get("words", [])))
                for s in tx.json()["segments"]]
    tracks = {t["track_id"]: {"chunks": [(ch["seq"], ch["sha256"], ch["start_ms"], ch["duration_ms"])
                                         for ch in t["chunks"]], "gaps": t["gaps"]}
              for t in ledger["tracks"]}
    org = played.status["org"]
    objects = [hashlib.sha256(stack.store.get_bytes(o.key)).hexdigest()
               for o in stack.store.list(f"{org}/recordings/{played.rec}/chunks/")]
    return Outcome(segments, media_outcome(stack.store, played.status["outputs"], work),
                   {"complete": ledger["complete"], "tracks": tracks}, sorted(objects))


def in_thread(fn: Callable[[], None]) -> Callable[[], None]:
    """Run `fn` beside the interview; the returned join() re-raises what it raised."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001  (handed to the test thread)
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()

    def join(timeout_s: float = 240) -> None:
        t.join(timeout_s)
        assert not t.is_alive(), "the fault thread did not finish"
        if errors:
            raise errors[0]

    return join
