"""Recording lifecycle around ingest: idle auto-finalize, database outage."""
from __future__ import annotations

import time

from fastapi.testclient import TestClient

from recorder.app import create_app
from recorder.services import free_port, start_postgres
from tests.conftest import auth
from tests.ingest.conftest import T0, create_recording, put


def test_silent_client_is_finalized_after_idle_time(settings, token_for, webm_chunks) -> None:
    quick = settings.model_copy(update={"finalize_idle_s": 1})
    with TestClient(create_app(quick)) as c:
        tok = token_for(role="service")
        rec = create_recording(c, tok)
        idle = create_recording(c, tok, key="never-uploaded")
        assert put(c, tok, rec, "cam-a", 0, webm_chunks[0][0], T0).status_code == 201
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status = c.get(f"/v1/recordings/{rec}", headers=auth(tok)).json()["status"]
            if status != "recording":
                break
            time.sleep(0.2)
        assert status == "processing"
        steps = {s["step"]: s["status"] for s in c.get(f"/v1/recordings/{rec}", headers=auth(tok)).json()["steps"]}
        assert steps == {"media.final": "pending", "transcript.final": "pending"}
        # a recording that never got a chunk is not finalized by the idle sweep
        assert c.get(f"/v1/recordings/{idle}", headers=auth(tok)).json()["status"] == "recording"


def test_database_down_gives_503_then_retry_succeeds(settings, token_for, webm_chunks, services_dir) -> None:
    import uuid

    from sqlalchemy import create_engine, text

    port = free_port()
    pg_dir = services_dir / f"pg-outage-{uuid.uuid4().hex[:6]}"
    pg = start_postgres(pg_dir, port)
    try:
        admin = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text('CREATE DATABASE "outage"'))
        admin.dispose()
        s = settings.model_copy(update={"database_url": f"postgresql+psycopg://postgres@127.0.0.1:{port}/outage"})
        with TestClient(create_app(s)) as c:
            tok = token_for(role="service")
            rec = create_recording(c, tok)
            pg.stop()
            down = put(c, tok, rec, "cam-a", 0, webm_chunks[0][0], T0)
            assert down.status_code == 503 and down.json()["code"] == "database_unavailable"
            assert int(down.headers["retry-after"]) >= 1
            pg = start_postgres(pg_dir, port)
            retry = put(c, tok, rec, "cam-a", 0, webm_chunks[0][0], T0)
            assert retry.status_code == 201, retry.text
            ledger = c.get(f"/v1/recordings/{rec}/ledger", headers=auth(tok)).json()
            assert [ch["seq"] for ch in ledger["tracks"][0]["chunks"]] == [0]
    finally:
        pg.stop()
