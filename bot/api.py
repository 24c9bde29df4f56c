"""The bot's HTTP client for our own API (rooms, join tokens, recordings, chunks, finalize).

The bot talks to the API over HTTP like any other client (no ingest/signaling imports).
It mints its own short-lived `service` API tokens per org from the shared JWT secret.
Every call retries transient failures (network errors, 429, 5xx) with exponential
backoff + jitter, honouring `Retry-After`; other errors are raised as `core.errors`.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Self

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from bot.segments import ClosedSegment
from core import errors
from core.auth import mint_token
from core.logging import get_logger

log = get_logger("bot.api")
SERVICE_SUB = "recorder-bot"
TOKEN_TTL_S = 3600
_STATUS = {400: errors.InvalidInput, 401: errors.Unauthorized, 403: errors.Forbidden, 404: errors.NotFound,
           409: errors.Conflict, 413: errors.TooLarge, 415: errors.UnsupportedMedia}
MAX_VOCABULARY = 200  # what POST /v1/recordings accepts


def error_for(status: int, body: dict[str, Any], retry_after: str | None) -> errors.RecorderError:
    """An HTTP error answer → our error tree (`details["retry_after_s"]` from the header)."""
    code, message = str(body.get("code") or "http_error"), str(body.get("message") or f"HTTP {status}")
    after = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
    extra = {"status": status} | ({"retry_after_s": after} if after is not None else {})
    if status == 429:
        return errors.RateLimited(message, retry_after=after or 1.0, code=code, **extra)
    if status >= 500:
        return errors.DependencyDown(message, code=code, **extra)
    if status == 422:
        cls = errors.InvalidMedia if "media" in code else errors.InvalidState
        return cls(message, code=code, **extra)
    return _STATUS.get(status, errors.InvalidInput)(message, code=code, **extra)


class _BackoffOrRetryAfter(wait_base):
    """Exponential backoff with jitter, but never sooner than the server's Retry-After."""

    def __init__(self, backoff: wait_base) -> None:
        self.backoff = backoff

    def __call__(self, retry_state: Any) -> float:
        wait = self.backoff(retry_state)
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        after = exc.details.get("retry_after_s") if isinstance(exc, errors.RecorderError) else None
        return max(wait, float(after)) if after else wait


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, errors.RecorderError) and exc.retryable


@dataclass(frozen=True)
class ApiOptions:
    base_url: str
    jwt_secret: str
    jwt_issuer: str
    timeout_s: float = 30.0
    give_up_s: float = 900.0       # chunk uploads
    control_give_up_s: float = 60.0  # tokens, recordings, finalize
    backoff_max_s: float = 30.0


class ApiClient:
    """One `httpx.AsyncClient` for the whole bot; use as an async context manager."""

    def __init__(self, opt: ApiOptions) -> None:
        self.opt = opt
        self.http = httpx.AsyncClient(base_url=opt.base_url.rstrip("/"), timeout=opt.timeout_s)
        self._tokens: dict[str, tuple[str, float]] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    def token(self, org: str) -> str:
        """A `service` API token for `org`, re-minted when it has < 5 minutes left."""
        cached = self._tokens.get(org)
        if cached and cached[1] - time.time() > 300:
            return cached[0]
        token = mint_token(self.opt.jwt_secret, sub=SERVICE_SUB, org=org, role="service", ttl_s=TOKEN_TTL_S,
                           issuer=self.opt.jwt_issuer)
        self._tokens[org] = (token, time.time() + TOKEN_TTL_S)
        return token

    async def _once(self, org: str, method: str, url: str, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token(org)}", **kw.pop("headers", {})}
        try:
            r = await self.http.request(method, url, headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise errors.DependencyDown(f"{method} {url}: {type(exc).__name__}: {exc}", code="api_unreachable") from exc
        if r.status_code >= 400:
            try:
                body = r.json()
            except ValueError:
                body = {}
            raise error_for(r.status_code, body if isinstance(body, dict) else {}, r.headers.get("retry-after"))
        return r.json() if r.content else {}

    async def call(self, org: str, method: str, url: str, give_up_s: float | None = None, **kw: Any) -> Any:
        """One API call with retries (see module doc)."""
        retrying = AsyncRetrying(
            retry=retry_if_exception(_retryable), reraise=True,
            stop=stop_after_delay(give_up_s if give_up_s is not None else self.opt.control_give_up_s),
            wait=_BackoffOrRetryAfter(wait_random_exponential(multiplier=0.5, max=self.opt.backoff_max_s)),
            before_sleep=lambda rs: log.info("api_retry", method=method, url=url, attempt=rs.attempt_number,
                                             error=str(rs.outcome.exception())))
        async for attempt in retrying:
            with attempt:
                return await self._once(org, method, url, **kw)

    # ---- rooms -------------------------------------------------------------------
    async def room(self, org: str, room_id: str) -> dict[str, Any]:
        return await self.call(org, "GET", f"/v1/rooms/{room_id}")

    async def join_token(self, org: str, room_id: str, participant_id: str, display_name: str) -> dict[str, Any]:
        body = {"participant_id": participant_id, "role": "recorder", "display_name": display_name}
        return await self.call(org, "POST", f"/v1/rooms/{room_id}/tokens", json=body)

    # ---- recordings --------------------------------------------------------------
    async def open_recording(self, org: str, room: dict[str, Any],
                             tracks: list[dict[str, str]] | None = None) -> dict[str, Any]:
        """The room's bot recording (idempotent on `(room_id, "bot")`; new `tracks` are added)."""
        body = {"room_id": room["id"], "source": "bot", "layout": room.get("layout", "grid"),
                "title": room.get("title", ""), "vocabulary": list(room.get("vocabulary") or [])[:MAX_VOCABULARY],
                "tracks": tracks or []}
        return await self.call(org, "POST", "/v1/recordings", json=body)

    async def ledger(self, org: str, recording_id: str) -> dict[str, Any]:
        return await self.call(org, "GET", f"/v1/recordings/{recording_id}/ledger")

    async def next_seqs(self, org: str, recording_id: str) -> dict[str, int]:
        """Per track, the first seq not used yet (a restarted bot continues after it)."""
        return next_seqs_of(await self.ledger(org, recording_id))

    async def put_chunk(self, org: str, recording_id: str, seg: ClosedSegment, declare: dict[str, str]) -> dict:
        """Upload one closed segment (retried until `give_up_s`)."""
        body = await asyncio.to_thread(seg.path.read_bytes)
        headers = {"Content-Type": seg.content_type, "X-Content-SHA256": seg.sha256,
                   "X-Chunk-Start": str(seg.start_ms), "X-Chunk-Duration": str(seg.duration_ms), **declare}
        return await self.call(org, "PUT", f"/v1/recordings/{recording_id}/tracks/{seg.track_id}/chunks/{seg.seq}",
                               give_up_s=self.opt.give_up_s, content=body, headers=headers)

    async def post_quality(self, org: str, recording_id: str, samples: list[dict[str, Any]],
                           gaps: list[dict[str, Any]]) -> dict[str, Any]:
        """Quality samples and gap causes (idempotent on the server: a retry stores nothing twice)."""
        return await self.call(org, "POST", f"/v1/recordings/{recording_id}/quality",
                               json={"source": "bot", "samples": samples, "gaps": gaps})

    async def finalize(self, org: str, recording_id: str) -> dict[str, Any]:
        return await self.call(org, "POST", f"/v1/recordings/{recording_id}/finalize")


def next_seqs_of(ledger: dict[str, Any]) -> dict[str, int]:
    """Per track of a ledger answer, the first seq not used yet (stored or rejected)."""
    out: dict[str, int] = {}
    for track in ledger.get("tracks", []):
        seqs = [c["seq"] for c in track.get("chunks", [])] + [r["seq"] for r in track.get("rejected", [])]
        out[track["track_id"]] = max(seqs, default=-1) + 1
    return out


def media_ends(ledger: dict[str, Any]) -> dict[str, int]:
    """Per participant of a ledger answer, where their stored media ends (epoch ms)."""
    out: dict[str, int] = {}
    for track in ledger.get("tracks", []):
        ends = [c["start_epoch_ms"] + (c.get("duration_ms") or 0) for c in track.get("chunks", [])]
        pid = track.get("participant_id") or ""
        if ends and pid:
            out[pid] = max(out.get(pid, 0), max(ends))
    return out
