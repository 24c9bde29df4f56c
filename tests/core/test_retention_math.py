"""Retention date math (core.retention) and the artifact kinds of keys (core.artifacts): plain values."""
from __future__ import annotations

import json

import pytest

from core.artifacts import KINDS, TABLE_KINDS, UnknownArtifact, kind_of_key
from core.retention import (DAY_MS, Hold, Outcome, Rule, Subject, check_receipt, canonical, due_at, due_dates,
                            holding, outcome, parse_rules, receipt_body, record_due, recording_end, rules_json,
                            salted_hash, shortened)
from core.signing import Signer

END = 1_700_000_000_000


def rules(**kinds: list[tuple[int, str]]) -> tuple[Rule, ...]:
    return parse_rules({k: [{"days": d, "after": a} for d, a in v] for k, v in kinds.items()}, KINDS)


def test_rules_round_trip_and_bad_rules_are_refused() -> None:
    raw = {"transcripts": [{"days": 180, "after": "rejected"}, {"days": 365, "after": "end"}],
           "raw_chunks": [{"days": 30, "after": "end"}]}
    parsed = parse_rules(raw, KINDS)
    assert rules_json(parsed) == {"raw_chunks": [{"days": 30, "after": "end"}],
                                  "transcripts": [{"days": 365, "after": "end"}, {"days": 180, "after": "rejected"}]}
    for bad, why in (({"videos": [{"days": 1}]}, "unknown artifact kind"),
                     ({"transcripts": [{"days": 1, "after": "interviewed"}]}, "unknown anchor"),
                     ({"transcripts": [{"days": -1}]}, "days"), ({"transcripts": [{"days": True}]}, "days"),
                     ({"transcripts": [{"days": 1}, {"days": 2, "after": "end"}]}, "two rules")):
        with pytest.raises(ValueError, match=why):
            parse_rules(bad, KINDS)


def test_recording_end_is_finalized_else_last_chunk_else_created() -> None:
    assert recording_end(END + 5, END + 3, END) == END + 5
    assert recording_end(None, END + 3, END) == END + 3
    assert recording_end(None, None, END) == END


def test_due_counts_from_the_end_or_the_latest_outcome() -> None:
    policy = rules(raw_chunks=[(30, "end")], transcripts=[(365, "end"), (180, "rejected")],
                   media_outputs=[(90, "hired")])
    assert due_at(policy, "raw_chunks", END, None) == END + 30 * DAY_MS
    assert due_at(policy, "transcripts", END, None) == END + 365 * DAY_MS
    assert due_at(policy, "media_outputs", END, None) is None  # not hired (yet): kept
    assert due_at(policy, "quarantine", END, None) is None  # no rule: kept
    rejected = Outcome("rejected", END + 10 * DAY_MS)
    assert due_at(policy, "transcripts", END, rejected) == END + 190 * DAY_MS  # the earliest rule wins
    early = Outcome("rejected", END - 50 * DAY_MS)  # rejected before this interview ended: count from the end
    assert due_at(policy, "transcripts", END, early) == END + 180 * DAY_MS
    dates = due_dates(policy, KINDS, END, Outcome("hired", END + DAY_MS))
    assert dates == {"raw_chunks": END + 30 * DAY_MS, "quarantine": None, "media_outputs": END + 91 * DAY_MS,
                     "transcripts": END + 365 * DAY_MS, "quality": None}


def test_only_the_latest_outcome_counts() -> None:
    assert outcome([]) is None
    assert outcome([("rejected", 5), ("hired", 9)]) == Outcome("hired", 9)
    assert outcome([("hired", 9), ("rejected", 5)]) == Outcome("hired", 9)
    assert outcome([("rejected", 5), ("withdrawn", 5)]) == Outcome("withdrawn", 5)  # same time: the later given
    policy = rules(transcripts=[(180, "rejected")])
    latest = outcome([("rejected", END), ("hired", END + DAY_MS)])
    assert due_at(policy, "transcripts", END, latest) is None  # rejected, then hired: kept


def test_the_record_goes_when_everything_it_still_holds_is_due() -> None:
    due = {"raw_chunks": 10, "quarantine": None, "media_outputs": 30, "transcripts": 20, "quality": None}
    assert record_due(due, {"raw_chunks", "media_outputs", "transcripts"}) == 30
    assert record_due(due, {"raw_chunks", "quarantine"}) is None  # quarantine has no rule: kept, and so is it
    assert record_due(due, set()) == 30  # nothing left: once the last rule is due
    assert record_due({k: None for k in KINDS}, set()) is None


def test_a_locked_policy_may_only_keep_longer() -> None:
    old = rules(raw_chunks=[(30, "end")], transcripts=[(365, "end")])
    assert shortened(old, rules(raw_chunks=[(31, "end")], transcripts=[(365, "end")])) == []
    assert shortened(old, rules(transcripts=[(400, "end")])) == []  # dropping a rule keeps raw chunks forever
    assert shortened(old, rules(raw_chunks=[(29, "end")], transcripts=[(365, "end")])) == [
        "raw_chunks: 29 days after end is shorter than the locked 30"]
    (problem,) = shortened(old, rules(raw_chunks=[(30, "end")], transcripts=[(365, "end"), (500, "rejected")]))
    assert "new rule" in problem and "rejected" in problem  # could delete before the end rule would
    assert shortened(old, rules(quarantine=[(10000, "end")])) != []  # quarantine was kept forever


def test_holds_cover_by_recording_room_candidate_or_matter() -> None:
    subject = Subject("rec_1", "room_1", frozenset({"cand-1", "iv-1"}), frozenset({"M-7"}))
    holds = [Hold("h1", "recording", "rec_1"), Hold("h2", "recording", "rec_2"), Hold("h3", "room", "room_1"),
             Hold("h4", "candidate", "cand-1"), Hold("h5", "candidate", "cand-2"), Hold("h6", "matter", "M-7"),
             Hold("h7", "matter", "M-8")]
    assert holding(holds, subject) == ["h1", "h3", "h4", "h6"]
    assert holding(holds, Subject("rec_3")) == []


def test_salted_hashes_depend_on_the_salt_and_the_purpose() -> None:
    a = salted_hash("salt-a", "cand-1")
    assert a == salted_hash("salt-a", "cand-1") and len(a) == 64
    assert a != salted_hash("salt-b", "cand-1") and a != salted_hash("salt-a", "cand-1", "object")
    assert "cand-1" not in a


def test_keys_the_pipeline_writes_map_to_exactly_one_kind() -> None:
    base = "acme/recordings/rec_1/"
    expect = {
        "chunks/cam-a/000003.webm": "raw_chunks", "quarantine/cam-a/000004-0123456789abcdef.bin": "quarantine",
        "windows/000001.mp4": "media_outputs", "windows/000001.jpg": "media_outputs",
        "windows/000001.json": "media_outputs", "outputs/composite.mp4": "media_outputs",
        "outputs/hls/index.m3u8": "media_outputs", "outputs/hls/w000001-000.ts": "media_outputs",
        "outputs/poster.jpg": "media_outputs", "outputs/thumbs/strip.jpg": "media_outputs",
        "outputs/transcript.json": "transcripts", "outputs/transcripts/v001/transcript.vtt": "transcripts",
        "outputs/transcripts/v002/live.srt": "transcripts", "work/transcript/trv_1/cam-a/000002.pcm": "transcripts",
    }
    assert {k: kind_of_key(base + k) for k in expect} == expect
    for bad in ("acme/other/rec_1/chunks/a", "acme/recordings/rec_1/notes.txt", "_audit/checkpoints/1.json",
                "acme/recordings/rec_1/work/other/x"):
        with pytest.raises(UnknownArtifact):
            kind_of_key(bad)
    assert set(TABLE_KINDS.values()) <= {*KINDS, "record"}
    assert TABLE_KINDS["search_doc"] == TABLE_KINDS["transcriptsegment"] == "transcripts"


def _receipt(signer: Signer) -> dict:
    items = [{"recording_id": "rec_1", "kind": "raw_chunks", "status": "deleted",
              "deleted_objects": [["acme/recordings/rec_1/chunks/a/000000.webm", 100]], "deleted_rows": {"chunk": 1}},
             {"recording_id": "rec_2", "kind": "transcripts", "status": "skipped", "note": "held", "held_by": ["h1"]}]
    body = receipt_body(receipt_id="rcpt_1", org="acme", salt="s", manifest={
        "id": "rman_1", "purpose": "erasure", "created_at": END, "at": END, "erasure_id": "era_1"},
        items=items, completed_at=END + 5, signer_key_id=signer.key_id, requested_by="comp-1", run_by="system",
        candidate_hash=salted_hash("s", "cand-1"))
    return {"receipt": body, "signature": signer.sign(canonical(body)), "public_key": signer.public_key_pem()}


def test_receipts_carry_counts_and_hashes_only_and_any_change_breaks_them() -> None:
    signer, other = Signer.generate(), Signer.generate()
    doc = _receipt(signer)
    text = canonical(doc).decode()
    assert "cand-1" not in text and "chunks/a/000000.webm" not in text  # hashes, not names
    assert doc["receipt"]["totals"] == {"raw_chunks": {"objects": 1, "bytes": 100, "rows": 1}}
    assert doc["receipt"]["kept"] == [{"recording_id": "rec_2", "kind": "transcripts", "reason": "held",
                                       "held_by": ["h1"]}]
    assert check_receipt(doc)[0] and check_receipt(doc, signer.public_key_pem())[0]
    assert not check_receipt(doc, other.public_key_pem())[0]
    body = text.encode()
    start = body.index(b'"receipt"')
    for pos in range(start, len(body), max(1, (len(body) - start) // 97)):  # one changed byte, anywhere
        changed = body[:pos] + bytes([body[pos] ^ 0x01]) + body[pos + 1:]
        try:
            tampered = json.loads(changed)
        except ValueError:
            continue  # no longer JSON: refused before any signature check
        assert not check_receipt(tampered, signer.public_key_pem())[0], changed[pos - 20:pos + 20]
    forged = _receipt(other)  # re-signed with another key, carrying that key: caught by the expected key
    assert check_receipt(forged)[0] and not check_receipt(forged, signer.public_key_pem())[0]
