"""The audit log (core.audit) on SQLite and Postgres + a real S3 server: the hash chain, signed
checkpoints, verification of edits, gaps, rewrites and cut tails; the /v1/audit routes; the
`recorder audit` commands; the self-rescheduling checkpoint actor in a real worker process."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import pytest
import redis as redis_lib
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import select
from typer.testing import CliRunner

from core import audit, db
from core.db import session_scope
from core.errors import RecorderError
from core.models import AuditEvent
from core.settings import Settings
from core.signing import Signer, key_id, verify as verify_signature
from core.storage import ObjectStore
from tests.conftest import S3Server, auth


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = db.make_engine(db_url)
    db.migrate(eng)  # the real schema (revision 0003), not create_all
    yield eng
    eng.dispose()


@pytest.fixture
def store(s3_server: S3Server, bucket: str) -> ObjectStore:
    st = s3_server.store(bucket)
    st.ensure_bucket()
    return st


@pytest.fixture
def signer() -> Signer:
    return Signer.generate()


def fill(engine: Engine, n: int, org: str = "acme", start: int = 0) -> None:
    for i in range(start, start + n):
        audit.record(engine, org=org, action=audit.MEDIA_READ, actor=f"user-{i}", object_type="recording",
                     object_id=f"rec_{i % 3}", detail={"name": "composite.mp4", "bytes": 1000 + i, "i": i})


def change(engine: Engine, seq: int, rehash: bool = False, **fields: Any) -> None:
    """Tamper with one row behind the service's back (as someone with database access could)."""
    with session_scope(engine) as s:
        row = s.exec(select(AuditEvent).where(AuditEvent.seq == seq)).one()
        for name, value in fields.items():
            setattr(row, name, value)
        if rehash:
            row.hash = audit.row_hash(row)
        s.add(row)


def rewrite_from(engine: Engine, seq: int, detail: dict[str, Any]) -> None:
    """Edit row `seq` and recompute every hash and link after it: a consistent forged chain."""
    with session_scope(engine) as s:
        rows = list(s.exec(select(AuditEvent).where(AuditEvent.seq >= seq - 1).order_by(AuditEvent.seq)).all())
        prev = rows[0].hash if rows[0].seq == seq - 1 else audit.GENESIS
        for row in rows:
            if row.seq < seq:
                continue
            if row.seq == seq:
                row.detail = detail
            row.prev_hash = prev
            row.hash = prev = audit.row_hash(row)
            s.add(row)


def delete_rows(engine: Engine, *seqs: int) -> None:
    with session_scope(engine) as s:
        for row in s.exec(select(AuditEvent).where(AuditEvent.seq.in_(seqs))).all():  # type: ignore[attr-defined]
            s.delete(row)


# ---------------------------------------------------------------- the chain and verify

def test_appends_chain_and_verify_ok(engine: Engine, store: ObjectStore, signer: Signer) -> None:
    fill(engine, 5)
    cp = audit.checkpoint(engine, store, signer)
    assert cp is not None and cp.seq == 5 and cp.hash == audit.head(engine)[1]
    assert audit.checkpoint(engine, store, signer) is None  # nothing new: no second object
    fill(engine, 3, org="globex", start=5)
    result = audit.verify(engine, store, signer.public_key_pem(), page=2)  # several pages
    assert (result.ok, result.checked, result.checkpoints, result.head_seq) == (True, 8, 1, 8), result
    assert audit.checkpoint_seqs(store) == [5]
    with session_scope(engine) as s:
        rows = s.exec(select(AuditEvent).order_by(AuditEvent.seq)).all()
    assert [r.seq for r in rows] == list(range(1, 9)) and rows[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:]))
    assert rows[7].org == "globex" and rows[7].detail == {"name": "composite.mp4", "bytes": 1007, "i": 7}


def test_record_keeps_tokens_out_and_knows_its_actions(engine: Engine) -> None:
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    row = audit.record(engine, org="acme", action=audit.SEARCH, actor="ana",
                       detail={"query": f"token {jwt_like} here", "nested": [{"t": jwt_like}], "n": 2.5})
    assert jwt_like not in json.dumps(row.detail) and row.detail["n"] == 2.5
    with pytest.raises(ValueError, match="unknown audit action"):
        audit.record(engine, org="acme", action="media.red", actor="ana")
    assert audit.RECORDING_DELETE in audit.ACTIONS and audit.ERASURE_COMPLETE in audit.ACTIONS


def test_an_edited_row_is_named(engine: Engine, store: ObjectStore, signer: Signer) -> None:
    fill(engine, 6)
    change(engine, 3, detail={"name": "composite.mp4", "bytes": 1, "i": 2})
    result = audit.verify(engine, store, signer.public_key_pem())
    assert (result.ok, result.first_broken_seq, result.checked) == (False, 3, 2)
    assert "row 3 was altered" in result.reason


def test_an_edited_row_with_a_recomputed_hash_is_named_by_the_next_link(engine: Engine, store: ObjectStore,
                                                                         signer: Signer) -> None:
    fill(engine, 6)
    change(engine, 4, rehash=True, actor="someone-else")
    result = audit.verify(engine, store, signer.public_key_pem())
    assert (result.ok, result.first_broken_seq) == (False, 4) and "row 4 was altered or replaced" in result.reason


def test_a_deleted_middle_row_is_a_gap(engine: Engine, store: ObjectStore, signer: Signer) -> None:
    fill(engine, 6)
    delete_rows(engine, 4)
    result = audit.verify(engine, store, signer.public_key_pem())
    assert (result.ok, result.first_broken_seq, result.reason) == (False, 4, "row 4 is missing")
    delete_rows(engine, 5)
    assert audit.verify(engine, store, signer.public_key_pem()).reason == "rows 4..5 are missing"
    delete_rows(engine, 1)
    assert audit.verify(engine, store, signer.public_key_pem()).first_broken_seq == 1


def test_a_cut_tail_after_a_checkpoint_is_found_and_not_signed_over(engine: Engine, store: ObjectStore,
                                                                    signer: Signer) -> None:
    fill(engine, 6)
    audit.checkpoint(engine, store, signer)
    delete_rows(engine, 5, 6)
    result = audit.verify(engine, store, signer.public_key_pem())
    assert (result.ok, result.first_broken_seq, result.checked) == (False, 5, 4)
    assert "tail was removed" in result.reason and "checkpoint 6" in result.reason
    fill(engine, 3)  # new rows 5..7 over the cut: the checkpoint's hash at 6 no longer matches
    with pytest.raises(RecorderError) as info:
        audit.checkpoint(engine, store, signer)
    assert info.value.code == "audit_chain_broken"
    result = audit.verify(engine, store, signer.public_key_pem())
    assert (result.ok, result.first_broken_seq) == (False, 1) and "differs from checkpoint 6" in result.reason


def test_a_consistently_rewritten_chain_is_caught_by_its_checkpoint(engine: Engine, store: ObjectStore,
                                                                    signer: Signer) -> None:
    fill(engine, 4)
    audit.checkpoint(engine, store, signer)
    fill(engine, 4, start=4)
    audit.checkpoint(engine, store, signer)
    rewrite_from(engine, 6, {"forged": True})  # rows 6..8 re-hashed: every link holds
    result = audit.verify(engine, store, signer.public_key_pem())
    assert (result.ok, result.first_broken_seq) == (False, 5), result
    assert "rows 5..8 were rewritten" in result.reason and result.checkpoints == 1
    fill(engine, 1, start=8)
    with pytest.raises(RecorderError, match="no longer matches checkpoint 8"):
        audit.checkpoint(engine, store, signer)  # never signs over a forged stretch


def test_checkpoint_any_changed_byte_fails(signer: Signer) -> None:
    raw = audit.Checkpoint(seq=42, hash="ab" * 32, at=1_700_000_000_000, key=signer.key_id).signed(signer)
    pem = signer.public_key_pem()
    assert audit.open_checkpoint(raw, pem).seq == 42
    for i in range(len(raw)):
        for flip in (0x01, 0x20):
            forged = raw[:i] + bytes([raw[i] ^ flip]) + raw[i + 1:]
            with pytest.raises(audit.BadCheckpoint):
                audit.open_checkpoint(forged, pem)
    with pytest.raises(audit.BadCheckpoint, match="signature"):
        audit.open_checkpoint(raw, Signer.generate().public_key_pem())


def test_a_forged_checkpoint_object_fails_verify(engine: Engine, store: ObjectStore, signer: Signer) -> None:
    fill(engine, 3)
    audit.checkpoint(engine, store, signer)
    key = audit.checkpoint_key(3)
    raw = store.get_bytes(key)
    body = json.loads(raw)
    assert set(body) == {"at", "hash", "key", "seq", "sig", "v"} and body["key"] == key_id(signer.public_key_pem())
    store.put_bytes(key, raw.replace(b'"seq":3', b'"seq":2'), "application/json")
    result = audit.verify(engine, store, signer.public_key_pem())
    assert (result.ok, result.first_broken_seq) == (False, 3) and "checkpoint 3 is not valid" in result.reason
    store.put_bytes(key, raw, "application/json")
    assert audit.verify(engine, store, signer.public_key_pem()).ok
    other = Signer.generate()
    assert not audit.verify(engine, store, other.public_key_pem()).ok  # signed by another key


def test_concurrent_appends_keep_one_chain(engine: Engine, store: ObjectStore, signer: Signer,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "ATTEMPTS", 1)  # the chain lock serializes appends: no retry needed
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                audit.record(engine, org=f"org{n % 2}", action=audit.SEARCH, actor=f"w{n}", detail={"i": i})
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    result = audit.verify(engine, store, signer.public_key_pem())
    assert (result.ok, result.checked, result.head_seq) == (True, 120, 120), result


def test_checkpoint_is_held_where_the_bucket_has_object_lock(engine: Engine, s3_server: S3Server,
                                                             signer: Signer) -> None:
    import uuid

    st = s3_server.store(f"t-lock-{uuid.uuid4().hex[:10]}")
    st.client.make_bucket(st.bucket, object_lock=True)
    fill(engine, 2)
    cp = audit.checkpoint(engine, st, signer)
    key = audit.checkpoint_key(2)
    try:
        assert cp is not None and st.client.is_object_legal_hold_enabled(st.bucket, key)
        assert audit.verify(engine, st, signer.public_key_pem()).ok
    finally:
        for obj in st.client.list_objects(st.bucket, recursive=True, include_version=True):
            st.client.disable_object_legal_hold(st.bucket, obj.object_name, obj.version_id)
            st.client.remove_object(st.bucket, obj.object_name, version_id=obj.version_id)
        st.client.remove_bucket(st.bucket)


# ---------------------------------------------------------------- signing keys

def test_signer_is_made_once_and_reloaded(tmp_path: Path) -> None:
    settings = SimpleNamespace(signing_key_path=None, env="local", data_dir=tmp_path)
    made: list[Signer] = []
    threads = [threading.Thread(target=lambda: made.append(Signer.from_settings(settings))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({s.public_key_pem() for s in made}) == 1  # racing processes agree on one key
    key, public = tmp_path / "keys" / "signing-ed25519.pem", tmp_path / "keys" / "signing-ed25519.pub.pem"
    assert key.stat().st_mode & 0o777 == 0o600 and public.read_text() == made[0].public_key_pem()
    sig = made[0].sign(b"receipt")
    assert verify_signature(public.read_text(), b"receipt", sig) and not verify_signature(public.read_text(),
                                                                                           b"receipt!", sig)
    configured = SimpleNamespace(signing_key_path=key, env="production", data_dir=tmp_path / "x")
    assert Signer.from_settings(configured).key_id == made[0].key_id
    missing = SimpleNamespace(signing_key_path=None, env="production", data_dir=tmp_path)
    with pytest.raises(RecorderError) as info:
        Signer.from_settings(missing)
    assert info.value.code == "signing_key_missing"
    (tmp_path / "rsa.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(RecorderError, match="not an unencrypted PEM private key"):
        Signer.load(tmp_path / "rsa.pem")


# ---------------------------------------------------------------- the API

@pytest.fixture
def api(any_db_settings: Settings) -> Iterator[TestClient]:
    from recorder.app import create_app

    with TestClient(create_app(any_db_settings)) as c:
        yield c


@pytest.fixture
def bearer(any_db_settings: Settings) -> Callable[..., dict[str, str]]:
    from core.auth import mint_token

    def _headers(role: str = "compliance", org: str = "acme", sub: str = "cora") -> dict[str, str]:
        s = any_db_settings
        return auth(mint_token(s.jwt_secret, sub=sub, org=org, role=role, ttl_s=600, issuer=s.jwt_issuer))

    return _headers


def test_audit_routes_filter_page_and_isolate_orgs(api: TestClient, bearer: Callable[..., dict[str, str]]) -> None:
    engine = api.app.state.engine  # type: ignore[attr-defined]
    for i in range(7):
        audit.record(engine, org="acme", action=audit.MEDIA_READ if i % 2 else audit.SEARCH, actor=f"u{i % 3}",
                     object_type="recording", object_id=f"rec_{i % 2}", detail={"i": i})
    audit.record(engine, org="globex", action=audit.SEARCH, actor="u0", detail={"query": "globex secret"})
    first = api.get("/v1/audit?limit=3", headers=bearer())
    assert first.status_code == 200, first.text
    page = first.json()
    assert [e["seq"] for e in page["items"]] == [7, 6, 5] and page["next_cursor"]
    rest = api.get(f"/v1/audit?limit=3&cursor={page['next_cursor']}", headers=bearer()).json()
    assert [e["seq"] for e in rest["items"]] == [4, 3, 2]
    assert all(e["seq"] != 8 and "globex" not in json.dumps(e) for e in page["items"] + rest["items"])
    media = api.get("/v1/audit?action=media.read&actor=u1", headers=bearer()).json()["items"]
    assert [(e["seq"], e["action"], e["actor"]) for e in media] == [(2, "media.read", "u1")]
    by_object = api.get("/v1/audit?object_id=rec_0&action=search", headers=bearer()).json()["items"]
    assert [e["detail"]["i"] for e in by_object] == [6, 4, 2, 0]
    assert api.get("/v1/audit?from=2999-01-01", headers=bearer()).json()["items"] == []
    reads = api.get("/v1/audit?action=audit.read", headers=bearer(role="admin")).json()["items"]
    assert len(reads) == 5 and {e["actor_role"] for e in reads} == {"compliance"}  # reading the log is recorded
    assert reads[-1]["detail"] == {"count": 3}
    theirs = api.get("/v1/audit?action=search", headers=bearer(org="globex")).json()["items"]
    assert [e["detail"].get("query") for e in theirs] == ["globex secret"]
    assert api.get("/v1/audit?cursor=bm9wZQ", headers=bearer()).json()["code"] == "bad_cursor"
    for role in ("interviewer", "assessor", "service", "recorder", "candidate"):
        for path in ("/v1/audit", "/v1/audit/verify"):
            resp = api.get(path, headers=bearer(role=role))
            assert resp.status_code == 403 and resp.json()["code"] == "wrong_role", (role, path)
    assert api.get("/v1/audit").status_code == 401


def test_verify_route_names_only_seqs(api: TestClient, bearer: Callable[..., dict[str, str]],
                                      any_db_settings: Settings) -> None:
    state = api.app.state  # type: ignore[attr-defined]
    fill(state.engine, 4, org="globex")
    fill(state.engine, 2, org="acme", start=4)
    audit.checkpoint(state.engine, state.store, Signer.from_settings(any_db_settings))
    ok = api.get("/v1/audit/verify", headers=bearer()).json()
    assert ok == {"ok": True, "checked": 6, "first_broken_seq": None, "reason": "", "checkpoints": 1,
                  "head_seq": 6}
    change(state.engine, 2, detail={"name": "globex-private", "i": 99})
    broken = api.get("/v1/audit/verify", headers=bearer(role="admin")).json()
    assert (broken["ok"], broken["first_broken_seq"]) == (False, 2) and "globex" not in json.dumps(broken)
    key = api.get("/v1/audit/public-key").json()  # public: verifiers need no token
    assert key["algorithm"] == "Ed25519" and key["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert (Path(any_db_settings.data_dir) / "keys" / "signing-ed25519.pub.pem").read_text() == key["public_key_pem"]


# ---------------------------------------------------------------- the CLI

def test_cli_verify_and_checkpoint(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from recorder.cli import app

    for name, value in {"RECORDER_DATABASE_URL": settings.database_url, "RECORDER_DATA_DIR": str(settings.data_dir),
                        "RECORDER_S3_ENDPOINT": settings.s3_endpoint, "RECORDER_S3_ACCESS_KEY": settings.s3_access_key,
                        "RECORDER_S3_SECRET_KEY": settings.s3_secret_key, "RECORDER_S3_BUCKET": settings.s3_bucket,
                        "RECORDER_JWT_SECRET": settings.jwt_secret, "RECORDER_ENV": "test"}.items():
        monkeypatch.setenv(name, value)
    engine = db.make_engine(settings.database_url)
    db.migrate(engine)
    ObjectStore.from_settings(settings).ensure_bucket()
    runner = CliRunner()
    assert runner.invoke(app, ["audit", "checkpoint"]).output.strip() == "the log is empty"
    fill(engine, 5)
    signed = runner.invoke(app, ["audit", "checkpoint"])
    assert signed.exit_code == 0 and "_audit/checkpoints/000000000005.json" in signed.output, signed.output
    again = runner.invoke(app, ["audit", "checkpoint"])
    assert again.exit_code == 0 and "head seq 5 is checkpointed already" in again.output
    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0 and "intact: 5 rows, 1 signed checkpoints" in ok.output, ok.output
    published, stranger = settings.data_dir / "published.pem", settings.data_dir / "stranger.pem"
    published.write_text(runner.invoke(app, ["audit", "public-key"]).output)
    stranger.write_text(Signer.generate().public_key_pem())
    assert runner.invoke(app, ["audit", "verify", "--public-key", str(published)]).exit_code == 0
    wrong = runner.invoke(app, ["audit", "verify", "--public-key", str(stranger)])
    assert wrong.exit_code == 1 and "checkpoint 5 is not valid" in wrong.output, wrong.output
    delete_rows(engine, 3)
    broken = runner.invoke(app, ["audit", "verify"])
    assert broken.exit_code == 1 and "broken at seq 3: row 3 is missing" in broken.output, broken.output
    fill(engine, 1)  # row 6, after the checkpoint: altered before the next one
    change(engine, 6, detail={"forged": True})
    refused = runner.invoke(app, ["audit", "checkpoint"])
    assert refused.exit_code == 1 and "audit_chain_broken" in refused.output
    assert runner.invoke(app, ["audit", "verify", "--public-key", "/nonexistent.pem"]).exit_code == 2
    engine.dispose()


# ---------------------------------------------------------------- the periodic actor

def test_checkpoint_chain_schedules_one_successor(redis_url: str) -> None:
    import dramatiq

    from core.queue import make_broker

    broker = make_broker(redis_url)
    client = redis_lib.Redis.from_url(redis_url)
    try:
        from workers.audit import CHAIN_KEY, schedule_next
    finally:
        dramatiq.set_broker(broker)
    first = schedule_next(broker, client, "", 60)  # a boot kick starts the chain
    assert first and client.get(CHAIN_KEY).decode() == first
    assert schedule_next(broker, client, "", 60) is None  # a second kick: the chain is alive
    assert schedule_next(broker, client, "stale-token", 60) is None  # a duplicate message stops
    second = schedule_next(broker, client, first, 60)
    assert second and client.get(CHAIN_KEY).decode() == second and 180_000 < client.pttl(CHAIN_KEY) <= 240_000
    assert schedule_next(broker, client, first, 60) is None  # a retry of an old message schedules nothing
    assert schedule_next(broker, client, second, 0) is None  # interval 0: by hand only
    delayed = client.hgetall("dramatiq:default.DQ.msgs")
    assert sorted(json.loads(m)["args"][0] for m in delayed.values()) == sorted([first, second])
    client.close()
    broker.close()


def test_worker_signs_checkpoints_periodically(settings: Settings, store: ObjectStore, tmp_path: Path) -> None:
    from tests.workers.conftest import WorkerProcess, settings_env

    engine = db.make_engine(settings.database_url)
    db.migrate(engine)
    fill(engine, 3)
    env = settings_env(settings, RECORDER_AUDIT_CHECKPOINT_INTERVAL_S="1", RECORDER_DATA_DIR=str(tmp_path))
    worker = WorkerProcess(env, ["default"], tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 60
        while audit.checkpoint_seqs(store) != [3] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert audit.checkpoint_seqs(store) == [3], worker.log()
        fill(engine, 2, start=3)
        while 5 not in audit.checkpoint_seqs(store) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert audit.checkpoint_seqs(store)[-1] == 5, worker.log()  # the chain rescheduled itself
    finally:
        worker.stop()
    public = (tmp_path / "keys" / "signing-ed25519.pub.pem").read_text()
    assert audit.verify(engine, store, public).checkpoints >= 2
    engine.dispose()
