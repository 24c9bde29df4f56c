"""Pure parts of signaling: protocol parsing, the state machine, ICE credentials, helpers."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from signaling import protocol as p
from signaling.connection import TokenBucket
from signaling.hub import TICK_SLOTS, tick_slot
from signaling.ice import ice_servers, turn_credentials
from signaling.leases import room_lease_key
from signaling.lifecycle import Timeouts, can_transition, sources_for, sweep_decision
from signaling.presence import decode_route
from tests.signaling.peers import split_candidates


def test_messages_round_trip_with_version_and_from_alias():
    sig = p.Signal(to="b", from_="a", candidate={"candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host"})
    wire = json.loads(sig.dumps())
    assert wire == {"v": 1, "type": "signal", "to": "b", "from": "a",
                    "candidate": {"candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host"}}
    back = p.parse_server(sig.dumps())
    assert isinstance(back, p.Signal) and back.from_ == "a" and back.candidate == sig.candidate
    assert p.parse('{"type":"join","instance_id":"tab-1"}') == p.Join(instance_id="tab-1")


@pytest.mark.parametrize("raw,code", [
    ("nope", "malformed_json"),
    ('"a string"', "malformed_json"),
    ('{"type":"dance"}', "unknown_type"),
    ('{"type":"joined","room_id":"r","participant_id":"p","instance_id":"i"}', "unknown_type"),
    ('{"v":9,"type":"ping"}', "unsupported_version"),
    ('{"type":"join","instance_id":"../etc"}', "invalid_message"),
    ('{"type":"ping","extra":1}', "invalid_message"),
    ('{"type":"signal","to":"b"}', "invalid_message"),
    ('{"type":"report","phase":"made_up"}', "invalid_message"),
])
def test_bad_frames_map_to_codes(raw, code):
    with pytest.raises(p.ProtocolError) as err:
        p.parse(raw)
    assert err.value.code == code


def test_client_and_server_vocabularies_differ():
    with pytest.raises(p.ProtocolError):
        p.parse_server('{"type":"join","instance_id":"x"}')
    assert p.parse_server('{"type":"error","code":"already_in_room","retry_after":2}').retry_after == 2
    assert p.is_hidden("recorder") and not p.is_hidden("interviewer")


def test_state_machine():
    assert can_transition("created", "active") and can_transition("orphaned", "active")
    assert not can_transition("ended", "active") and not can_transition("created", "orphaned")
    assert sources_for("ended") == ("active", "created", "orphaned")
    t = Timeouts(orphan_ms=90_000, unused_ms=3_600_000)
    assert sweep_decision("active", 0, 5, t) == ("orphaned", "everyone_left")
    assert sweep_decision("active", 2, 10**9, t) is None
    assert sweep_decision("orphaned", 0, 89_999, t) is None
    assert sweep_decision("orphaned", 0, 90_000, t) == ("ended", "orphaned")
    assert sweep_decision("orphaned", 1, 10**9, t) == ("active", "rejoined")
    assert sweep_decision("created", 0, 3_599_999, t) is None
    assert sweep_decision("created", 0, 3_600_000, t) == ("ended", "unused")
    assert sweep_decision("ended", 0, 10**9, t) is None


def test_turn_credentials_follow_the_coturn_rest_scheme():
    user, cred = turn_credentials("s3cret", "cand-1", ttl_s=600, now_s=1_700_000_000.9)
    assert user == "1700000600:cand-1"
    assert cred == base64.b64encode(hmac.new(b"s3cret", user.encode(), hashlib.sha1).digest()).decode()
    assert ice_servers([], ["turn:t:3478"], "", user="u", ttl_s=1, now_s=0) == []  # no secret, no TURN
    servers = ice_servers(["stun:s:3478"], ["turn:t:3478?transport=udp"], "k", user="u", ttl_s=1, now_s=0)
    assert servers[0] == {"urls": ["stun:s:3478"]} and servers[1]["username"] == "1:u"


def test_route_frames_and_lease_keys():
    assert decode_route(b'M\nconn1\n42\nsignal\n{"seq":42,"v":1}') == ("M", "conn1", 42, "signal", '{"seq":42,"v":1}')
    assert decode_route(b"K\nconn9") == ("K", "conn9", 0, "", "")
    assert room_lease_key("acme", "s", "c") == room_lease_key("acme", "s", "c") != room_lease_key("acme", "s", "d")
    assert room_lease_key("a", "b\x00c", "d") != room_lease_key("a", "b", "c\x00d")


def test_token_bucket():
    bucket = TokenBucket(rate=10, burst=3)
    start = bucket.at
    assert [bucket.take(start) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(start + 0.15) is True and bucket.take(start + 0.15) is False


def test_split_candidates_moves_ice_out_of_the_sdp():
    sdp = ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n"
           "a=end-of-candidates\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=candidate:2 1 udp 1 127.0.0.1 5001 typ host\r\n"
           "a=mid:1\r\n")
    clean, cands = split_candidates(sdp)
    assert "a=candidate" not in clean and "end-of-candidates" not in clean and "a=mid:1" in clean
    assert [(c["sdpMid"], c["sdpMLineIndex"]) for c in cands] == [("0", 0), ("1", 1)]
    assert cands[0]["candidate"].startswith("candidate:1 ")


def test_bare_pongs_skip_validation_but_nothing_else_does():
    assert p.is_bare_pong({"v": 1, "type": "pong", "ts": 3.5})
    assert not p.is_bare_pong({"type": "pong", "to": "x"})
    assert not p.is_bare_pong({"v": 2, "type": "pong"})
    assert not p.is_bare_pong({"type": "ping"})


def test_heartbeat_slots_spread_sockets_over_the_interval():
    import uuid

    slots = [tick_slot(uuid.uuid4().hex) for _ in range(2000)]
    counts = [slots.count(i) for i in range(TICK_SLOTS)]
    assert min(counts) > 2000 / TICK_SLOTS / 2 and set(slots) == set(range(TICK_SLOTS))
