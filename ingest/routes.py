"""HTTP routes of chunk ingest (`/v1/recordings…`)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from core import audit
from core.access import Action, require
from core.auth import mint_token
from core.db import session_scope
from core.errors import TooLarge
from core.http import CurrentPrincipal
from core.limits import KEY_CHARS
from core.ratelimit import charge
from ingest.headers import check_seq, parse_chunk_headers, parse_track_headers
from ingest.recordings import chunk_public, create_recording, ledger, recording_public
from ingest.schemas import (
    ChunkPublic,
    RecordingCreate,
    RecordingPublic,
    TokenPublic,
    UploadTokenRequest,
)
from ingest.service import Ingest
from ingest.spool import spool_body
from ingest.tokens import BeaconPrincipal

router = APIRouter(prefix="/v1", tags=["ingest"])


def get_ingest(request: Request) -> Ingest:
    return request.app.state.ingest


IngestDep = Annotated[Ingest, Depends(get_ingest)]


@router.post("/recordings", response_model=RecordingPublic, status_code=201,
             responses={200: {"model": RecordingPublic, "description": "it existed (idempotent retry)"}})
def post_recording(body: RecordingCreate, principal: CurrentPrincipal, ing: IngestDep, response: Response,
                   request: Request,
                   idempotency_key: Annotated[str | None, Header(max_length=KEY_CHARS)] = None) -> RecordingPublic:
    """Create a recording (idempotent on Idempotency-Key, client_key or (room_id, source))."""
    require(principal, Action.CREATE_RECORDING)
    charge(request.app.state, principal, "create_recording")
    rec, created = create_recording(ing, principal, body, idempotency_key)
    response.status_code = 201 if created else 200
    return rec


@router.get("/recordings/{recording_id}", response_model=RecordingPublic)
def get_recording(recording_id: str, principal: CurrentPrincipal, ing: IngestDep) -> RecordingPublic:
    """Recording status with per-step processing progress and outputs."""
    with session_scope(ing.engine) as s:
        rec = ing.get_recording(s, principal, recording_id)
        return recording_public(s, rec)


@router.post("/recordings/{recording_id}/upload-token", response_model=TokenPublic)
def post_upload_token(recording_id: str, body: UploadTokenRequest, principal: CurrentPrincipal,
                      ing: IngestDep, request: Request) -> TokenPublic:
    """A short-lived token that may upload chunks of this recording for one participant."""
    with session_scope(ing.engine) as s:
        rec = ing.get_recording(s, principal, recording_id, Action.MINT_UPLOAD_TOKEN)
    charge(request.app.state, principal, "token")
    settings = request.app.state.settings
    ttl_s = min(body.ttl_s or settings.upload_token_ttl_s, settings.upload_token_max_ttl_s)
    token = mint_token(settings.jwt_secret, sub=body.participant_id, org=rec.org, role="candidate",
                       ttl_s=ttl_s, scope="upload", issuer=settings.jwt_issuer, recording_id=rec.id,
                       participant_id=body.participant_id, track_role=body.role,
                       display_name=body.display_name or None)
    audit.record(ing.engine, org=rec.org, action=audit.TOKEN_MINT, actor=principal, object_type="recording",
                 object_id=rec.id, detail={"scope": "upload", "participant_id": body.participant_id,
                                           "role": body.role, "ttl_s": ttl_s})
    return TokenPublic(token=token, expires_in=ttl_s)


async def _upload(request: Request, principal: Any, ing: Ingest, recording_id: str, track: str,
                  seq: int, headers: dict[str, str]) -> JSONResponse:
    check_seq(seq)
    hdr = parse_chunk_headers(headers)
    if hdr.declared_length is not None and hdr.declared_length > ing.limits.max_chunk_bytes:
        raise TooLarge(f"chunk is larger than {ing.limits.max_chunk_bytes} bytes", code="chunk_too_large")
    declare = parse_track_headers(headers)
    stream = request.app.state.settings.ingest_stream_to_s3
    pre = await run_in_threadpool(ing.precheck, principal, recording_id, track, seq, hdr, declare, stream)
    if pre.stored is not None:  # a retry of a stored chunk: answered before its body is read
        return JSONResponse(chunk_public(pre.stored, pre.started_at_ms, duplicate=True).model_dump(), status_code=200)
    try:
        body = await spool_body(request.stream(), ing.limits.max_chunk_bytes, request.app.state.spool_dir, pre.sink)
    except BaseException:
        await run_in_threadpool(ing.abandon, pre, recording_id, track, seq)
        raise
    try:
        stored, created, start = await run_in_threadpool(ing.store_chunk, pre, recording_id, track, seq, hdr, body)
    except BaseException:
        await run_in_threadpool(ing.release, pre, recording_id, track, seq)
        raise
    finally:
        body.discard()
    # the lease outlives the answer by a moment: an upload waiting on it sees the stored row anyway
    cleanup = BackgroundTask(ing.release, pre, recording_id, track, seq)
    out = chunk_public(stored, start, duplicate=not created)
    return JSONResponse(out.model_dump(), status_code=201 if created else 200, background=cleanup)


@router.put("/recordings/{recording_id}/tracks/{track}/chunks/{seq}", response_model=ChunkPublic,
            status_code=201, responses={200: {"description": "retry of a stored chunk"}})
async def put_chunk(recording_id: str, track: str, seq: int, request: Request, principal: CurrentPrincipal,
                    ing: IngestDep) -> JSONResponse:
    """Upload one chunk (streamed): headers Content-Type, X-Content-SHA256, X-Chunk-Start (ms epoch)."""
    return await _upload(request, principal, ing, recording_id, track, seq, dict(request.headers))


@router.post("/recordings/{recording_id}/tracks/{track}/chunks/{seq}/beacon", response_model=ChunkPublic,
             status_code=201, responses={200: {"description": "retry of a stored chunk"}})
async def post_chunk_beacon(recording_id: str, track: str, seq: int, request: Request,
                            principal: BeaconPrincipal, ing: IngestDep) -> JSONResponse:
    """`navigator.sendBeacon` flush: same as PUT; headers as query (type, sha256, start, duration, continuation)."""
    headers = dict(request.headers)
    q = request.query_params
    headers.update({k: v for k, v in {"content-type": q.get("type"),  # cross-origin beacons are untyped
                                      "x-content-sha256": q.get("sha256"), "x-chunk-start": q.get("start"),
                                      "x-chunk-duration": q.get("duration"),
                                      "x-chunk-continuation": q.get("continuation")}.items() if v})
    return await _upload(request, principal, ing, recording_id, track, seq, headers)


@router.get("/recordings/{recording_id}/ledger")
def get_ledger(recording_id: str, principal: CurrentPrincipal, ing: IngestDep) -> dict:
    """Per track: chunks received, gaps in seconds with their cause, covered seconds."""
    return ledger(ing, principal, recording_id)


@router.post("/recordings/{recording_id}/finalize", status_code=202)
def post_finalize(recording_id: str, principal: CurrentPrincipal, ing: IngestDep) -> dict:
    """Close the recording and start final processing (idempotent)."""
    with session_scope(ing.engine) as s:
        rec = ing.get_recording(s, principal, recording_id, Action.FINALIZE)
    rec = ing.finalize(recording_id)
    return {"recording_id": rec.id, "status": rec.status}


STATIC_DIR = Path(__file__).parent / "static"
