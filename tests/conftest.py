"""Fixtures that start the real services on free loopback ports.

Session-wide: redis-server, an S3 server (`weed mini`), Postgres (started on first use).
Per test: a fresh database (SQLite file or a new Postgres database), a fresh bucket and
a flushed Redis, so tests never see each other's data.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
import redis as redis_lib
from sqlalchemy import create_engine, text

from minio.error import S3Error

from core.auth import mint_token
from core.errors import RecorderError
from core.settings import Settings
from core.storage import ObjectStore
from recorder.services import ManagedProcess, free_port, start_postgres, start_redis, start_s3

S3_ACCESS, S3_SECRET = "test-access", "test-secret-key-123"
JWT_SECRET = "test-jwt-secret-0123456789abcdef"


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    # /tmp/…, world-traversable: the postgres user must reach its data dir.
    path = Path(tempfile.mkdtemp(prefix="recorder-tests-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(services_dir: Path) -> Iterator[str]:
    port = free_port()
    proc = start_redis(services_dir / "redis", port)
    yield f"redis://127.0.0.1:{port}/0"
    proc.stop()


class S3Server:
    """A restartable S3 server (fault tests stop and start it on the same port)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.port = data_dir, free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.proc: ManagedProcess | None = None

    def start(self) -> None:
        self.proc = start_s3(self.data_dir, self.port, S3_ACCESS, S3_SECRET, volume_size_mb=16)

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def store(self, bucket: str) -> ObjectStore:
        return ObjectStore(self.endpoint, S3_ACCESS, S3_SECRET, bucket)


@pytest.fixture(scope="session")
def s3_server(services_dir: Path) -> Iterator[S3Server]:
    server = S3Server(services_dir / "s3")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_server(services_dir: Path) -> Iterator[str]:
    port = free_port()
    proc = start_postgres(services_dir / "pg", port)
    yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    proc.stop()


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'recorder.db'}"


def _postgres_url(server: str) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{server}/{name}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on SQLite and on Postgres (tests using it run twice)."""
    if request.param == "sqlite":
        return _sqlite_url(tmp_path)
    return _postgres_url(request.getfixturevalue("pg_server"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return _sqlite_url(tmp_path)


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[str]:
    """A fresh bucket name; the bucket (a SeaweedFS collection with its volumes) is dropped after."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    yield name
    drop_bucket(s3_server, name)


def drop_bucket(s3: S3Server, name: str) -> None:
    store = s3.store(name)
    try:
        if store.client.bucket_exists(name):
            store.delete_prefix("")
            store.client.remove_bucket(name)
    except (RecorderError, S3Error):  # a test that broke the server must not fail teardown
        pass


@pytest.fixture
def redis_url(redis_server: str) -> str:
    client = redis_lib.Redis.from_url(redis_server)
    client.flushdb()
    client.close()
    return redis_server


def make_settings(db: str, redis_url: str, s3: S3Server, bucket: str, data_dir: Path, **over) -> Settings:
    values = dict(env="test", database_url=db, redis_url=redis_url, s3_endpoint=s3.endpoint,
                  s3_access_key=S3_ACCESS, s3_secret_key=S3_SECRET, s3_bucket=bucket,
                  jwt_secret=JWT_SECRET, data_dir=data_dir, log_json=True)
    values.update(over)
    return Settings(**values)


@pytest.fixture
def settings(sqlite_url: str, redis_url: str, s3_server: S3Server, bucket: str, tmp_path: Path) -> Settings:
    """Settings for one test on SQLite + real Redis + real S3."""
    return make_settings(sqlite_url, redis_url, s3_server, bucket, tmp_path)


@pytest.fixture
def any_db_settings(db_url: str, redis_url: str, s3_server: S3Server, bucket: str, tmp_path: Path) -> Settings:
    """Like `settings`, parametrized over SQLite and Postgres."""
    return make_settings(db_url, redis_url, s3_server, bucket, tmp_path)


@pytest.fixture
def store(settings: Settings) -> ObjectStore:
    st = ObjectStore.from_settings(settings)
    st.ensure_bucket()
    return st


@pytest.fixture
def token_for(settings: Settings) -> Callable[..., str]:
    """Mint a token with the test secret: token_for(role="interviewer", org="acme", …)."""

    def _mint(role: str = "admin", org: str = "acme", sub: str = "tester", ttl_s: int = 600, **extra) -> str:
        return mint_token(settings.jwt_secret, sub=sub, org=org, role=role, ttl_s=ttl_s,
                          issuer=settings.jwt_issuer, **extra)

    return _mint


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(settings: Settings):
    """An in-process client for the real app on real services."""
    from fastapi.testclient import TestClient

    from recorder.app import create_app

    with TestClient(create_app(settings)) as c:
        yield c


os.environ.setdefault("RECORDER_LOG_JSON", "true")


class LiveServer:
    """A real uvicorn server for the app, in a thread, on a free loopback port."""

    def __init__(self, settings: Settings) -> None:
        import threading

        import uvicorn

        from recorder.app import create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_config=None,
                                lifespan="on", timeout_graceful_shutdown=2, ws_max_size=256 * 1024)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        import time

        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("live API server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def live_api(settings: Settings) -> Iterator[LiveServer]:
    """The real app served by uvicorn on 127.0.0.1 (for concurrency/fault tests)."""
    with LiveServer(settings) as server:
        yield server
