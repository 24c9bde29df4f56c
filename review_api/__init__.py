"""review_api: see ARCHITECTURE.md. `install(app)` mounts this package's routes."""
from __future__ import annotations

from fastapi import FastAPI

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Mount this package's routers (and startup hooks) on the API app."""
