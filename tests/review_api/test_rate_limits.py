"""One rate-limit mechanism for costly actions: per caller and per org, 429 + Retry-After."""
from __future__ import annotations

from fastapi.testclient import TestClient

from core.auth import mint_token
from core.db import session_scope
from core.models import Chunk, Recording
from recorder.app import create_app
from tests.conftest import auth, make_settings


def test_search_is_limited_per_caller_then_per_org(redis_url, s3_server, bucket, tmp_path) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'r.db'}", redis_url, s3_server, bucket, tmp_path,
                             rate_limits={"search": [3, 5], "token": [2, 50], "create_recording": [2, 50],
                                          "retranscribe": [1, 50]})

    def tok(sub: str, org: str = "acme") -> dict[str, str]:
        return auth(mint_token(settings.jwt_secret, sub=sub, org=org, role="admin", ttl_s=600,
                               issuer=settings.jwt_issuer))

    with TestClient(create_app(settings)) as api:
        a, b = tok("a"), tok("b")
        assert [api.get("/v1/search", params={"q": "x"}, headers=a).status_code for _ in range(4)] == [200] * 3 + [429]
        limited = api.get("/v1/search", params={"q": "x"}, headers=a)
        assert limited.json()["code"] == "rate_limited" and 0 < int(limited.headers["Retry-After"]) <= 60
        # b has its own quota, but the org's (5) runs out after b's second search
        assert [api.get("/v1/search", params={"q": "x"}, headers=b).status_code for _ in range(3)] == [200, 200, 429]
        assert api.get("/v1/search", params={"q": "x"}, headers=tok("c", org="globex")).status_code == 200
        # recording creation and re-transcription are charged the same way
        codes = [api.post("/v1/recordings", json={"client_key": f"k{i}"}, headers=a).status_code for i in range(3)]
        assert codes == [201, 201, 429]
        with session_scope(api.app.state.engine) as s:
            s.add(Recording(id="rec_rl", org="acme", client_key="rec_rl", status="ready"))
            s.flush()
            s.add(Chunk(recording_id="rec_rl", track_id="a", seq=0, status="stored", sha256="0" * 64,
                        object_key="acme/recordings/rec_rl/chunks/a/000000.webm"))
        codes = [api.post("/v1/recordings/rec_rl/transcript/versions", json={}, headers=a).status_code
                 for _ in range(2)]
        assert codes == [202, 429]
