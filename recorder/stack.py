"""The single-machine stack behind `recorder up`: real services + our processes.

Starts redis-server and an S3 server on 127.0.0.1, then the API, the workers and the
bot as child processes with `RECORDER_*` pointing at them; data under `data_dir`.
`stop()` terminates every child it started, in reverse order (no orphans).
"""
from __future__ import annotations

import json
import os
import secrets
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from recorder.services import ManagedProcess, free_port, port_open, start_redis, start_s3


@dataclass
class StackOptions:
    data_dir: Path = Path("./var")
    api_port: int = 8000
    worker_processes: int = 1
    worker_threads: int = 2
    with_bot: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)


def _credentials(data_dir: Path) -> dict[str, str]:
    """Generated once per data dir and reused, so restarts keep their data readable."""
    path = data_dir / "credentials.json"
    if path.exists():
        return json.loads(path.read_text())
    creds = {"s3_access_key": "local-" + secrets.token_hex(4), "s3_secret_key": secrets.token_hex(16),
             "jwt_secret": secrets.token_hex(24)}
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(creds))
    path.chmod(0o600)
    return creds


class LocalStack:
    """Everything on one machine; use as a context manager or call start()/stop()."""

    def __init__(self, options: StackOptions) -> None:
        self.opt = options
        self.data_dir = options.data_dir.resolve()
        self.children: list[ManagedProcess] = []
        self.env: dict[str, str] = {}

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.opt.api_port}"

    def start(self, progress=print) -> "LocalStack":
        creds = _credentials(self.data_dir)
        if port_open(self.opt.api_port):
            raise RuntimeError(f"port {self.opt.api_port} is busy; pass --api-port")
        redis_port, s3_port = free_port(), free_port()
        progress(f"starting redis-server on 127.0.0.1:{redis_port}")
        self.children.append(start_redis(self.data_dir / "redis", redis_port))
        progress(f"starting S3 server on 127.0.0.1:{s3_port}")
        self.children.append(start_s3(self.data_dir / "s3", s3_port, creds["s3_access_key"], creds["s3_secret_key"]))
        self.env = {**os.environ, **self.opt.extra_env,
                    "RECORDER_DATA_DIR": str(self.data_dir),
                    "RECORDER_DATABASE_URL": f"sqlite:///{self.data_dir / 'recorder.db'}",
                    "RECORDER_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                    "RECORDER_S3_ENDPOINT": f"127.0.0.1:{s3_port}",
                    "RECORDER_S3_ACCESS_KEY": creds["s3_access_key"],
                    "RECORDER_S3_SECRET_KEY": creds["s3_secret_key"],
                    "RECORDER_JWT_SECRET": creds["jwt_secret"],
                    "RECORDER_API_PORT": str(self.opt.api_port),
                    "RECORDER_BOT_API_URL": self.api_url,
                    "RECORDER_WEBHOOK_ALLOW_PRIVATE": "true"}  # one machine: receivers run on loopback
        (self.data_dir / "stack.env").write_text(
            "".join(f"{k}={v}\n" for k, v in self.env.items() if k.startswith("RECORDER_")))
        self._start_child("api", ["api"])
        self._wait_api()
        self._start_child("worker", ["worker", "--processes", str(self.opt.worker_processes),
                                     "--threads", str(self.opt.worker_threads)])
        if self.opt.with_bot:
            self._start_child("bot", ["bot"])
        return self

    def _start_child(self, name: str, args: list[str]) -> None:
        cmd = [sys.executable, "-m", "recorder", *args]
        proc = ManagedProcess(name, cmd, self.data_dir / "logs" / f"{name}.log", env=self.env).start()
        self.children.append(proc)

    def _wait_api(self, timeout_s: float = 60) -> None:
        api = self.children[-1]

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{self.api_url}/readyz", timeout=2) as resp:
                    return resp.status == 200
            except Exception:
                return False

        api.wait_until(ready, timeout_s)

    def check_children(self) -> list[str]:
        """Names of children that have died."""
        return [c.name for c in self.children if not c.alive()]

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()

    def __enter__(self) -> "LocalStack":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_forever(stack: LocalStack, poll_s: float = 1.0) -> None:
    """Block until a child dies (then raise) — Ctrl-C/SIGTERM break out via KeyboardInterrupt."""
    while True:
        dead = stack.check_children()
        if dead:
            raise RuntimeError(f"child process(es) exited: {', '.join(dead)}; see {stack.data_dir / 'logs'}")
        time.sleep(poll_s)
