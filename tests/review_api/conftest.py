"""Review API fixtures: the real app on SQLite and Postgres, with transcripts to read."""
from __future__ import annotations

from typing import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from core import search
from core.auth import mint_token
from core.db import session_scope
from core.models import Recording, RecordingGrant
from core.settings import Settings
from recorder.app import create_app


PANEL = "panel"  # the group every test recording is granted to


@pytest.fixture
def api(any_db_settings: Settings) -> Iterator[TestClient]:
    """The whole API app on SQLite or Postgres (+ real Redis and S3)."""
    with TestClient(create_app(any_db_settings)) as c:
        yield c


@pytest.fixture
def bearer(any_db_settings: Settings) -> Callable[..., dict[str, str]]:
    def _headers(role: str = "assessor", org: str = "acme", **extra) -> dict[str, str]:
        """An assessor of the "panel" group, which `add_recording` grants every recording to."""
        extra.setdefault("groups", [PANEL])
        token = mint_token(any_db_settings.jwt_secret, sub="t", org=org, role=role, ttl_s=600,
                           issuer=any_db_settings.jwt_issuer, **extra)
        return {"Authorization": f"Bearer {token}"}

    return _headers


def add_recording(engine, rec_id: str, org: str = "acme", started_at: int = 1_700_000_000_000,
                  status: str = "ready", title: str = "", grant_to: str | None = PANEL) -> Recording:
    rec = Recording(id=rec_id, org=org, client_key=rec_id, status=status, title=title or rec_id,
                    started_at_ms=started_at)
    with session_scope(engine) as s:
        s.add(rec)
        s.flush()
        if grant_to:
            s.add(RecordingGrant(recording_id=rec_id, org=org, kind="group", subject=grant_to))
    return rec


def index_lines(engine, rec: Recording, lines: list[tuple[str, str, int, str]]) -> None:
    """lines: (speaker, role, start_ms, text) indexed as the recording's current transcript."""
    docs = [search.SearchDoc(f"v1:{rec.id}:{i}", rec.id, "v1", speaker.lower(), speaker, role, start,
                             start + 2000, text) for i, (speaker, role, start, text) in enumerate(lines)]
    search.index_recording(engine, rec.org, rec.id, rec.started_at_ms or 0, docs)
