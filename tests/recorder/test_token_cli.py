"""`recorder token` in a new shell: it signs with the running local stack's secret."""
from __future__ import annotations

import os
from typing import Iterator

import pytest
from typer.testing import CliRunner

from core.auth import verify_token
from recorder.cli import app


@pytest.fixture(autouse=True)
def restored_environ() -> Iterator[None]:
    """The command fills os.environ from stack.env: put it back for the other tests."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_token_reads_the_stack_env_when_no_secret_is_set(tmp_path, monkeypatch) -> None:
    secret = "stack-generated-secret-0123456789abcdef"
    (tmp_path / "stack.env").write_text(f"RECORDER_JWT_SECRET={secret}\nRECORDER_ENV=local\nOTHER=x\n")
    monkeypatch.delenv("RECORDER_JWT_SECRET", raising=False)
    monkeypatch.setenv("RECORDER_DATA_DIR", str(tmp_path))
    out = CliRunner().invoke(app, ["token", "--role", "assessor", "--sub", "ana", "--group", "panel"])
    assert out.exit_code == 0, out.output
    who = verify_token(secret, out.output.strip())
    assert (who.org, who.role, who.sub, who.groups) == ("demo", "assessor", "ana", ("panel",))


def test_an_explicit_secret_wins_over_the_stack_env(tmp_path, monkeypatch) -> None:
    (tmp_path / "stack.env").write_text("RECORDER_JWT_SECRET=stack-generated-secret-0123456789abcdef\n")
    mine = "my-own-secret-0123456789abcdefghijkl"
    monkeypatch.setenv("RECORDER_JWT_SECRET", mine)
    monkeypatch.setenv("RECORDER_DATA_DIR", str(tmp_path))
    out = CliRunner().invoke(app, ["token"])
    assert out.exit_code == 0, out.output
    assert verify_token(mine, out.output.strip()).role == "admin"
