"""Webhook endpoints, events and their delivery history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from tuition.api.deps import ActorDep, ContainerDep
from tuition.api.listing import Page, check_choice, page_of
from tuition.api.routing import v1_router
from tuition.domain.errors import NotFound
from tuition.domain.ids import Prefix
from tuition.services import webhooks as webhook_service
from tuition.store.work import Endpoint

router = v1_router(tags=["webhooks"])


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2000)
    events: list[str] = Field(
        min_length=1, description="Event types to receive, e.g. ['order.paid'], or ['*']"
    )
    description: str = Field(default="", max_length=500)


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(default=None, max_length=2000)
    events: list[str] | None = None
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = None


class EndpointOut(BaseModel):
    id: str
    object: str = "webhook_endpoint"
    url: str
    events: list[str]
    description: str
    enabled: bool
    created_at: datetime
    secret: str | None = Field(
        default=None, description="Only in the response that created the endpoint"
    )


class EndpointList(BaseModel):
    data: list[EndpointOut]


class AttemptOut(BaseModel):
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    response_excerpt: str | None = Field(
        description="The first 200 characters of the endpoint's answer"
    )
    error: str | None


class DeliveryOut(BaseModel):
    endpoint_id: str
    status: str
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str | None
    history: list[AttemptOut]


class EventOut(BaseModel):
    id: str
    object: str = "event"
    type: str
    object_id: str
    data: dict[str, Any]
    created_at: datetime
    deliveries: list[DeliveryOut] | None = None


class EventList(BaseModel):
    data: list[EventOut]
    has_more: bool


class Resend(BaseModel):
    model_config = ConfigDict(extra="forbid")
    endpoint_id: str | None = Field(default=None, description="Only this endpoint")


class ResendOut(BaseModel):
    event_id: str
    queued: int


def _endpoint_out(e: Endpoint, *, with_secret: bool = False) -> EndpointOut:
    return EndpointOut(
        id=e.id,
        url=e.url,
        events=e.events,
        description=e.description,
        enabled=e.enabled,
        created_at=e.created_at,
        secret=e.secret if with_secret else None,
    )


def _event_out(row: dict[str, Any]) -> EventOut:
    return EventOut(
        id=row["id"],
        type=row["type"],
        object_id=row["object_id"],
        data=row["data"],
        created_at=row["created_at"],
    )


@router.post(
    "/webhook_endpoints",
    status_code=201,
    response_model=EndpointOut,
    summary="Register a webhook endpoint",
    description="The response carries the signing `secret`; it is shown only this once. "
    "Deliveries are signed `Tuition-Signature: t=<unix>,v1=<hex HMAC-SHA256>`. The `url` "
    "must be http(s), without credentials, and reach a public address (422 `url_forbidden` "
    "otherwise; `TUITION_WEBHOOK_ALLOWED_HOSTS` exempts hosts for local development).",
)
async def create_endpoint(
    body: EndpointCreate, container: ContainerDep, actor: ActorDep
) -> EndpointOut:
    endpoint = await webhook_service.create_endpoint(
        container.uow(),
        url=body.url,
        events=body.events,
        description=body.description,
        clock=container.clock,
        allowed_hosts=container.settings.webhook_allowed_hosts,
        actor=actor,
    )
    return _endpoint_out(endpoint, with_secret=True)


@router.get("/webhook_endpoints", response_model=EndpointList, summary="List webhook endpoints")
async def list_endpoints(container: ContainerDep) -> EndpointList:
    async with container.uow() as uow:
        endpoints = await uow.work.endpoints()
    return EndpointList(data=[_endpoint_out(e) for e in endpoints])


@router.patch(
    "/webhook_endpoints/{endpoint_id}",
    response_model=EndpointOut,
    summary="Change, enable or disable an endpoint",
)
async def update_endpoint(
    endpoint_id: str, body: EndpointUpdate, container: ContainerDep, actor: ActorDep
) -> EndpointOut:
    endpoint = await webhook_service.update_endpoint(
        container.uow(),
        endpoint_id,
        url=body.url,
        events=body.events,
        description=body.description,
        enabled=body.enabled,
        clock=container.clock,
        allowed_hosts=container.settings.webhook_allowed_hosts,
        actor=actor,
    )
    return _endpoint_out(endpoint)


@router.post(
    "/webhook_endpoints/{endpoint_id}/rotate_secret",
    response_model=EndpointOut,
    summary="Give an endpoint a new signing secret",
    description="The response carries the new `secret`, shown only this once; deliveries "
    "from now on are signed with it and the old secret stops at once.",
)
async def rotate_secret(endpoint_id: str, container: ContainerDep, actor: ActorDep) -> EndpointOut:
    endpoint = await webhook_service.rotate_secret(
        container.uow(), endpoint_id, clock=container.clock, actor=actor
    )
    return _endpoint_out(endpoint, with_secret=True)


@router.get("/events", response_model=EventList, summary="List events, newest first")
async def list_events(
    container: ContainerDep,
    page: Annotated[Page, page_of(Prefix.EVENT)],
    type: Annotated[str | None, Query(max_length=64)] = None,
) -> EventList:
    check_choice(type, webhook_service.EVENT_TYPES, param="type")
    async with container.uow() as uow:
        rows, has_more = await uow.work.events(
            type_=type, limit=page.limit, starting_after=page.starting_after
        )
    return EventList(data=[_event_out(r) for r in rows], has_more=has_more)


@router.get(
    "/events/{event_id}",
    response_model=EventOut,
    summary="An event with its delivery history",
)
async def get_event(event_id: str, container: ContainerDep) -> EventOut:
    async with container.uow() as uow:
        row = await uow.work.event(event_id)
        deliveries = await uow.work.deliveries_of(event_id) if row else []
    if row is None:
        raise NotFound(f"no event {event_id!r}", code="event_not_found", param="event_id")
    out = _event_out(row)
    out.deliveries = [
        DeliveryOut(
            endpoint_id=d.endpoint_id,
            status=d.status,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at,
            delivered_at=d.delivered_at,
            last_error=d.last_error,
            history=[
                AttemptOut(
                    attempted_at=a.attempted_at,
                    status_code=a.status_code,
                    latency_ms=a.latency_ms,
                    # Attempts recorded before the cap kept 500 characters.
                    response_excerpt=a.response_excerpt[: webhook_service.EXCERPT_CHARS]
                    if a.response_excerpt is not None
                    else None,
                    error=a.error,
                )
                for a in attempts
            ],
        )
        for d, attempts in deliveries
    ]
    return out


@router.post(
    "/events/{event_id}/resend",
    response_model=ResendOut,
    summary="Deliver an event again",
    description="Queues the event for every enabled endpoint that wants it (or just "
    "`endpoint_id`), whatever happened to earlier deliveries.",
)
async def resend_event(event_id: str, body: Resend, container: ContainerDep) -> ResendOut:
    now = container.clock.now()
    async with container.uow() as uow:
        if await uow.work.event(event_id) is None:
            raise NotFound(f"no event {event_id!r}", code="event_not_found", param="event_id")
        if body.endpoint_id and await uow.work.endpoint(body.endpoint_id) is None:
            raise NotFound(f"no webhook endpoint {body.endpoint_id!r}", param="endpoint_id")
        queued = await uow.work.resend(event_id, body.endpoint_id, now=now)
        await uow.commit()
    return ResendOut(event_id=event_id, queued=queued)


routers: list[APIRouter] = [router]
