"""Admission: a cap on participants per bot process.

The decision is pure (plain values); then two real `recorder bot` processes, the first with
a cap of one participant: it records the first room, leaves the second to the other process
(which takes the seat), and says so in its log.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pydantic
import pytest

from bot.admission import Admission, AdmissionPolicy, AtCapacity, decide
from bot.config import BotConfig
from core import errors
from core.settings import Settings
from tests.bot.conftest import BOT_ID, Api, BotProcess
from tests.signaling.peers import loopback_only

POLICY = AdmissionPolicy(max_participants=6, room_floor=2, spread_s=1.0)


# ---- the decision (pure) ---------------------------------------------------------------
def test_an_idle_process_admits_any_room_even_one_over_its_cap():
    d = decide(load=0, present=9, policy=POLICY)
    assert d.admitted and d.reason == "idle" and d.needs == 9 and d.delay_s == 0


def test_a_room_that_fits_is_admitted_with_a_delay_in_proportion_to_the_load():
    d = decide(load=3, present=3, policy=POLICY)
    assert d.admitted and d.reason == "fits" and d.delay_s == pytest.approx(0.5)


def test_a_room_that_would_pass_the_cap_is_refused():
    d = decide(load=5, present=2, policy=POLICY)
    assert not d.admitted and d.reason == "at_capacity"
    assert d.log_fields() == {"reason": "at_capacity", "room_participants": 2, "load": 5, "cap": 6}


def test_a_room_counts_at_least_the_floor_however_few_are_in_it_yet():
    assert decide(load=4, present=1, policy=POLICY).needs == 2
    assert decide(load=4, present=1, policy=POLICY).admitted       # 4 + 2 = 6
    assert not decide(load=5, present=0, policy=POLICY).admitted   # 5 + 2 > 6


def test_admission_reserves_what_it_admits_and_release_frees_it():
    adm = Admission(POLICY)
    assert adm.admit("r1", present=1).admitted and adm.load() == 2
    assert adm.admit("r2", present=3).admitted and adm.load() == 5
    refused = adm.admit("r3", present=1)
    assert not refused.admitted and refused.load == 5 and "r3" not in adm.rooms
    adm.release("r2")
    assert adm.admit("r3", present=1).admitted and adm.load() == 4


def test_a_held_room_that_grew_counts_its_live_participants():
    adm = Admission(POLICY)
    adm.admit("r1", present=1)
    assert adm.load(live={"r1": 5}) == 5
    assert not adm.admit("r2", present=1, live={"r1": 5}).admitted   # 5 + 2 > 6
    assert adm.admit("r2", present=1, live={"r1": 4}).admitted       # 4 + 2 = 6


def test_asking_again_for_a_held_room_does_not_count_it_twice():
    adm = Admission(AdmissionPolicy(max_participants=2, room_floor=2))
    assert adm.admit("r1", present=2).reason == "idle"
    assert adm.admit("r1", present=2).reason == "idle" and adm.load() == 2


def test_at_capacity_is_a_retryable_error_with_its_own_code():
    exc = AtCapacity("full", retry_after=5.0)
    assert isinstance(exc, errors.RateLimited) and exc.retryable and exc.code == "bot_at_capacity"
    assert exc.retry_after == 5


def test_the_cap_comes_from_settings_and_bad_values_fail_at_start(monkeypatch):
    cfg = BotConfig.from_settings(Settings(bot_max_participants=7, bot_room_floor=3))
    assert cfg.admission == AdmissionPolicy(max_participants=7, room_floor=3)
    assert cfg.display_name.startswith("Recorder (") and cfg.display_name.endswith(")")
    monkeypatch.setenv("RECORDER_BOT_MAX_PARTICIPANTS", "0")
    with pytest.raises(pydantic.ValidationError, match="bot_max_participants"):
        Settings()


# ---- two real bot processes ----------------------------------------------------------------
def _events(path: Path, event: str, **fields: object) -> list[dict]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items()):
                out.append(entry)
    return out


async def _logged(path: Path, event: str, timeout: float = 60.0, **fields: object) -> dict:
    async with asyncio.timeout(timeout):
        while not (found := _events(path, event, **fields)):
            await asyncio.sleep(0.2)
    return found[0]


def _recorder_names(detail: dict) -> set[str]:
    return {s["display_name"] for s in detail["history"] if s["participant_id"] == BOT_ID}


def test_a_process_at_its_cap_leaves_the_next_room_to_another_process(bot_settings, settings, live_api, token_for,
                                                                      tmp_path, monkeypatch):
    loopback_only(monkeypatch)
    small = BotProcess(bot_settings.model_copy(update={"bot_max_participants": 1}), tmp_path / "small.log")
    roomy = BotProcess(bot_settings, tmp_path / "roomy.log")

    async def scenario():
        api = Api(live_api.url, token_for("interviewer"), settings.database_url)
        admin = Api(live_api.url, token_for("admin"), settings.database_url)
        people = []
        try:
            small.start()
            await _logged(small.log_path, "bot_ready")
            first = await api.room(slot="slot-a", record=True)
            people.append(await api.participant(first["id"], "cand-a", "candidate"))
            await people[-1].join()
            await people[-1].wait_peer(BOT_ID, timeout=60)              # only `small` runs: it is its room
            roomy.start()
            await _logged(roomy.log_path, "bot_ready")
            second = await api.room(slot="slot-b", candidate="cand-2", record=True)
            people.append(await api.participant(second["id"], "cand-b", "candidate"))
            await people[-1].join()
            await people[-1].wait_peer(BOT_ID, timeout=60)
            refused = await _logged(small.log_path, "room_refused_at_capacity", room_id=second["id"])
            joined = await _logged(roomy.log_path, "bot_joined", room_id=second["id"])
            recs = [await api.bot_recording(r["id"]) for r in (first, second)]
            ledgers = [await api.wait_chunks(rec["id"], per_track=1, tracks=2, timeout=60) for rec in recs]
            details = [await admin.get(f"/v1/rooms/{r['id']}") for r in (first, second)]
            for room in (first, second):
                await api.end(room["id"])
        finally:
            for who in people:
                await who.close()
            await api.close()
            await admin.close()
        return first, second, refused, joined, ledgers, details

    try:
        first, second, refused, joined, ledgers, details = asyncio.run(scenario())
    finally:
        small.stop()
        roomy.stop()
    assert refused["cap"] == 1 and refused["load"] >= 1 and refused["reason"] == "at_capacity"
    assert joined and not _events(small.log_path, "bot_joined", room_id=second["id"])
    assert _events(small.log_path, "bot_joined", room_id=first["id"])
    # the seat of each room is held by the process that admitted it (its name carries the pid)
    assert _recorder_names(details[0]) == {f"Recorder ({_host()}:{small.proc.proc.pid})"}, details[0]["history"]
    assert _recorder_names(details[1]) == {f"Recorder ({_host()}:{roomy.proc.proc.pid})"}, details[1]["history"]
    for ledger in ledgers:
        assert {t["kind"] for t in ledger["tracks"]} == {"audio", "video"}


def _host() -> str:
    import socket

    return socket.gethostname()
