"""Redis leases, the one shared part: compare-and-set scripts for a lease held as a key
set with `SET NX PX` to its holder's token. Only the holder (same value) may extend or drop
it, so a process that lost its lease by expiry cannot clobber the next holder. Used by the
signaling room leases (`signaling.leases`) and the ingest chunk write leases (`ingest.lease`).
"""
from __future__ import annotations

__all__ = ["DROP_IF_HOLDER", "EXTEND_IF_HOLDER"]

EXTEND_IF_HOLDER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
DROP_IF_HOLDER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
