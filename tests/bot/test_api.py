"""The bot's API client against a real (tiny) HTTP server: retries, Retry-After, errors, auth."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from typing import Self

import pytest

from bot.api import ApiClient, ApiOptions
from core import errors
from core.auth import verify_token
from recorder.services import free_port

SECRET = "test-jwt-secret-0123456789abcdef"


class _Server:
    """Answers from a script of (status, headers, body); records request times and tokens."""

    def __init__(self, script: list[tuple[int, dict, dict]]) -> None:
        self.script, self.seen = list(script), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.seen.append((time.monotonic(), self.headers.get("Authorization", "")))
                status, headers, body = outer.script.pop(0) if outer.script else (200, {}, {"ok": True})
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


def _client(url: str, give_up_s: float = 10.0) -> ApiClient:
    return ApiClient(ApiOptions(base_url=url, jwt_secret=SECRET, jwt_issuer="interview-recorder",
                                control_give_up_s=give_up_s, backoff_max_s=0.05))


def test_transient_errors_are_retried_no_sooner_than_retry_after():
    busy = {"code": "storage_unavailable", "message": "S3 down"}
    script = [(503, {"Retry-After": "1"}, busy), (429, {"Retry-After": "1"}, {"code": "rate_limited"}),
              (201, {}, {"id": "rec_1"})]

    async def run(url: str):
        async with _client(url) as api:
            return await api.call("acme", "POST", "/v1/recordings", json={})

    with _Server(script) as server:
        assert asyncio.run(run(server.url)) == {"id": "rec_1"}
    times = [t for t, _ in server.seen]
    assert len(times) == 3
    assert all(b - a >= 1.0 for a, b in pairwise(times)), times
    who = verify_token(SECRET, server.seen[0][1].removeprefix("Bearer "))
    assert (who.org, who.role, who.scope) == ("acme", "service", "api")


def test_client_errors_are_raised_at_once():
    async def run(url: str):
        async with _client(url) as api:
            await api.call("acme", "POST", "/v1/recordings/r/finalize")

    with _Server([(409, {}, {"code": "chunk_conflict", "message": "other bytes"})]) as server, \
            pytest.raises(errors.Conflict) as err:
        asyncio.run(run(server.url))
    assert err.value.code == "chunk_conflict" and len(server.seen) == 1


def test_an_unreachable_api_is_a_retryable_dependency_error_after_giving_up():
    async def run():
        async with _client(f"http://127.0.0.1:{free_port()}", give_up_s=0.3) as api:
            await api.call("acme", "POST", "/v1/recordings")

    with pytest.raises(errors.DependencyDown) as err:
        asyncio.run(run())
    assert err.value.retryable and err.value.code == "api_unreachable"
