"""Dependencies of the review routes: app resources and who may read what."""
from __future__ import annotations

from typing import Annotated

import dramatiq
from fastapi import Depends, Request
from sqlalchemy.engine import Engine

from core.storage import ObjectStore


def _engine(request: Request) -> Engine:
    return request.app.state.engine


def _store(request: Request) -> ObjectStore:
    return request.app.state.store


def _broker(request: Request) -> dramatiq.Broker:
    return request.app.state.broker


EngineDep = Annotated[Engine, Depends(_engine)]
StoreDep = Annotated[ObjectStore, Depends(_store)]
BrokerDep = Annotated[dramatiq.Broker, Depends(_broker)]
