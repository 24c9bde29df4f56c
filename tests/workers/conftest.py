"""Shared fixtures for worker tests: real `dramatiq` worker processes on the test services.

Media fixtures: `media_worker_env`, `start_media_worker`. Workers read `Settings` at import
(`workers.broker`), so they run as subprocesses with the test settings in their environment.
Media workers also serve the `default` queue, where `step_failed` (retries exhausted) runs.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from sqlalchemy.engine import Engine

from core.db import create_all, make_engine
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives a worker process exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECORDER_")}
    env.update({
        "RECORDER_ENV": "test", "RECORDER_DATABASE_URL": settings.database_url,
        "RECORDER_REDIS_URL": settings.redis_url, "RECORDER_S3_ENDPOINT": settings.s3_endpoint,
        "RECORDER_S3_ACCESS_KEY": settings.s3_access_key, "RECORDER_S3_SECRET_KEY": settings.s3_secret_key,
        "RECORDER_S3_BUCKET": settings.s3_bucket, "RECORDER_JWT_SECRET": settings.jwt_secret,
        "RECORDER_WINDOW_MS": str(settings.window_ms), "RECORDER_LOG_JSON": "true",
        "PYTHONPATH": str(ROOT),
    })
    env.update(extra)
    return env


class WorkerProcess:
    """One `dramatiq workers.actors` process group (ours: stopped or killed by its own pid)."""

    def __init__(self, env: dict[str, str], queues: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")
        dramatiq = Path(sys.executable).with_name("dramatiq")
        self.proc = subprocess.Popen(
            [str(dramatiq), "workers.actors", "--processes", "1", "--threads", "1", "--queues", *queues],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the whole group: no cleanup, as in a crash or OOM kill."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._log.write(b"--- test: SIGTERM grace of 15 s ran out; SIGKILL\n")
                self.kill()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """The test's database with every table created (what the workers' engine() would make)."""
    eng = make_engine(settings.database_url)
    create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def media_worker_env(settings: Settings) -> Callable[..., dict[str, str]]:
    def _env(**extra: str) -> dict[str, str]:
        return settings_env(settings, **extra)
    return _env


@pytest.fixture
def start_media_worker(media_worker_env, tmp_path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start media workers (`start_media_worker(RECORDER_WINDOW_MS="4000")`); all stopped at teardown."""
    started: list[WorkerProcess] = []

    def _start(**extra: str) -> WorkerProcess:
        w = WorkerProcess(media_worker_env(**extra), ["media", "default"], tmp_path / f"worker{len(started)}.log")
        started.append(w)
        return w

    yield _start
    for w in started:
        w.stop()


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.1,
             on_timeout: Callable[[], str] | None = None) -> object:
    """Poll until `predicate()` is truthy (bounded); fail with `what` otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    detail = on_timeout() if on_timeout else ""
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n{detail}")
