"""docker-compose.yml stays valid and in step with Settings; the package DAG holds."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from core.settings import DEV_JWT_SECRET, Settings

ROOT = Path(__file__).resolve().parent.parent


def test_compose_services_images_and_env_match_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "minio", "api", "worker", "bot"} <= set(services)
    fields = {f"RECORDER_{name.upper()}" for name in Settings.model_fields}
    for name in ("api", "worker", "bot"):
        svc = services[name]
        assert svc["image"] == "interview-recorder:latest"
        assert svc["command"][0] == "recorder" and svc["command"][1] == name
        env = svc["environment"]
        unknown = set(env) - fields
        assert not unknown, f"{name} sets env vars Settings does not read: {unknown}"
        assert {"RECORDER_DATABASE_URL", "RECORDER_REDIS_URL", "RECORDER_S3_ENDPOINT",
                "RECORDER_JWT_SECRET"} <= set(env)
        # Production mode, so Settings refuse the development secret; the secret has no default.
        assert env["RECORDER_ENV"] == "production"
        assert env["RECORDER_JWT_SECRET"].startswith("${RECORDER_JWT_SECRET:?"), env["RECORDER_JWT_SECRET"]
        assert DEV_JWT_SECRET not in env["RECORDER_JWT_SECRET"]
        assert "healthcheck" in svc
    for name in ("postgres", "redis", "minio"):
        assert "healthcheck" in services[name] and ":" in services[name]["image"]
    assert services["api"]["environment"]["RECORDER_DATABASE_URL"].startswith("postgresql+psycopg://")


def test_production_settings_from_compose_env_validate(monkeypatch, tmp_path) -> None:
    from core.signing import Signer

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = dict(compose["services"]["api"]["environment"])
    env["RECORDER_JWT_SECRET"] = "a-production-secret-of-some-length"
    # every signing process gets the one key as a compose secret at the configured path
    assert env["RECORDER_SIGNING_KEY_PATH"] == "/run/secrets/signing_key" and "signing_key" in compose["secrets"]
    for name in ("api", "worker"):
        assert "signing_key" in compose["services"][name]["secrets"], name
    Signer.load_or_create(tmp_path / "signing.pem")
    env["RECORDER_SIGNING_KEY_PATH"] = str(tmp_path / "signing.pem")  # what the secret mount provides
    env = {k: v.replace("${POSTGRES_PASSWORD:-recorder}", "pw") for k, v in env.items()}
    for key, value in env.items():
        monkeypatch.setenv(key, value if "${" not in value else "x" * 20)
    s = Settings()
    assert s.env == "production" and s.redis_url == "redis://redis:6379/0"
    assert s.turn_urls == ["turn:coturn:3478"]


def test_production_refuses_the_dev_secret(monkeypatch) -> None:
    import pydantic
    import pytest

    monkeypatch.setenv("RECORDER_ENV", "production")
    with pytest.raises(pydantic.ValidationError, match="JWT_SECRET"):
        Settings()


def test_import_contracts_hold() -> None:
    done = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout and " kept" in done.stdout
