"""Real API servers for signaling tests: uvicorn in a thread, or `recorder api` processes.

Both run `recorder.app.create_app(settings)` on a free 127.0.0.1 port against the
session's real Redis, S3 server and a per-test database.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from core.auth import mint_token
from core.settings import Settings
from recorder.services import ManagedProcess, free_port, port_open


class ThreadServer:
    """uvicorn serving the real app in a background thread."""

    def __init__(self, settings: Settings) -> None:
        from recorder.app import create_app

        self.settings, self.port = settings, free_port()
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_config=None,
                                ws_max_size=256 * 1024, lifespan="on", timeout_graceful_shutdown=3)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    def start(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test API server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, token: str) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/signal?token={token}"


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes `Settings()` equal `settings` in a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECORDER_")}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        env[f"RECORDER_{name.upper()}"] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return env


class ProcessServer:
    """`python -m recorder api` in its own process group, JSON logs in `log_path`."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings, self.port, self.log_path = settings, free_port(), log_path
        self.proc = ManagedProcess(f"api-{self.port}", [sys.executable, "-m", "recorder", "api", "--host",
                                                         "127.0.0.1", "--port", str(self.port)],
                                   log_path, env=settings_env(settings), cwd=Path(__file__).resolve().parents[2])

    def launch(self) -> ProcessServer:
        self.proc.start()
        return self

    def wait_ready(self) -> ProcessServer:
        self.proc.wait_until(lambda: port_open(self.port), 60)
        return self

    def start(self) -> ProcessServer:
        return self.launch().wait_ready()

    def stop(self) -> None:
        self.proc.stop()

    base_url = ThreadServer.base_url
    ws_url = ThreadServer.ws_url

    def phases(self, room_id: str, want: set[tuple[str, str]], timeout_s: float = 5.0) -> set[tuple[str, str]]:
        """`(phase, participant_id)` pairs logged for a room, waiting up to `timeout_s` for `want`."""
        deadline = time.monotonic() + timeout_s
        while True:
            seen = {(e.get("phase"), e.get("participant_id")) for e in self.logs() if e.get("room_id") == room_id}
            if want <= seen or time.monotonic() > deadline:
                return seen
            time.sleep(0.1)

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out


@pytest.fixture
def make_server(settings: Settings) -> Iterator[Callable[..., ThreadServer]]:
    """`make_server(**setting_overrides)` → a started in-thread server (stopped after the test)."""
    started: list[ThreadServer] = []

    def _make(base: Settings | None = None, **overrides: Any) -> ThreadServer:
        server = ThreadServer((base or settings).model_copy(update=overrides)).start()
        started.append(server)
        return server

    yield _make
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server) -> ThreadServer:
    return make_server()


@pytest.fixture
def api_token(settings: Settings) -> Callable[..., str]:
    def _mint(role: str = "interviewer", org: str = "acme", sub: str = "alice", **extra: Any) -> str:
        return mint_token(settings.jwt_secret, sub=sub, org=org, role=role, ttl_s=600, issuer=settings.jwt_issuer,
                          **extra)

    return _mint


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_room(base_url: str, token: str, slot: str = "slot-1", candidate: str = "cand-1", **body: Any) -> dict:
    r = httpx.post(f"{base_url}/v1/rooms", json={"slot_id": slot, "candidate_id": candidate, **body},
                   headers=bearer(token), timeout=10)
    assert r.status_code in (200, 201), r.text
    return r.json()


def join_token(base_url: str, token: str, room_id: str, participant: str, role: str = "candidate",
               name: str = "") -> dict:
    r = httpx.post(f"{base_url}/v1/rooms/{room_id}/tokens", headers=bearer(token), timeout=10,
                   json={"participant_id": participant, "role": role, "display_name": name or participant})
    assert r.status_code == 200, r.text
    return r.json()
