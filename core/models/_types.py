"""Column helpers shared by model modules."""
from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import JSON, BigInteger, Column
from sqlmodel import Field


def now_ms() -> int:
    return int(time.time() * 1000)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def ms_field(default: Any = None, **kw: Any) -> Any:
    """An epoch-milliseconds column (BIGINT: 32-bit INTEGER overflows on Postgres)."""
    nullable = default is None and "default_factory" not in kw
    return Field(default=default, sa_column=Column(BigInteger, nullable=nullable), **kw) \
        if "default_factory" not in kw else Field(sa_column=Column(BigInteger, nullable=False), **kw)


def json_field(**kw: Any) -> Any:
    return Field(sa_column=Column(JSON, nullable=True), **kw)
