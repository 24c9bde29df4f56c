"""Org webhooks against a real local HTTP receiver and a real worker process.

The receiver answers 500 twice, then 200: the event arrives on the third try, every try
carries the same `webhook-id`, the signature verifies with the Standard Webhooks reference
library (`standardwebhooks`, not our code), and the delivery log shows all three attempts.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Iterator

import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook

from core import webhooks
from core.errors import InvalidInput
from core.queue import make_broker
from recorder.app import create_app
from tests.conftest import auth
from tests.workers.conftest import wait_for


class Receiver:
    """A loopback HTTP server answering the queued status codes (then 200), keeping each request."""

    def __init__(self, codes: list[int]) -> None:
        self.codes, self.requests = list(codes), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(outer.codes.pop(0) if outer.codes else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api(settings) -> Iterator[TestClient]:
    settings = settings.model_copy(update={"webhook_allow_private": True})
    with TestClient(create_app(settings)) as client:
        yield client


def test_receiver_failing_twice_gets_the_event_on_the_third_try(api, settings, engine, token_for, start_media_worker,
                                                                 ) -> None:
    admin = auth(token_for(role="admin", org="acme"))
    with Receiver([500, 500]) as receiver:
        made = api.post("/v1/webhooks", json={"url": receiver.url, "events": ["recording.ready"]}, headers=admin)
        assert made.status_code == 201, made.text
        endpoint, secret = made.json()["id"], made.json()["secret"]
        assert "secret" not in api.get("/v1/webhooks", headers=admin).json()[0]  # shown once
        broker = make_broker(settings.redis_url)
        [delivery] = webhooks.emit(engine, broker, "acme", "recording.ready", {"recording_id": "rec_1"})
        assert webhooks.emit(engine, broker, "acme", "transcript.ready", {"recording_id": "rec_1"}) == []
        assert webhooks.emit(engine, broker, "globex", "recording.ready", {"recording_id": "rec_2"}) == []
        worker = start_media_worker(RECORDER_WORKER_MIN_BACKOFF_MS="100", RECORDER_WORKER_MAX_BACKOFF_MS="400",
                                    RECORDER_WEBHOOK_ALLOW_PRIVATE="true")

        def log() -> list[dict]:
            return api.get(f"/v1/webhooks/{endpoint}/deliveries", headers=admin).json()

        wait_for(lambda: log()[0]["status"] == "delivered", 60, "the third attempt", on_timeout=worker.log)
        [entry] = log()
        assert entry["id"] == delivery and entry["event_type"] == "recording.ready"
        assert [a["status_code"] for a in entry["attempts"]] == [500, 500, 200]
        assert len(receiver.requests) == 3
        ids = {h["webhook-id"] for h, _ in receiver.requests}
        assert ids == {delivery}  # one id across retries: the receiver's dedup key
        headers, body = receiver.requests[-1]
        payload = Webhook(secret).verify(body, headers)  # the reference implementation
        assert payload["type"] == "recording.ready" and payload["data"] == {"recording_id": "rec_1"}
        tampered = body.replace(b"rec_1", b"rec_9")
        with pytest.raises(Exception):
            Webhook(secret).verify(tampered, headers)
        # manual redeliver: the same event again, same id
        again = api.post(f"/v1/webhooks/{endpoint}/deliveries/{delivery}/redeliver", headers=admin)
        assert again.status_code == 202
        wait_for(lambda: len(receiver.requests) == 4, 30, "the redelivery", on_timeout=worker.log)
        assert receiver.requests[-1][0]["webhook-id"] == delivery


def test_endpoint_urls_are_validated(api, token_for) -> None:
    admin = auth(token_for(role="admin", org="acme"))
    for url, code in (("ftp://example.org/x", "bad_webhook_url"), ("http://user:pw@example.org/x", "bad_webhook_url"),
                      ("javascript:alert(1)", "bad_webhook_url")):
        resp = api.post("/v1/webhooks", json={"url": url}, headers=admin)
        assert resp.status_code == 400 and resp.json()["code"] == code, url
    resp = api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/x", "events": ["nope"]}, headers=admin)
    assert resp.status_code == 400 and resp.json()["code"] == "bad_event_type"
    for url in ("http://127.0.0.1:8080/x", "http://10.1.2.3/x", "http://[::1]/x", "http://169.254.169.254/latest"):
        with pytest.raises(InvalidInput) as err:
            webhooks.check_url(url, allow_private=False)
        assert err.value.code == "private_webhook_url", url
    assert webhooks.check_url("http://127.0.0.1:8080/x", allow_private=True)


def test_signature_matches_the_reference_library() -> None:
    secret = webhooks.new_secret()
    body = json.dumps({"type": "recording.ready", "data": {"recording_id": "r"}})
    headers = webhooks.headers(secret, "msg_abc", 1_767_225_600, body)
    wh = Webhook(secret)
    from datetime import datetime, timezone

    assert headers["webhook-signature"] == wh.sign("msg_abc", datetime.fromtimestamp(1_767_225_600, timezone.utc), body)
