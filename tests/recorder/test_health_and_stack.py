"""Health endpoints, the `recorder` CLI and the local stack (`recorder up`)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from fastapi.testclient import TestClient

from recorder.app import create_app
from recorder.services import free_port
from tests.conftest import make_settings


def test_healthz_and_readyz_ok(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "redis": "ok", "s3": "ok"}


@pytest.mark.parametrize("broken", ["s3", "redis"])
def test_readyz_names_the_failing_dependency(broken, sqlite_url, redis_url, s3_server, bucket, tmp_path) -> None:
    settings = make_settings(sqlite_url, redis_url, s3_server, bucket, tmp_path)
    dead = free_port()
    if broken == "s3":
        settings = settings.model_copy(update={"s3_endpoint": f"127.0.0.1:{dead}"})
    else:
        settings = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{dead}/0"})
    with TestClient(create_app(settings)) as c:
        resp = c.get("/readyz")
    assert resp.status_code == 503 and resp.headers["retry-after"]
    body = resp.json()
    assert body["code"] == "dependency_down" and list(body["failed"]) == [broken]


def test_cli_help_on_every_command() -> None:
    for cmd in ([], ["api"], ["worker"], ["bot"], ["up"], ["token"], ["demo"]):
        done = subprocess.run([sys.executable, "-m", "recorder", *cmd, "--help"], capture_output=True, text=True)
        assert done.returncode == 0 and "Usage" in done.stdout, (cmd, done.stderr[-500:])


def test_token_command_mints_a_verifiable_token(monkeypatch) -> None:
    from core.auth import verify_token

    secret = "cli-secret-0123456789abcdef-0123456789"
    env = {**os.environ, "RECORDER_JWT_SECRET": secret}
    done = subprocess.run([sys.executable, "-m", "recorder", "token", "--org", "acme", "--role", "assessor",
                           "--sub", "ann", "--ttl", "60"], capture_output=True, text=True, env=env, check=True)
    p = verify_token(secret, done.stdout.strip())
    assert (p.org, p.role, p.sub) == ("acme", "assessor", "ann")


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_recorder_up_serves_and_stops_every_child(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "recorder", "up", "--data-dir", str(tmp_path / "var"),
                             "--api-port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            lines.append(line)
            if "ready — Ctrl-C" in line:
                break
        assert any("ready" in x for x in lines), "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            assert resp.status == 200
        names, deadline = "", time.monotonic() + 30
        while "dramatiq" not in names and time.monotonic() < deadline:  # `recorder worker` execs dramatiq
            time.sleep(0.2)
            kids = _children(proc.pid)
            names = " ".join(" ".join(k.cmdline()) for k in kids)
        assert "redis-server" in names and "weed" in names and "recorder api" in names.replace("-m ", "")
        assert "dramatiq" in names and "recorder bot" in names.replace("-m ", "")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        proc.stdout.close()  # type: ignore[union-attr]
    time.sleep(0.5)
    alive = [k for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"orphans left: {[k.cmdline() for k in alive]}"
