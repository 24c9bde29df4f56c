"""`deliver_webhook`: POST one signed event to one org endpoint, retrying with backoff.

Each attempt is a `WebhookAttempt` row (status code or our error word, duration); a 2xx
marks the delivery `delivered`. Anything else raises `DeliveryFailed` (retryable), so the
one worker policy (`workers.policy`) retries it with exponential backoff; the attempt that
would exceed `worker_max_retries` marks the delivery `failed` and stops.
"""
from __future__ import annotations

import time

import httpx
from core import webhooks
from core.db import session_scope
from core.errors import DependencyDown, InvalidInput
from core.logging import get_logger
from core.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from core.models._types import now_ms
from workers import broker as res
from workers.policy import actor

log = get_logger("workers.webhooks")


class DeliveryFailed(DependencyDown):
    """The receiver did not answer 2xx: retried with backoff."""

    code = "webhook_delivery_failed"


def _attempt(endpoint: WebhookEndpoint, delivery: WebhookDelivery, timeout_s: float) -> tuple[int | None, str | None]:
    """(status code, None) or (None, error word) — never a library's message."""
    body = webhooks.body_of(delivery)
    try:
        webhooks.check_url(endpoint.url, res.settings.webhook_allow_private)
    except InvalidInput as exc:
        return None, exc.code
    headers = webhooks.headers(endpoint.secret, delivery.id, int(time.time()), body)
    try:
        resp = httpx.post(endpoint.url, content=body.encode(), headers=headers, timeout=timeout_s,
                          follow_redirects=False)
    except httpx.TimeoutException:
        return None, "timeout"
    except httpx.HTTPError:
        return None, "connection_failed"
    return resp.status_code, None


@actor("default")
def deliver_webhook(delivery_id: str) -> None:
    engine = res.engine()
    with session_scope(engine) as s:
        delivery = s.get(WebhookDelivery, delivery_id)
        endpoint = s.get(WebhookEndpoint, delivery.endpoint_id) if delivery else None
    if delivery is None or endpoint is None or delivery.status == "delivered":
        return
    started = time.monotonic()
    code, error = _attempt(endpoint, delivery, res.settings.webhook_timeout_s)
    ok = code is not None and 200 <= code < 300
    with session_scope(engine) as s:
        row = s.get(WebhookDelivery, delivery_id)
        assert row is not None
        s.add(WebhookAttempt(delivery_id=delivery_id, status_code=code, error=error,
                             duration_ms=int((time.monotonic() - started) * 1000)))
        row.attempts += 1
        row.last_status_code, row.last_error = code, error
        last = row.attempts > res.settings.worker_max_retries
        row.status = "delivered" if ok else ("failed" if last else "retrying")
        row.delivered_at = now_ms() if ok else None
        s.add(row)
    log.info("webhook_attempt", delivery_id=delivery_id, event=delivery.event_type, status_code=code, error=error,
             delivered=ok)
    if not ok and not last:
        raise DeliveryFailed(f"receiver answered {code or error}")

