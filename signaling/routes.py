"""HTTP and WebSocket routes under /v1: rooms, join tokens, `/v1/signal`."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, WebSocket
from starlette.concurrency import run_in_threadpool

from core.auth import Principal
from core.errors import DependencyDown, Unauthorized
from core.http import CurrentPrincipal, request_token, token_verifier
from core.logging import bound, get_logger
from core.models import Room
from signaling import protocol as p
from signaling import store
from signaling.connection import Connection, Identity
from signaling.presence import redis_errors
from signaling.runtime import Signaling
from signaling.schemas import (
    EndRequest,
    Participant,
    RoomCreate,
    RoomDetail,
    RoomPublic,
    Session,
    TokenPublic,
    TokenRequest,
    Transition,
)

log = get_logger("signaling.ws")
router = APIRouter(prefix="/v1", tags=["rooms"])


def _signaling(request: Request) -> Signaling:
    return request.app.state.signaling


SignalingDep = Annotated[Signaling, Depends(_signaling)]


def public(room: Room) -> RoomPublic:
    return RoomPublic.model_validate({**room.model_dump(), "vocabulary": room.vocabulary or []})


@router.post("/rooms", status_code=201, response_model=RoomPublic, responses={200: {"model": RoomPublic}})
async def create_room(body: RoomCreate, who: CurrentPrincipal, sig: SignalingDep, response: Response) -> RoomPublic:
    """The room of `(slot_id, candidate_id)`: 201 when made now, 200 when it existed."""
    room, created = await sig.service.create(who, body)
    response.status_code = 201 if created else 200
    return public(room)


@router.get("/rooms/{room_id}", response_model=RoomDetail)
async def get_room(room_id: str, who: CurrentPrincipal, sig: SignalingDep) -> RoomDetail:
    """State, live participants, call history and transitions (the recorder only for admins)."""
    room = await sig.service.get_for(who, room_id)
    return await _detail(sig, room, show_hidden=who.role == "admin" and who.scope == "api")


@router.post("/rooms/{room_id}/tokens", response_model=TokenPublic)
async def mint_join_token(room_id: str, body: TokenRequest, who: CurrentPrincipal, sig: SignalingDep,
                          request: Request) -> TokenPublic:
    """A short-lived join token + ICE servers for one participant (cached for a minute)."""
    return await sig.service.mint_join(who, room_id, body, _ws_base(sig, request))


@router.post("/rooms/{room_id}/end", response_model=RoomPublic)
async def end_room(room_id: str, who: CurrentPrincipal, sig: SignalingDep,
                   body: EndRequest | None = None) -> RoomPublic:
    """End the room for everyone (idempotent)."""
    room = await sig.service.end(who, room_id, (body or EndRequest()).reason)
    return public(room)


@router.websocket("/signal")
async def signal(ws: WebSocket) -> None:
    """The signaling socket; `?token=` is a join token from `POST /v1/rooms/{id}/tokens`."""
    sig: Signaling = ws.app.state.signaling
    await ws.accept()
    try:
        who = await run_in_threadpool(_join_principal, ws)  # the deny-list is a (blocking) Redis read
    except (Unauthorized, DependencyDown) as exc:
        with bound(phase="rejected"):
            log.info("rejected", code=exc.code)
        await ws.send_text(p.Error(code=exc.code, message=exc.message).dumps())
        await ws.close(p.CLOSE_TRY_AGAIN if exc.retryable else p.CLOSE_UNAUTHORIZED)
        return
    identity = Identity(org=who.org, room_id=who.room_id or "", participant_id=who.participant_id or "",
                        role=who.role, display_name=str(who.claims.get("display_name", ""))[:128])
    await Connection(ws, sig, identity).serve()


def _join_principal(ws: WebSocket) -> Principal:
    """The caller of the join token in `?token=` (browsers cannot give a WebSocket a header)."""
    token, _ = request_token(ws, allow_query=True)
    who = token_verifier(ws).verify(token)
    if who.scope != "join" or not who.room_id or not who.participant_id:
        raise Unauthorized("a join token is required", code="invalid_token")
    return who


def _ws_base(sig: Signaling, request: Request) -> str:
    base = sig.cfg.public_url or str(request.base_url)
    return base.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)


async def _detail(sig: Signaling, room: Room, show_hidden: bool) -> RoomDetail:
    with redis_errors("room presence"):
        members = await sig.presence.roster(room.id)
    sessions = await run_in_threadpool(store.history_of, sig.engine, room.id)
    steps = await run_in_threadpool(store.transitions_of, sig.engine, room.id)
    return RoomDetail(
        **public(room).model_dump(),
        participants=[Participant(participant_id=m.participant_id, role=m.role, display_name=m.display_name,
                                  connected=m.connected) for m in members if show_hidden or not m.hidden],
        history=[Session.model_validate(s.model_dump()) for s in sessions if show_hidden or not s.hidden],
        transitions=[Transition.model_validate(t.model_dump()) for t in steps])
