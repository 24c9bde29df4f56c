"""The room service: idempotent creation, cached join tokens, lifecycle steps.

Creation is idempotent on `(org, slot_id, candidate_id)` through a Redis `SET NX` lease
whose value is the room id: the winner writes the room, everyone else gets it back.
A lease that vanished (crash, Redis restart) while the DB still has a live room for the
key means that room is stale: it is closed and a new one made.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from core import access, audit
from core.access import Action
from core.auth import Principal, mint_token
from core.errors import DependencyDown, Forbidden, InvalidState, NotFound, QueueError
from core.logging import bound, get_logger
from core.models import Room
from core.models._types import new_id
from core.ratelimit import RateLimiter
from signaling import events, store
from signaling.config import SignalingConfig
from signaling.ice import ice_servers
from signaling.leases import Leases, room_lease_key, token_field
from signaling.presence import Presence, redis_errors, token_cache_key
from signaling.protocol import End
from signaling.schemas import RoomCreate, TokenPublic, TokenRequest

log = get_logger("signaling.rooms")
CREATING_MS = 10_000  # a creator that dies mid-way blocks its key for at most this long


class RoomService:
    def __init__(self, cfg: SignalingConfig, engine: Engine, client: aioredis.Redis, limiter: RateLimiter,
                 presence: Presence) -> None:
        self.cfg, self.engine, self.client, self.limiter, self.presence = cfg, engine, client, limiter, presence
        self.leases = Leases(client)

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await run_in_threadpool(fn, self.engine, *args)

    async def create(self, who: Principal, req: RoomCreate) -> tuple[Room, bool]:
        """`(room, created)`: the live room of this slot + candidate, made if needed."""
        access.require(who, Action.MANAGE_ROOM)
        await run_in_threadpool(self.limiter.hit, "room_create", who.org, self.cfg.room_create_rate)
        key = room_lease_key(who.org, req.slot_id, req.candidate_id)
        deadline = time.monotonic() + CREATING_MS / 1000 + 5
        with redis_errors("room lease"):
            while time.monotonic() < deadline:
                room_id = new_id("room")
                if await self.leases.take(key, room_id, CREATING_MS):
                    return await self._create_new(who, req, key, room_id), True
                room = await self._existing(key)
                if room is not None:
                    return room, False
                await asyncio.sleep(0.02)
        raise DependencyDown("room creation for this slot did not settle; retry", code="room_busy")

    async def _existing(self, key: str) -> Room | None:
        holder = await self.leases.holder(key)
        if holder is None:
            return None
        room = await self._db(store.get_room, holder)
        if room is None:
            return None  # its creator is still writing it
        if room.state == "ended":
            await self.leases.drop(key, holder)  # next call makes a new room
            return None
        await self.leases.extend(key, holder, self.cfg.room_lease_ttl_s * 1000)
        return room

    async def _create_new(self, who: Principal, req: RoomCreate, key: str, room_id: str) -> Room:
        try:
            for stale in await self._db(store.live_rooms_for_key, who.org, req.slot_id, req.candidate_id):
                await self.change(stale.id, "ended", "stale_lease", actor=who.sub)
            room = Room(id=room_id, org=who.org, slot_id=req.slot_id, candidate_id=req.candidate_id,
                        record=req.record, layout=req.layout, title=req.title, vocabulary=list(req.vocabulary),
                        created_by=who.sub)
            await self._db(store.insert_room, room, who.sub)
        except BaseException:
            await self.leases.drop(key, room_id)
            raise
        await self.leases.extend(key, room_id, self.cfg.room_lease_ttl_s * 1000)
        await self._publish(room, None, "created", who.sub)
        log.info("room_created", room_id=room.id, org=room.org, slot_id=room.slot_id, record=room.record)
        return room

    async def get_for(self, who: Principal, room_id: str, action: Action = Action.READ_ROOM) -> Room:
        """The room if `who` may see it: an API token of its org, or a join token for it (read only)."""
        room = await self._db(store.get_room, room_id)
        if room is None:
            raise NotFound(f"no room {room_id}", code="room_not_found")
        if who.scope == "join":
            if action is not Action.READ_ROOM:
                raise Forbidden("a join token cannot manage rooms", code="wrong_scope")
            if who.room_id != room_id:
                raise Forbidden("this join token is for another room", code="wrong_room")
            return room
        access.require(who, action)
        if room.org != who.org:  # another org's room: the caller may not learn it exists
            raise NotFound(f"no room {room_id}", code="room_not_found")
        return room

    async def mint_join(self, who: Principal, room_id: str, req: TokenRequest, ws_base: str) -> TokenPublic:
        """A join token for one participant; the same answer for `join_token_cache_s`."""
        room = await self.get_for(who, room_id, Action.MANAGE_ROOM)
        if req.role == "recorder":
            who.require_role("service")
        if room.state == "ended":
            raise InvalidState("the room has ended", code="room_ended")
        with redis_errors("join token cache"):
            body = await self._cached_token(room, req, ws_base)
        await run_in_threadpool(audit.record, self.engine, org=room.org, action=audit.TOKEN_MINT, actor=who,
                                object_type="room", object_id=room.id,
                                detail={"scope": "join", "participant_id": req.participant_id, "role": req.role,
                                        "expires_at": body.expires_at})
        return body

    async def _cached_token(self, room: Room, req: TokenRequest, ws_base: str) -> TokenPublic:
        cache, field = token_cache_key(room.id, req.participant_id), token_field(req.role, req.display_name)
        hit = await self.client.hget(cache, field)
        if hit:
            return TokenPublic.model_validate_json(hit)
        await run_in_threadpool(self.limiter.hit, "join_token", room.org, self.cfg.join_token_rate)
        body = self._token(room, req, ws_base, time.time())
        if self.cfg.join_token_cache_s:
            if not await self.client.hsetnx(cache, field, body.model_dump_json()):
                other = await self.client.hget(cache, field)
                if other:
                    return TokenPublic.model_validate_json(other)
            await self.client.expire(cache, self.cfg.join_token_cache_s, nx=True)
        with bound(room_id=room.id, phase="token_minted"):
            log.info("token_minted", participant_id=req.participant_id, role=req.role)
        return body

    def _token(self, room: Room, req: TokenRequest, ws_base: str, now: float) -> TokenPublic:
        c = self.cfg
        token = mint_token(c.jwt_secret, sub=req.participant_id, org=room.org, role=req.role,
                           ttl_s=c.join_token_ttl_s, scope="join", issuer=c.jwt_issuer, now=now,
                           room_id=room.id, participant_id=req.participant_id, display_name=req.display_name)
        servers = ice_servers(list(c.stun_urls), list(c.turn_urls), c.turn_secret, user=req.participant_id,
                              ttl_s=c.turn_ttl_s, now_s=now)
        return TokenPublic(token=token, expires_at=int(now) + c.join_token_ttl_s, room_id=room.id,
                           participant_id=req.participant_id, role=req.role,
                           ws_url=f"{ws_base}/v1/signal?token={token}", ice_servers=servers)

    async def end(self, who: Principal, room_id: str, reason: str) -> Room:
        room = await self.get_for(who, room_id, Action.MANAGE_ROOM)
        if room.state == "ended":
            return room
        with redis_errors("room end"):
            changed, _ = await self.change(room_id, "ended", reason, actor=who.sub)
        return changed or room

    async def change(self, room_id: str, to: str, reason: str, actor: str = "",
                     expect: str | None = None) -> tuple[Room | None, str | None]:
        """One lifecycle step (stored, published); on `ended` everyone gets `end`."""
        room, src = await self._db(store.transition, room_id, to, reason, actor, None, expect)
        if room is None or src is None:
            return room, None
        with bound(room_id=room_id, phase=f"room_{to}"):
            log.info("room_state", from_state=src, to_state=to, reason=reason, actor=actor)
        await self._publish(room, src, reason, actor)
        if to == "ended":
            await self.presence.route(room_id, End(reason=reason).dumps(), "end", everyone=True)
            await self.presence.purge(room_id)
        return room, src

    async def _publish(self, room: Room, src: str | None, reason: str, actor: str) -> None:
        try:
            await events.publish(self.client, events.room_event(room, src, reason, actor))
        except QueueError:
            pass  # logged by events.publish; the stored transition is the record
