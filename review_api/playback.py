"""Playback: a recording's media outputs streamed from S3 with HTTP Range, and signed URLs.

    GET /v1/recordings/{id}/playback          {mp4_url, hls_url, poster_url, thumbs_url,
                                               expires_at, duration_ms}  (?direct=1: S3 URLs)
    GET|HEAD /v1/recordings/{id}/media/{name}  composite.mp4 | poster.jpg | thumbs/strip.jpg |
                                               hls/index.m3u8 | hls/<segment>.ts

`<video>` cannot send an Authorization header, so the playback URLs carry `?token=`: a JWT
with scope "playback", bound to one recording, valid for `playback_token_ttl_s`. It also
has an audience claim (`playback:{id}`): every other route verifies tokens without an
audience, which PyJWT refuses, so a playback token opens this recording's media and
nothing else. The media route also takes a reader's ordinary API token.

Ranges: one `bytes=` range (first-last, first-, -suffix) → 206 + Content-Range; several
ranges or a malformed header → the whole object (RFC 9110 lets a server ignore Range);
a range past the end → 416 with `Content-Range: bytes */size`. `If-Range` with another
ETag also sends the whole object; `If-None-Match` with the current ETag → 304.

Audit (`core.audit`): minting URLs appends `playback.url`; every GET that serves bytes
(whole, range, playlist, segment — not HEAD, 304 or 416) appends `media.read` before the
body streams. Presigned S3 URLs (`?direct=1`) bypass this route: only their minting is logged.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Optional
from urllib.parse import quote

import jwt
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from core import audit, keys
from core.auth import ALGORITHM, Principal, mint_token
from core.db import session_scope
from core.errors import Forbidden, NotFound, Unauthorized
from core.http import CurrentPrincipal, ErrorBody, request_token, token_verifier
from core.logging import get_logger
from core.models import Recording
from core.ratelimit import charge
from core.storage import ObjectStore
from core.access import Action, recording_for
from review_api.deps import EngineDep, StoreDep

router = APIRouter(prefix="/v1", tags=["playback"])
log = get_logger("review_api.playback")

SCOPE = "playback"
# name → (key in Recording.outputs, content type). HLS segments are looked up by name.
OUTPUTS = {
    "composite.mp4": ("composite", "video/mp4"),
    "poster.jpg": ("poster", "image/jpeg"),
    "thumbs/strip.jpg": ("thumbnails", "image/jpeg"),
    "hls/index.m3u8": ("hls", "application/vnd.apple.mpegurl"),
}
_SEGMENT = re.compile(r"^hls/([A-Za-z0-9][A-Za-z0-9_-]{0,120}\.ts)$")
_RANGE = re.compile(r"^\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*$", re.IGNORECASE)
RANGE_MAX = 10**18  # past the end of any object: longer numbers in a Range saturate here
BLOCK = 256 * 1024


# ---------------------------------------------------------------- ranges (pure)

class Unsatisfiable(Exception):
    """The range starts past the end of the object (HTTP 416)."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: Optional[str], size: int) -> Optional[ByteRange]:
    """The one byte range a `Range` header asks for, or None to send the whole object.

    Raises Unsatisfiable when the range lies entirely past the end (or is an empty suffix).
    """
    if not header or "," in header:
        return None
    m = _RANGE.match(header)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:  # suffix: the last N bytes
        n = _position(last)
        if n == 0 or size == 0:
            raise Unsatisfiable()
        return ByteRange(max(0, size - n), size - 1)
    start = _position(first)
    end = _position(last) if last else size - 1
    if last and end < start:
        return None  # syntactically invalid: ignored
    if start >= size:
        raise Unsatisfiable()
    return ByteRange(start, min(end, size - 1))


def _position(digits: str) -> int:
    """A byte position from a Range header; a 5000-digit one is not parsed (nor an error)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) < 19 else RANGE_MAX


def quoted_etag(etag: str) -> str:
    return etag if etag.startswith(('"', 'W/"')) else f'"{etag}"'


def etag_matches(header: Optional[str], etag: str) -> bool:
    """Does an If-None-Match / If-Range value name this ETag (weak comparison)?"""
    if not header:
        return False
    mine = quoted_etag(etag).removeprefix("W/")
    return any(t.strip() == "*" or t.strip().removeprefix("W/") == mine for t in header.split(","))


def with_token(playlist: str, token: str) -> str:
    """Append `?token=` to every URI line of an HLS playlist (segments resolve relative to it)."""
    lines = []
    for line in playlist.splitlines():
        if line and not line.startswith("#") and "token=" not in line:
            line += ("&" if "?" in line else "?") + "token=" + quote(token, safe="")
        lines.append(line)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- tokens

def mint_playback_token(secret: str, issuer: str, principal: Principal, recording_id: str, ttl_s: int,
                        now: float | None = None) -> str:
    """A token that opens one recording's media (and nothing else) for `ttl_s` seconds."""
    return mint_token(secret, sub=principal.sub, org=principal.org, role=principal.role, ttl_s=ttl_s,
                      scope=SCOPE, issuer=issuer, now=now, recording_id=recording_id,
                      aud=f"{SCOPE}:{recording_id}", groups=list(principal.groups) or None)


def verify_playback_token(secret: str, token: str, recording_id: str, issuer: str) -> Principal:
    """The caller of a playback token, if it is valid for this recording."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=issuer, audience=f"{SCOPE}:{recording_id}",
                            options={"require": ["exp", "sub", "org", "role", "aud"]})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("playback token expired", code="token_expired") from exc
    except jwt.InvalidAudienceError as exc:
        raise Forbidden("this playback token is for another recording", code="wrong_recording") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("invalid token", code="invalid_token") from exc
    if claims.get("scope") != SCOPE or claims.get("recording_id") != recording_id:
        raise Forbidden("this playback token is for another recording", code="wrong_recording")
    groups = tuple(str(g) for g in (claims.get("groups") or [])[:64] if isinstance(g, str))
    return Principal(sub=claims["sub"], org=claims["org"], role=claims["role"], scope=SCOPE,
                     recording_id=recording_id, groups=groups, claims=claims)


def as_reader(principal: Principal) -> Principal:
    """The caller a playback token was minted for: access is checked again on every request,
    so a grant withdrawn after the URL was issued closes the media too."""
    if principal.scope != SCOPE:
        return principal
    return Principal(sub=principal.sub, org=principal.org, role=principal.role, groups=principal.groups,
                     claims=principal.claims)


def _is_playback_token(token: str) -> bool:
    """Says the token it is one (its signature and audience are checked after)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False, "verify_aud": False})
    except jwt.PyJWTError:
        return False
    return claims.get("scope") == SCOPE


def media_principal(request: Request, recording_id: str) -> Principal:
    """A reader's API token (header only), or a playback token for this recording (header or `?token=`)."""
    token, in_query = request_token(request, allow_query=True)
    verifier = token_verifier(request)
    if _is_playback_token(token):
        settings = request.app.state.settings
        principal = verify_playback_token(settings.jwt_secret, token, recording_id, settings.jwt_issuer)
        verifier.ensure_not_revoked(principal, token)
        return principal
    if in_query:
        raise Unauthorized("API tokens go in the Authorization header; media URLs carry playback tokens",
                           code="token_in_query")
    return verifier.verify(token)


# ---------------------------------------------------------------- outputs

def media_object(rec: Recording, name: str) -> tuple[str, str]:
    """(object key, content type) of a named output; NotFound until it exists."""
    outputs = rec.outputs or {}
    segment = _SEGMENT.match(name)
    if segment and outputs.get("hls"):
        return keys.output_key(rec.org, rec.id, f"hls/{segment.group(1)}"), "video/mp2t"
    field, ctype = OUTPUTS.get(name, (None, ""))
    if field is None and not segment:
        raise NotFound(f"no media named {name!r}; one of {sorted(OUTPUTS)} or hls/<segment>.ts",
                       code="unknown_media")
    key = outputs.get(field) if field else None
    if not key:
        raise NotFound(f"{name} of recording {rec.id} is not ready (status {rec.status})", code="output_not_ready")
    return key, ctype


def _public_base(request: Request) -> str:
    configured = request.app.state.settings.public_url
    return (configured or str(request.base_url)).rstrip("/")


class PlaybackPublic(BaseModel):
    recording_id: str
    mp4_url: str
    hls_url: Optional[str] = None
    poster_url: Optional[str] = None
    thumbs_url: Optional[str] = None
    expires_at: int  # epoch ms
    expires_in: int  # seconds
    duration_ms: Optional[int] = None
    direct: bool = False


def _urls(request: Request, rec: Recording, token: str, store: ObjectStore, direct: bool, ttl_s: int) -> dict:
    base, outputs, out = _public_base(request), rec.outputs or {}, {}
    names = {"mp4_url": "composite.mp4", "hls_url": "hls/index.m3u8", "poster_url": "poster.jpg",
             "thumbs_url": "thumbs/strip.jpg"}
    for field, name in names.items():
        if not outputs.get(OUTPUTS[name][0]):
            continue
        if direct and name != "hls/index.m3u8":  # HLS segments resolve relative to the playlist: API only
            out[field] = store.presign_get(outputs[OUTPUTS[name][0]], ttl_s)
        else:
            out[field] = f"{base}/v1/recordings/{rec.id}/media/{name}?token={quote(token, safe='')}"
    return out


@router.get("/recordings/{recording_id}/playback", response_model=PlaybackPublic)
def get_playback(recording_id: str, request: Request, principal: CurrentPrincipal, engine: EngineDep,
                 store: StoreDep, direct: bool = Query(False, description="presigned S3 URLs instead")
                 ) -> PlaybackPublic:
    """Short-lived URLs that a `<video>` element can load (the token is in the query)."""
    with session_scope(engine) as s:
        rec = recording_for(s, principal, Action.READ_MEDIA, recording_id)
    media_object(rec, "composite.mp4")  # 404 output_not_ready until the MP4 exists
    charge(request.app.state, principal, "token")
    settings = request.app.state.settings
    ttl, now = settings.playback_token_ttl_s, time.time()
    token = mint_playback_token(settings.jwt_secret, settings.jwt_issuer, principal, rec.id, ttl, now=now)
    log.info("playback_url_issued", recording_id=rec.id, sub=principal.sub, role=principal.role, direct=direct,
             ttl_s=ttl)
    urls = _urls(request, rec, token, store, direct, ttl)
    audit.record(engine, org=rec.org, action=audit.PLAYBACK_URL, actor=principal, object_type="recording",
                 object_id=rec.id, detail={"direct": direct, "ttl_s": ttl, "urls": sorted(urls)})
    return PlaybackPublic(recording_id=rec.id, **urls,
                          expires_at=int((int(now) + ttl) * 1000), expires_in=ttl,
                          duration_ms=(rec.outputs or {}).get("duration_ms"), direct=direct)


# ---------------------------------------------------------------- streaming

def _unsatisfiable(size: int) -> JSONResponse:
    return JSONResponse({"code": "range_not_satisfiable", "message": f"the object has {size} bytes"},
                        status_code=416, headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"})


async def _chunks(store: ObjectStore, key: str, offset: int, length: int) -> AsyncIterator[bytes]:
    """The range from S3, block by block in a worker thread; the S3 response is released
    as soon as the client goes away (players abort requests on every seek)."""
    blocks = store.iter_range(key, offset, length, block=BLOCK)
    try:
        while True:
            data = await run_in_threadpool(next, blocks, b"")
            if not data:
                return
            yield data
    finally:
        blocks.close()


def _playlist(store: ObjectStore, key: str, headers: dict[str, str], request: Request, head: bool) -> Response:
    """The HLS playlist, with the query token passed on to its segment URIs."""
    body = store.get_bytes(key).decode()
    token = request.query_params.get("token")
    if token:
        body = with_token(body, token)
        headers.pop("ETag", None)  # the body depends on the token
    data = body.encode()
    headers.pop("Accept-Ranges", None)
    headers["Content-Length"] = str(len(data))
    return Response(b"" if head else data, status_code=200, headers=headers,
                    media_type=OUTPUTS["hls/index.m3u8"][1])


def _serve(request: Request, store: ObjectStore, key: str, ctype: str, name: str) -> Response:
    info = store.stat(key)
    head = request.method == "HEAD"
    headers = {"Accept-Ranges": "bytes", "ETag": quoted_etag(info.etag), "Cache-Control": "private, max-age=300",
               "Content-Disposition": f'inline; filename="{name.rsplit("/", 1)[-1]}"'}
    if name == "hls/index.m3u8":
        return _playlist(store, key, headers, request, head)
    if etag_matches(request.headers.get("if-none-match"), info.etag):
        return Response(status_code=304, headers=headers)
    header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range and not etag_matches(if_range, info.etag):
        header = None  # the client's copy is stale: send it all
    try:
        rng = parse_range(header, info.size)
    except Unsatisfiable:
        return _unsatisfiable(info.size)
    status, start, length = 200, 0, info.size
    if rng is not None:
        status, start, length = 206, rng.start, rng.length
        headers["Content-Range"] = rng.content_range(info.size)
    headers["Content-Length"] = str(length)
    if head or length == 0:
        return Response(status_code=status, headers=headers, media_type=ctype)
    return StreamingResponse(_chunks(store, key, start, length), status_code=status, headers=headers,
                             media_type=ctype)


_MEDIA = "/recordings/{recording_id}/media/{name:path}"
_MEDIA_RESPONSES: dict[int | str, dict[str, Any]] = {
    206: {"description": "a byte range"}, 304: {"description": "not modified (If-None-Match)"},
    416: {"description": "range not satisfiable", "model": ErrorBody}}


@router.get(_MEDIA, response_class=Response, responses=_MEDIA_RESPONSES)
@router.head(_MEDIA, response_class=Response, responses=_MEDIA_RESPONSES)  # its own operation id
def get_media(recording_id: str, name: str, request: Request, engine: EngineDep, store: StoreDep) -> Any:
    """One output of a recording (MP4, poster, thumbnails, HLS), with HTTP Range support.

    Auth: a reader's API token or the playback token from `GET …/playback` (`?token=`).
    """
    principal = media_principal(request, recording_id)
    with session_scope(engine) as s:
        rec = recording_for(s, as_reader(principal), Action.READ_MEDIA, recording_id)
    key, ctype = media_object(rec, name)
    response = _serve(request, store, key, ctype, name)
    if request.method == "GET" and response.status_code in (200, 206):
        _audit_read(engine, principal, rec, name, response)
    return response


def _audit_read(engine: Engine, principal: Principal, rec: Recording, name: str, response: Response) -> None:
    """One `media.read` per GET that serves bytes (not HEAD, 304 or 416), written in this worker
    thread before the body starts streaming (a failed write serves nothing)."""
    headers = response.headers
    audit.record(engine, org=rec.org, action=audit.MEDIA_READ, actor=principal, object_type="recording",
                 object_id=rec.id, detail={"name": name, "status": response.status_code,
                                           "bytes": int(headers.get("content-length") or 0),
                                           "range": headers.get("content-range"), "token": principal.scope})
