"""Org webhooks: endpoint URLs we may call, Standard Webhooks signatures, and `emit`.

Signing follows the Standard Webhooks scheme (standardwebhooks.com): the secret is
`whsec_` + base64 bytes; each request carries `webhook-id` (the delivery id, stable across
retries: the receiver's dedup key), `webhook-timestamp` (epoch seconds) and
`webhook-signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`.

`emit` writes one delivery row per subscribed, active endpoint of the org and enqueues the
`deliver_webhook` actor by name (retries with exponential backoff live in workers/).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
from typing import Any
from urllib.parse import urlsplit

import dramatiq
from sqlalchemy.engine import Engine
from sqlmodel import select

from core.db import session_scope
from core.errors import InvalidInput
from core.models import WebhookDelivery, WebhookEndpoint
from core.models.webhook import EVENT_TYPES
from core.queue import enqueue

SECRET_PREFIX = "whsec_"
MAX_ENDPOINTS = 20  # per org


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` header value for this message."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    return {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, msg_id, timestamp, body), "user-agent": "interview-recorder-webhooks"}


def body_of(delivery: WebhookDelivery) -> str:
    """The JSON body sent for a delivery: the same bytes on every attempt."""
    return json.dumps({"type": delivery.event_type, "timestamp": delivery.created_at // 1000,
                       "data": delivery.payload or {}}, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------- URL rules

def _private(host: str) -> bool:
    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except (socket.gaierror, UnicodeError):
        raise InvalidInput(f"webhook host {host!r} does not resolve", code="bad_webhook_url") from None
    for addr in addrs:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast \
                or ip.is_unspecified:
            return True
    return False


def check_url(url: str, allow_private: bool) -> str:
    """http/https only, a host, no credentials; loopback/private/link-local addresses refused
    unless `allow_private` (the local stack and tests) — checked at registration and again
    before each delivery (DNS may change)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("webhook URL must be http(s)://host/…", code="bad_webhook_url")
    if parts.username or parts.password:
        raise InvalidInput("webhook URL must not carry credentials", code="bad_webhook_url")
    if not allow_private and _private(parts.hostname):
        raise InvalidInput("webhook URL points to a private or loopback address", code="private_webhook_url")
    return url


def check_events(events: list[str] | None) -> list[str] | None:
    unknown = sorted(set(events or ()) - set(EVENT_TYPES))
    if unknown:
        raise InvalidInput(f"unknown event types {unknown}; one of {list(EVENT_TYPES)}", code="bad_event_type")
    return events or None


# ---------------------------------------------------------------- emit

def emit(engine: Engine, broker: dramatiq.Broker, org: str, event_type: str, data: dict[str, Any]) -> list[str]:
    """Queue `event_type` for every active endpoint of `org` subscribed to it; the delivery ids."""
    assert event_type in EVENT_TYPES, event_type
    with session_scope(engine) as s:
        endpoints = s.exec(select(WebhookEndpoint).where(WebhookEndpoint.org == org,
                                                         WebhookEndpoint.active == True)).all()  # noqa: E712
        ids = []
        for ep in endpoints:
            if ep.events and event_type not in ep.events:
                continue
            delivery = WebhookDelivery(endpoint_id=ep.id, org=org, event_type=event_type, payload=data)
            s.add(delivery)
            ids.append(delivery.id)
    for delivery_id in ids:
        enqueue(broker, "deliver_webhook", delivery_id)
    return ids
