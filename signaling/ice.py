"""ICE server lists with time-limited TURN credentials (the coturn REST API scheme).

coturn with `use-auth-secret` + `static-auth-secret=S` accepts username
`"<expiry epoch s>:<user>"` and password `base64(HMAC-SHA1(S, username))` until expiry.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any


def turn_credentials(secret: str, user: str, ttl_s: int, now_s: float) -> tuple[str, str]:
    """`(username, credential)` valid for `ttl_s` seconds from `now_s`."""
    username = f"{int(now_s) + ttl_s}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(stun_urls: list[str], turn_urls: list[str], turn_secret: str, *, user: str,
                ttl_s: int, now_s: float) -> list[dict[str, Any]]:
    """RTCIceServer dicts: STUN as given, TURN only when a shared secret is configured."""
    servers: list[dict[str, Any]] = []
    if stun_urls:
        servers.append({"urls": list(stun_urls)})
    if turn_urls and turn_secret:
        username, credential = turn_credentials(turn_secret, user, ttl_s, now_s)
        servers.append({"urls": list(turn_urls), "username": username, "credential": credential})
    return servers
