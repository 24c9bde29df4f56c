"""Org webhook endpoints (admin): register, list, remove, delivery log, redeliver.

    POST   /v1/webhooks                          {url, events?, description?} → 201 with the secret (shown once)
    GET    /v1/webhooks                          the org's endpoints (no secrets)
    DELETE /v1/webhooks/{id}                     stop delivering to it
    GET    /v1/webhooks/{id}/deliveries          newest first, each with its attempts
    POST   /v1/webhooks/{id}/deliveries/{d}/redeliver   send that event again (same webhook-id)
"""
from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from sqlmodel import select

from core import webhooks
from core.access import Action, require
from core.db import session_scope
from core.errors import InvalidInput, NotFound
from core.http import CurrentPrincipal
from core.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from core.queue import enqueue
from review_api.deps import BrokerDep, EngineDep

router = APIRouter(prefix="/v1", tags=["webhooks"])


class EndpointCreate(BaseModel):
    url: str = Field(min_length=8, max_length=2048)
    events: Optional[list[str]] = Field(None, max_length=10, description="event types; empty = all")
    description: str = Field("", max_length=256)


class EndpointPublic(BaseModel):
    id: str
    url: str
    events: Optional[list[str]]
    description: str
    active: bool
    created_at: int


class EndpointCreated(EndpointPublic):
    secret: str  # Standard Webhooks "whsec_…": shown only in this response


class AttemptPublic(BaseModel):
    at: int
    status_code: Optional[int]
    error: Optional[str]
    duration_ms: int


class DeliveryPublic(BaseModel):
    id: str
    event_type: str
    status: str
    attempts: list[AttemptPublic]
    created_at: int
    delivered_at: Optional[int]


def _public(ep: WebhookEndpoint) -> EndpointPublic:
    return EndpointPublic(id=ep.id, url=ep.url, events=ep.events, description=ep.description, active=ep.active,
                          created_at=ep.created_at)


def _endpoint(s, org: str, endpoint_id: str) -> WebhookEndpoint:  # type: ignore[no-untyped-def]
    ep = s.get(WebhookEndpoint, endpoint_id)
    if ep is None or ep.org != org or not ep.active:
        raise NotFound(f"no webhook endpoint {endpoint_id}", code="unknown_webhook")
    return ep


@router.post("/webhooks", response_model=EndpointCreated, status_code=201)
def create_endpoint(body: EndpointCreate, principal: CurrentPrincipal, engine: EngineDep,
                    request: Request) -> EndpointCreated:
    """Register an endpoint; its signing secret is in this response only."""
    require(principal, Action.MANAGE_WEBHOOKS)
    url = webhooks.check_url(body.url.strip(), request.app.state.settings.webhook_allow_private)
    events = webhooks.check_events(body.events)
    with session_scope(engine) as s:
        count = len(s.exec(select(WebhookEndpoint.id).where(WebhookEndpoint.org == principal.org,
                                                            WebhookEndpoint.active == True)).all())  # noqa: E712
        if count >= webhooks.MAX_ENDPOINTS:
            raise InvalidInput(f"an org has at most {webhooks.MAX_ENDPOINTS} webhook endpoints",
                               code="too_many_webhooks")
        ep = WebhookEndpoint(org=principal.org, url=url, secret=webhooks.new_secret(), events=events,
                             description=body.description, created_by=principal.sub)
        s.add(ep)
    return EndpointCreated(**_public(ep).model_dump(), secret=ep.secret)


@router.get("/webhooks", response_model=list[EndpointPublic])
def list_endpoints(principal: CurrentPrincipal, engine: EngineDep) -> list[EndpointPublic]:
    require(principal, Action.MANAGE_WEBHOOKS)
    with session_scope(engine) as s:
        rows = s.exec(select(WebhookEndpoint).where(WebhookEndpoint.org == principal.org,
                                                    WebhookEndpoint.active == True)  # noqa: E712
                      .order_by(WebhookEndpoint.created_at)).all()
        return [_public(r) for r in rows]


@router.delete("/webhooks/{endpoint_id}", status_code=204, response_class=Response)
def delete_endpoint(endpoint_id: str, principal: CurrentPrincipal, engine: EngineDep) -> Response:
    """Stop delivering to an endpoint (its delivery log is kept)."""
    require(principal, Action.MANAGE_WEBHOOKS)
    with session_scope(engine) as s:
        ep = _endpoint(s, principal.org, endpoint_id)
        ep.active = False
        s.add(ep)
    return Response(status_code=204)


@router.get("/webhooks/{endpoint_id}/deliveries", response_model=list[DeliveryPublic])
def list_deliveries(endpoint_id: str, principal: CurrentPrincipal, engine: EngineDep,
                    limit: int = Query(50, ge=1, le=200)) -> list[DeliveryPublic]:
    """The endpoint's deliveries, newest first, with every attempt (status code or error)."""
    require(principal, Action.MANAGE_WEBHOOKS)
    with session_scope(engine) as s:
        _endpoint(s, principal.org, endpoint_id)
        rows = s.exec(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
                      .order_by(WebhookDelivery.created_at.desc()).limit(limit)).all()  # type: ignore[union-attr]
        ids = [r.id for r in rows]
        attempts = s.exec(select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(ids))
                          .order_by(WebhookAttempt.id)).all() if ids else []
    return [DeliveryPublic(id=r.id, event_type=r.event_type, status=r.status, created_at=r.created_at,
                           delivered_at=r.delivered_at,
                           attempts=[AttemptPublic(at=a.at, status_code=a.status_code, error=a.error,
                                                   duration_ms=a.duration_ms)
                                     for a in attempts if a.delivery_id == r.id]) for r in rows]


@router.post("/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver", status_code=202)
def redeliver(endpoint_id: str, delivery_id: str, principal: CurrentPrincipal, engine: EngineDep,
              broker: BrokerDep) -> dict[str, str]:
    """Send a delivery again (same `webhook-id`, so receivers can de-duplicate)."""
    require(principal, Action.MANAGE_WEBHOOKS)
    with session_scope(engine) as s:
        _endpoint(s, principal.org, endpoint_id)
        row = s.get(WebhookDelivery, delivery_id)
        if row is None or row.endpoint_id != endpoint_id:
            raise NotFound(f"no delivery {delivery_id} on this endpoint", code="unknown_delivery")
        row.status, row.attempts = "pending", 0
        s.add(row)
    enqueue(broker, "deliver_webhook", delivery_id)
    return {"delivery_id": delivery_id, "status": "queued"}
