"""Room presence, per-participant message buffers and routing, as Redis Lua scripts.

Redis holds all call state; API processes keep only their own sockets. Keys (hash-tagged
by room so one room lives in one cluster slot):

    sig:{R}:members      hash  participant → {instance, conn, node, role, name, hidden, …}
    sig:{R}:seq          hash  participant → last message seq routed to it
    sig:{R}:buf:<P>      zset  seq → envelope, capped, TTL = resume window
    sig:node:<N>         key   "process N is alive" (TTL, refreshed by its ticker)
    sig:node:<N>:ch      channel carrying envelopes for the sockets of process N

Each script is one atomic step: claim a seat (or refuse a second tab), release it,
route one message to one/all participants (buffer + publish to the owner process).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from core.errors import QueueError

_ENTRY_LIVE = """
local function live(e)
  return e.conn ~= '' and redis.call('EXISTS', 'sig:node:' .. e.node) == 1
end
"""

_CLAIM = _ENTRY_LIVE + """
local room, pid, inst, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[9])
local mkey = 'sig:{' .. room .. '}:members'
local raw = redis.call('HGET', mkey, pid)
local status, prev_conn, sent = 'fresh', '', 0
if raw then
  local e = cjson.decode(raw)
  if e.instance ~= inst then
    if live(e) then return {'busy', e.instance, 0, 0} end
  elseif e.conn ~= '' or now - (e.away_since or 0) <= tonumber(ARGV[10]) then
    status = 'resumed'
    sent = e.sent_seq or 0
    if live(e) then
      prev_conn = e.conn
      redis.call('PUBLISH', 'sig:node:' .. e.node .. ':ch', 'K\\n' .. e.conn)
    end
  end
end
if status == 'fresh' then redis.call('DEL', 'sig:{' .. room .. '}:buf:' .. pid) end
redis.call('HSET', mkey, pid, cjson.encode({instance=inst, conn=ARGV[4], node=ARGV[5], role=ARGV[6],
  name=ARGV[7], hidden=(ARGV[8] == '1'), joined_at=now, away_since=0, sent_seq=0}))
redis.call('PEXPIRE', mkey, ARGV[11])
redis.call('PEXPIRE', 'sig:{' .. room .. '}:seq', ARGV[11])
local seq = tonumber(redis.call('HGET', 'sig:{' .. room .. '}:seq', pid) or '0')
return {status, prev_conn, seq, sent}
"""

_RELEASE = """
local room, pid = ARGV[1], ARGV[2]
local mkey = 'sig:{' .. room .. '}:members'
local raw = redis.call('HGET', mkey, pid)
if not raw then return 0 end
local e = cjson.decode(raw)
if e.conn ~= ARGV[3] then return 0 end
if ARGV[4] == '1' then
  redis.call('HDEL', mkey, pid)
  redis.call('DEL', 'sig:{' .. room .. '}:buf:' .. pid)
else
  e.conn = ''
  e.away_since = tonumber(ARGV[5])
  e.sent_seq = tonumber(ARGV[6])
  redis.call('HSET', mkey, pid, cjson.encode(e))
end
return 1
"""

_FANOUT = """
local room, sender, mode, target, kind, payload = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local mkey = 'sig:{' .. room .. '}:members'
local function deliver(pid, raw)
  local e = cjson.decode(raw)
  local seq = redis.call('HINCRBY', 'sig:{' .. room .. '}:seq', pid, 1)
  local env = '{"seq":' .. seq .. ',' .. string.sub(payload, 2)
  local buf = 'sig:{' .. room .. '}:buf:' .. pid
  redis.call('ZADD', buf, seq, env)
  redis.call('ZREMRANGEBYRANK', buf, 0, -(tonumber(ARGV[8]) + 1))
  redis.call('PEXPIRE', buf, ARGV[7])
  if e.conn ~= '' then
    redis.call('PUBLISH', 'sig:node:' .. e.node .. ':ch', 'M\\n' .. e.conn .. '\\n' .. seq .. '\\n' .. kind .. '\\n' .. env)
  end
end
if mode == 'to' then
  local raw = redis.call('HGET', mkey, target)
  if not raw then return -1 end
  deliver(target, raw)
  return 1
end
local all = redis.call('HGETALL', mkey)
local n = 0
for i = 1, #all, 2 do
  if mode == 'all' or all[i] ~= sender then
    deliver(all[i], all[i + 1])
    n = n + 1
  end
end
return n
"""

_ROSTER = _ENTRY_LIVE + """
local all = redis.call('HGETALL', 'sig:{' .. ARGV[1] .. '}:members')
local out = {}
for i = 1, #all, 2 do
  local alive = 0
  if live(cjson.decode(all[i + 1])) then alive = 1 end
  table.insert(out, all[i])
  table.insert(out, all[i + 1])
  table.insert(out, alive)
end
return out
"""

_REAP = _ENTRY_LIVE + """
local mkey = 'sig:{' .. ARGV[1] .. '}:members'
local all = redis.call('HGETALL', mkey)
local out = {}
for i = 1, #all, 2 do
  local e = cjson.decode(all[i + 1])
  if e.conn ~= '' and not live(e) then
    e.conn = ''
    e.away_since = tonumber(ARGV[2])
    redis.call('HSET', mkey, all[i], cjson.encode(e))
    table.insert(out, all[i])
    table.insert(out, e.instance)
    table.insert(out, e.hidden and 1 or 0)
  end
end
return out
"""

_PURGE = """
local room = ARGV[1]
local mkey = 'sig:{' .. room .. '}:members'
for _, pid in ipairs(redis.call('HKEYS', mkey)) do
  redis.call('DEL', 'sig:{' .. room .. '}:buf:' .. pid, 'sig:{' .. room .. '}:tok:' .. pid)
end
redis.call('DEL', mkey, 'sig:{' .. room .. '}:seq')
return 1
"""


@dataclass(frozen=True)
class Seat:
    """What the participant's join got: `fresh`, `resumed` or `busy` (another tab holds it)."""

    status: str
    other: str
    last_seq: int
    sent_seq: int


@dataclass(frozen=True)
class Member:
    participant_id: str
    instance_id: str
    role: str
    display_name: str
    hidden: bool
    connected: bool
    node: str


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_route(data: bytes | str) -> tuple[str, str, int, str, str]:
    """Split a node-channel frame: `(kind, conn, seq, type, envelope)`; kind M=message, K=kick."""
    text = _s(data)
    if text.startswith("K\n"):
        return "K", text[2:], 0, "", ""
    _, conn, seq, kind, envelope = text.split("\n", 4)
    return "M", conn, int(seq), kind, envelope


@contextmanager
def redis_errors(what: str) -> Iterator[None]:
    """Translate Redis outages into `QueueError` (503 + Retry-After) at the call site."""
    try:
        yield
    except (redis.RedisError, OSError) as exc:
        raise QueueError(f"{what}: Redis unavailable ({type(exc).__name__})") from exc


def node_channel(node: str) -> str:
    return f"sig:node:{node}:ch"


def node_key(node: str) -> str:
    return f"sig:node:{node}"


def token_cache_key(room_id: str, participant_id: str) -> str:
    return f"sig:{{{room_id}}}:tok:{participant_id}"


class Presence:
    """Async access to the scripts above for one Redis client."""

    def __init__(self, client: aioredis.Redis, *, resume_window_ms: int, buffer_max: int = 512,
                 room_ttl_ms: int = 24 * 3600 * 1000) -> None:
        self.client = client
        self.resume_window_ms, self.buffer_max, self.room_ttl_ms = resume_window_ms, buffer_max, room_ttl_ms
        self._claim, self._release = client.register_script(_CLAIM), client.register_script(_RELEASE)
        self._fanout, self._roster = client.register_script(_FANOUT), client.register_script(_ROSTER)
        self._reap, self._purge = client.register_script(_REAP), client.register_script(_PURGE)

    async def claim(self, room: str, pid: str, instance: str, conn: str, node: str, role: str, name: str,
                    hidden: bool, now_ms: int) -> Seat:
        status, other, last_seq, sent = await self._claim(args=[
            room, pid, instance, conn, node, role, name, int(hidden), now_ms, self.resume_window_ms,
            self.room_ttl_ms])
        return Seat(_s(status), _s(other), int(last_seq), int(sent))

    async def release(self, room: str, pid: str, conn: str, *, explicit: bool, now_ms: int, sent_seq: int) -> bool:
        """Give the seat up; True when this connection still held it (so announce the leave)."""
        return bool(await self._release(args=[room, pid, conn, int(explicit), now_ms, sent_seq]))

    async def route(self, room: str, payload: str, kind: str, *, sender: str = "", to: str | None = None,
                    everyone: bool = False) -> int:
        """Buffer + deliver to `to`, to everyone but `sender`, or to everyone; -1 if `to` is unknown."""
        mode = "to" if to is not None else ("all" if everyone else "others")
        return int(await self._fanout(args=[room, sender, mode, to or "", kind, payload,
                                            self.resume_window_ms, self.buffer_max]))

    async def roster(self, room: str) -> list[Member]:
        flat = await self._roster(args=[room])
        members = []
        for pid, raw, alive in zip(flat[::3], flat[1::3], flat[2::3]):
            e = json.loads(raw)
            members.append(Member(participant_id=_s(pid), instance_id=e["instance"], role=e["role"],
                                  display_name=e["name"], hidden=bool(e["hidden"]), connected=bool(alive),
                                  node=e["node"]))
        return members

    async def reap(self, room: str, now_ms: int) -> list[tuple[str, str, bool]]:
        """Mark members of dead processes as away: `[(participant_id, instance_id, hidden)]`."""
        flat = await self._reap(args=[room, now_ms])
        return [(_s(pid), _s(inst), bool(int(h))) for pid, inst, h in zip(flat[::3], flat[1::3], flat[2::3])]

    async def missed(self, room: str, pid: str, after_seq: int) -> list[tuple[int, str, str]]:
        """Buffered envelopes with seq > after_seq: `[(seq, type, envelope)]`."""
        rows = await self.client.zrangebyscore(f"sig:{{{room}}}:buf:{pid}", f"({after_seq}", "+inf",
                                               withscores=True)
        out = []
        for env, seq in rows:
            text = _s(env)
            out.append((int(seq), json.loads(text)["type"], text))
        return out

    async def purge(self, room: str) -> None:
        await self._purge(args=[room])

