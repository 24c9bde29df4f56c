"""bench/ingest: chunk PUTs through the API vs direct minio-SDK PUTs to the same S3 server.

Same bytes (a real ~2 MB WebM chunk), same server, same run; 1/10/100 concurrent
clients. Reports throughput (MB/s), p50/p99 latency, the API/direct throughput ratio, the
API process's CPU per upload and RSS (min/max sampled during the run), and the cost of
validating the chunk (structural walk vs the ffprobe CLI). Writes bench/ingest/RESULTS.md.

    python -m bench.ingest [--quick] [--uploads N] [--keep]
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

from bench.results import emit
from core.auth import mint_token
from core.storage import ObjectStore
from recorder.services import ManagedProcess, free_port, start_redis, start_s3

HERE = Path(__file__).parent
SECRET = "bench-secret-0123456789abcdef-0123456789"
T0 = 1_795_000_000_000
SLICES = 2  # each level alternates API and direct rounds this many times


def make_chunk(out: Path, target_mb: float = 2.0) -> bytes:
    """A 30-s VP8+Opus WebM of about `target_mb` (a browser's 30-s chunk)."""
    kbps = int(target_mb * 8 * 1024 / 30) - 32
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=15:duration=30",
                    "-f", "lavfi", "-i", "sine=f=440:d=30", "-c:v", "libvpx", "-b:v", f"{kbps}k",
                    "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus", "-ar", "48000", str(out)], check=True)
    return out.read_bytes()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc, self.samples, self.stop = psutil.Process(pid), [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(self.proc.memory_info().rss / 2**20)
            time.sleep(0.1)


async def api_round(url: str, token: str, rec: str, data: bytes, n: int, conc: int, seq0: int) -> list[float]:
    sem, lat = asyncio.Semaphore(conc), []
    digest = hashlib.sha256(data).hexdigest()
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
        async def one(i: int) -> None:
            async with sem:
                t = time.perf_counter()
                r = await c.put(f"/v1/recordings/{rec}/tracks/cam/chunks/{seq0 + i}", content=data,
                                headers={"Content-Type": "video/webm", "X-Content-SHA256": digest,
                                         "X-Chunk-Start": str(T0 + (seq0 + i) * 30000),
                                         "Authorization": f"Bearer {token}"})
                lat.append(time.perf_counter() - t)
                if r.status_code != 201:
                    raise RuntimeError(f"API answered {r.status_code}: {r.text[:200]}")
        await asyncio.gather(*(one(i) for i in range(n)))
    return lat


def direct_round(store: ObjectStore, data: bytes, n: int, conc: int, tag: str) -> list[float]:
    def one(i: int) -> float:
        t = time.perf_counter()
        store.put_stream(f"direct/{tag}/{i:06d}.webm", io.BytesIO(data), len(data), "video/webm")
        return time.perf_counter() - t
    with ThreadPoolExecutor(max_workers=conc) as pool:
        return list(pool.map(one, range(n)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer uploads per level")
    ap.add_argument("--uploads", type=int, default=0, help="uploads per concurrency level")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (S3 data, DB, API log) in /tmp")
    args = ap.parse_args()
    levels = [1, 10, 100]
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-", dir="/tmp"))
    load = os.getloadavg()[0]
    data = make_chunk(work / "chunk.webm")
    children: list[ManagedProcess] = []
    try:
        rport, sport, aport = free_port(), free_port(), free_port()
        children.append(start_redis(work / "redis", rport))
        children.append(start_s3(work / "s3", sport, "benchkey", "bench-secret-key"))
        env = {**os.environ, "RECORDER_DATABASE_URL": f"sqlite:///{work / 'rec.db'}",
               "RECORDER_REDIS_URL": f"redis://127.0.0.1:{rport}/0", "RECORDER_S3_ENDPOINT": f"127.0.0.1:{sport}",
               "RECORDER_S3_ACCESS_KEY": "benchkey", "RECORDER_S3_SECRET_KEY": "bench-secret-key",
               "RECORDER_JWT_SECRET": SECRET, "RECORDER_DATA_DIR": str(work), "RECORDER_LOG_LEVEL": "WARNING",
               "RECORDER_CHUNK_RATE_PER_MINUTE": "1000000", "RECORDER_ORG_RATE_PER_MINUTE": "1000000",
               "RECORDER_INGEST_STREAM_TO_S3": "true"}
        api = ManagedProcess("api", [sys.executable, "-m", "recorder", "api", "--port", str(aport)],
                             work / "api.log", env=env).start()
        children.append(api)
        url = f"http://127.0.0.1:{aport}"
        api.wait_until(lambda: _ok(f"{url}/readyz"), 60)
        # the same API with the old store step (spool to disk, then PUT): the design baseline, same run
        spool_port, spool_dir = free_port(), work / "spool-first"
        spool_dir.mkdir()
        spool_api = ManagedProcess("api-spool", [sys.executable, "-m", "recorder", "api", "--port", str(spool_port)],
                                   work / "api-spool.log", env={**env, "RECORDER_INGEST_STREAM_TO_S3": "false",
                                                                "RECORDER_DATA_DIR": str(spool_dir),
                                                                "RECORDER_DATABASE_URL": f"sqlite:///{spool_dir / 'rec.db'}"
                                                                }).start()
        children.append(spool_api)
        spool_url = f"http://127.0.0.1:{spool_port}"
        spool_api.wait_until(lambda: _ok(f"{spool_url}/readyz"), 60)
        token = mint_token(SECRET, sub="bench", org="bench", role="service", ttl_s=3600)
        rec, spool_rec = (httpx.post(f"{u}/v1/recordings", json={"client_key": "bench", "tracks": [{"track_id": "cam"}]},
                                     headers={"Authorization": f"Bearer {token}"}).json()["id"] for u in (url, spool_url))
        store = ObjectStore(f"127.0.0.1:{sport}", "benchkey", "bench-secret-key", "recordings")
        store.ensure_bucket()
        direct_round(store, data, 4, 2, "warm")  # first PUTs allocate volumes
        rows, seq0 = [], 0
        sampler = RssSampler(api.proc.pid)  # type: ignore[union-attr]
        sampler.start()
        for conc in levels:
            n = args.uploads or (max(20, conc * 2) if args.quick else max(50, conc * 4))
            lat_api, lat_dir, wall_api, wall_dir, cpu_s = [], [], 0.0, 0.0, 0.0
            lat_spool, wall_spool = [], 0.0
            for part, m in enumerate(_slices(n, SLICES)):  # API, direct, API, direct: load drift hits both
                cpu0, t = _cpu_s(sampler.proc), time.perf_counter()
                lat_api += asyncio.run(api_round(url, token, rec, data, m, conc, seq0))
                wall_api += time.perf_counter() - t
                cpu_s += _cpu_s(sampler.proc) - cpu0
                seq0 += m
                t = time.perf_counter()
                lat_dir += direct_round(store, data, m, conc, f"c{conc}p{part}")
                wall_dir += time.perf_counter() - t
                t = time.perf_counter()
                lat_spool += asyncio.run(api_round(spool_url, token, spool_rec, data, m, conc, seq0 - m))
                wall_spool += time.perf_counter() - t
            api_cpu_ms = cpu_s / n * 1000
            mb = n * len(data) / 2**20
            rows.append((conc, n, mb / wall_api, mb / wall_dir, pct(lat_api, .5), pct(lat_api, .99),
                         pct(lat_dir, .5), pct(lat_dir, .99), api_cpu_ms, mb / wall_spool, pct(lat_spool, .99)))
            for path, wall, lat in (("streaming API", wall_api, lat_api), ("spool-first API", wall_spool, lat_spool)):
                emit("ingest", f"chunk PUT throughput, {path} vs direct, {conc} client(s)", mb / wall, mb / wall_dir,
                     target="≥ 0.8×", met=wall_dir / wall >= 0.8, unit="MB/s")
                emit("ingest", f"chunk PUT p99, {path} vs direct, {conc} client(s)", pct(lat, .99), pct(lat_dir, .99),
                     target="≤ 1.5× direct" if conc == 100 else "", unit="s",
                     met=pct(lat, .99) <= 1.5 * pct(lat_dir, .99) if conc == 100 else None)
            print(f"c={conc:3d} n={n}: API {mb / wall_api:6.1f} MB/s  direct {mb / wall_dir:6.1f} MB/s  "
                  f"ratio {wall_dir / wall_api:.2f}  API p99 {pct(lat_api, .99):.3f}s  "
                  f"API CPU {api_cpu_ms:.1f} ms/upload  spool-first ratio {wall_dir / wall_spool:.2f} "
                  f"p99 {pct(lat_spool, .99):.3f}s", flush=True)
        sampler.stop.set()
        write_results(rows, len(data), sampler.samples, validation_ms(work / "chunk.webm"), load)
    finally:
        for child in reversed(children):
            child.stop()
        if args.keep:
            print(f"work dir kept: {work}")
        else:  # a full run leaves ~1-2 GB of S3 volumes behind
            shutil.rmtree(work, ignore_errors=True)


def _slices(n: int, k: int) -> list[int]:
    """n uploads as k near-equal slices (the last takes the remainder)."""
    return [n // k] * (k - 1) + [n - n // k * (k - 1)]


def _cpu_s(proc: psutil.Process) -> float:
    """CPU seconds of the API process and its reaped children (ffprobe, when it is used)."""
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def validation_ms(path: Path, reps: int = 15) -> dict[str, float]:
    """Median CPU ms to validate the chunk: the structural walk vs the ffprobe CLI (+ its process)."""
    from ingest.media import ffprobe_file, probe_file

    def cpu_ms(check) -> float:
        samples = []
        for _ in range(reps):
            own, kids = time.process_time(), os.times()
            check(str(path), "webm")
            after = os.times()
            samples.append((time.process_time() - own + after.children_user - kids.children_user
                            + after.children_system - kids.children_system) * 1000)
        return statistics.median(samples)
    return {"structural": cpu_ms(probe_file), "ffprobe": cpu_ms(ffprobe_file)}


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (OSError, http.client.HTTPException):  # refused, reset, timeout, HTTP errors
        return False


NOTES = "<!-- notes: kept when the bench rewrites this file -->"


def write_results(rows: list[tuple], size: int, rss: list[float], check_ms: dict[str, float],
                  load: float) -> None:
    """Rewrite the generated part of RESULTS.md; hand-written notes after NOTES are kept."""
    lines = ["# bench/ingest", "",
             (f"Chunk: {size / 2**20:.2f} MB real WebM (VP8+Opus, 30 s). API = `recorder api` (uvicorn, 1 process; the body "
              "is streamed to its chunk key while received, under the key's write lease, and marked stored once "
              "verified; spool-first = the same API with `RECORDER_INGEST_STREAM_TO_S3=false`: spool to disk, "
              "then PUT) "
              "on SQLite + redis-server + SeaweedFS `weed mini`; direct = minio SDK `put_object` of the same bytes "
              "to the same S3 server. Same run, same machine (2 cores: client, API and S3 server share them; "
              f"1-min load average {load:.1f} at the start). Each level alternates API, direct and spool-first rounds "
              f"({SLICES} slices each) so that load from other processes hits all three."), "",
             ("| clients | uploads | API MB/s | direct MB/s | API/direct | API p50 s | API p99 s | direct p50 s "
              "| direct p99 s | API CPU ms/upload | spool-first API/direct | spool-first p99 s |"),
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for conc, n, api, direct, a50, a99, d50, d99, cpu, spool, s99 in rows:
        lines.append(f"| {conc} | {n} | {api:.1f} | {direct:.1f} | {api / direct:.2f}× | {a50:.3f} | {a99:.3f} | "
                     f"{d50:.3f} | {d99:.3f} | {cpu:.1f} | {spool / direct:.2f}× | {s99:.3f} |")
    lines += ["", (f"API RSS during the run: min {min(rss):.0f} MB, max {max(rss):.0f} MB, median "
                   f"{statistics.median(rss):.0f} MB ({len(rss)} samples) — bodies are spooled to disk, not memory."),
              "", ("Validating this chunk (median CPU incl. child processes): structural walk "
                   f"(`ingest.media.probe_file`) {check_ms['structural']:.1f} ms, `ffprobe` CLI "
                   f"{check_ms['ffprobe']:.1f} ms ({check_ms['ffprobe'] / check_ms['structural']:.0f}×)."), ""]
    out = HERE / "RESULTS.md"
    old = out.read_text() if out.exists() else ""
    notes = old[old.index(NOTES):] if NOTES in old else NOTES + "\n"
    out.write_text("\n".join(lines) + "\n" + notes)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
