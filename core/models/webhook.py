"""Org webhook endpoints, the deliveries made to them, and every attempt of each delivery."""
from __future__ import annotations

from typing import Any, Optional

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from core.models._types import json_field, ms_field, new_id, now_ms

EVENT_TYPES = ("recording.ready", "recording.failed", "transcript.ready", "recording.deleted", "erasure.completed")
DELIVERY_STATES = ("pending", "retrying", "delivered", "failed")


class WebhookEndpoint(SQLModel, table=True):
    id: str = Field(default_factory=lambda: new_id("whe"), primary_key=True, max_length=64)
    org: str = Field(index=True, max_length=128)
    url: str = Field(max_length=2048)
    secret: str = Field(max_length=128)  # "whsec_" + base64 (Standard Webhooks)
    events: Optional[list[str]] = json_field(default=None)  # None = every event type
    description: str = Field(default="", max_length=256)
    active: bool = True
    created_by: str = Field(default="", max_length=128)
    created_at: int = ms_field(default_factory=now_ms)


class WebhookDelivery(SQLModel, table=True):
    """One event to one endpoint: `id` is the `webhook-id` header (the receiver's dedup key)."""

    __table_args__ = (Index("ix_webhookdelivery_endpoint_created", "endpoint_id", "created_at"),)

    id: str = Field(default_factory=lambda: new_id("msg"), primary_key=True, max_length=64)
    endpoint_id: str = Field(foreign_key="webhookendpoint.id", max_length=64)
    org: str = Field(max_length=128)
    event_type: str = Field(max_length=64)
    payload: Optional[dict[str, Any]] = json_field(default=None)
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    last_status_code: Optional[int] = None
    last_error: Optional[str] = Field(default=None, max_length=256)
    created_at: int = ms_field(default_factory=now_ms)
    delivered_at: Optional[int] = ms_field()


class WebhookAttempt(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)
    delivery_id: str = Field(foreign_key="webhookdelivery.id", index=True, max_length=64)
    at: int = ms_field(default_factory=now_ms)
    status_code: Optional[int] = None
    error: Optional[str] = Field(default=None, max_length=256)
    duration_ms: int = 0
