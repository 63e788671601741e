"""CAP 1.2 public alerts (docs/exchange.md): operators issue, update and cancel them;
anyone reads the Atom feed of current alerts and each alert at its own URL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dispatch import access, readmodels
from dispatch.api.deps import OperatorDep
from dispatch.api.errors import ACTION_RESPONSES, ERROR_RESPONSES
from dispatch.api.exchange import ExchangeDep
from dispatch.api.limits import IncidentId, Label, NoteText, Reason
from dispatch.auth import Principal
from dispatch.errors import IncidentNotLocated, NotFound
from dispatch.exchange import alerts
from dispatch.exchange.cap import CAP_MEDIA_TYPE, AlertSpec, Area, Circle, FeedEntry, build_feed
from dispatch.exchange.runtime import Exchange
from dispatch.retry import in_transaction

router = APIRouter(prefix="/v1", tags=["alerts"])

Urgency = Literal["Immediate", "Expected", "Future", "Past", "Unknown"]
Severity = Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
Certainty = Literal["Observed", "Likely", "Possible", "Unlikely", "Unknown"]
Category = Literal[
    "Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport",
    "Infra", "CBRNE", "Other",
]  # fmt: skip
Identifier = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class CircleBody(_Body):
    """A circle drawn on the map."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_km: float = Field(gt=0, le=500)


class AreaBody(_Body):
    """Where the alert applies: a polygon or a circle drawn, or (with the alert's
    ``incident_id`` and neither) a circle of ``radius_km`` around the incident."""

    description: Label
    polygon: (
        Annotated[
            list[Annotated[list[float], Field(min_length=2, max_length=2)]],
            Field(min_length=3, max_length=500),
        ]
        | None
    ) = Field(default=None, description="[lat, lon] points; the ring is closed for you")
    circle: CircleBody | None = None
    radius_km: float = Field(default=1.0, gt=0, le=500)

    @model_validator(mode="after")
    def _one_shape(self) -> AreaBody:
        if self.polygon is not None and self.circle is not None:
            raise ValueError("give a polygon or a circle, not both")
        for lat, lon in self.polygon or ():
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError("polygon points are [lat, lon] within -90..90 and -180..180")
        if self.polygon is not None and len({tuple(p) for p in self.polygon}) < 3:
            raise ValueError("a polygon needs three distinct points")
        return self


class AlertBody(_Body):
    """A public alert: CAP's required fields, the texts the public reads, the area."""

    event: Label
    headline: Annotated[Label, Field(max_length=160)]
    description: NoteText | None = None
    instruction: NoteText | None = None
    urgency: Urgency
    severity: Severity
    certainty: Certainty
    categories: Annotated[list[Category], Field(min_length=1, max_length=12)]
    status: Literal["Actual", "Exercise", "Test"] = "Actual"
    expires_in_min: int = Field(default=60, ge=1, le=7 * 24 * 60)
    incident_id: IncidentId | None = None
    area: AreaBody

    @model_validator(mode="after")
    def _has_area(self) -> AlertBody:
        if self.area.polygon is None and self.area.circle is None and self.incident_id is None:
            raise ValueError(
                "draw the area (area.polygon or area.circle), or give incident_id to alert"
                " a circle of area.radius_km around the incident"
            )
        return self


class CancelBody(_Body):
    """Why the alert is withdrawn (the public reads it as the Cancel's note)."""

    reason: Reason


async def _area(conn: asyncpg.Connection, operator: Principal, body: AlertBody) -> Area:
    """The alert's area; from its incident (which the operator must see) if not drawn."""
    if body.incident_id is not None:
        zones = await readmodels.incident_zones(conn, [body.incident_id])
        access.require_incidents(operator, zones, [body.incident_id])
    drawn = body.area
    if drawn.polygon is not None:
        return Area(drawn.description, polygon=tuple((p[0], p[1]) for p in drawn.polygon))
    if drawn.circle is not None:
        c = drawn.circle
        return Area(drawn.description, circle=Circle(c.lat, c.lon, c.radius_km))
    incident_id = body.incident_id
    if incident_id is None:  # pragma: no cover - AlertBody refuses no area and no incident
        raise IncidentNotLocated(0)
    row = await conn.fetchrow("SELECT lat, lon, radius_m FROM incidents WHERE id = $1", incident_id)
    if row is None or row["lat"] is None:
        raise IncidentNotLocated(incident_id)
    # At least the incident's own uncertainty: the alert must cover where it may be.
    radius_km = max(drawn.radius_km, (row["radius_m"] or 0.0) / 1000.0)
    return Area(drawn.description, circle=Circle(row["lat"], row["lon"], radius_km))


def _spec(body: AlertBody, area: Area) -> AlertSpec:
    return AlertSpec(
        event=body.event,
        headline=body.headline,
        urgency=body.urgency,
        severity=body.severity,
        certainty=body.certainty,
        categories=tuple(dict.fromkeys(body.categories)),
        area=area,
        description=body.description or "",
        instruction=body.instruction or "",
        status=body.status,
    )


def _answer(request: Request, issued: alerts.Issued) -> dict[str, Any]:
    return {
        **issued.to_json(),
        "url": str(request.url_for("get_cap_alert", identifier=issued.identifier)),
    }


async def _on_desk(conn: asyncpg.Connection, operator: Principal, identifier: str) -> None:
    """An alert issued around an incident follows the incident's desk rule (one drawn on
    the map, with no incident, is every desk's, as an unlocated incident is)."""
    row = await conn.fetchrow(
        "SELECT i.zone_id FROM alerts a LEFT JOIN incidents i ON i.id = a.incident_id"
        " WHERE a.identifier = $1",
        identifier,
    )
    access.require_via_incident(
        operator,
        "alert",
        identifier,
        exists=row is not None,
        zone_id=row["zone_id"] if row is not None else None,
    )


async def _issue(
    request: Request,
    exchange: Exchange,
    operator: Principal,
    body: AlertBody,
    replaces: str | None,
) -> dict[str, Any]:
    services = exchange.services

    async def act(conn: asyncpg.Connection) -> alerts.Issued:
        if replaces is not None:
            await _on_desk(conn, operator, replaces)
        area = await _area(conn, operator, body)
        now = datetime.now(UTC)
        issued, _xml = await alerts.issue(
            conn,
            services.settings.db_schema,
            origin=exchange.origin,
            spec=_spec(body, area),
            sent=now,
            expires=now + timedelta(minutes=body.expires_in_min),
            incident_id=body.incident_id,
            actor=operator.actor,
            replaces=replaces,
        )
        return issued

    return _answer(request, await in_transaction(services.pool, act))


@router.post("/alerts", status_code=201, responses=ACTION_RESPONSES)
async def issue_alert(
    request: Request, body: AlertBody, exchange: ExchangeDep, operator: OperatorDep
) -> dict[str, Any]:
    """Issue a CAP 1.2 public alert for an area; it joins the feed at once."""
    return await _issue(request, exchange, operator, body, None)


@router.post("/alerts/{identifier}/update", status_code=201, responses=ACTION_RESPONSES)
async def update_alert(
    request: Request,
    identifier: Identifier,
    body: AlertBody,
    exchange: ExchangeDep,
    operator: OperatorDep,
) -> dict[str, Any]:
    """Replace a current alert with a CAP Update that references it (409 once it was
    replaced or cancelled)."""
    return await _issue(request, exchange, operator, body, identifier)


@router.post("/alerts/{identifier}/cancel", status_code=201, responses=ACTION_RESPONSES)
async def cancel_alert(
    request: Request,
    identifier: Identifier,
    body: CancelBody,
    exchange: ExchangeDep,
    operator: OperatorDep,
) -> dict[str, Any]:
    """Withdraw a current alert with a CAP Cancel that references it."""

    async def act(conn: asyncpg.Connection) -> alerts.Issued:
        await _on_desk(conn, operator, identifier)
        issued, _xml = await alerts.cancel(
            conn,
            exchange.services.settings.db_schema,
            origin=exchange.origin,
            identifier=identifier,
            note=body.reason,
            sent=datetime.now(UTC),
            actor=operator.actor,
        )
        return issued

    return _answer(request, await in_transaction(exchange.services.pool, act))


@router.get("/alerts", responses=ERROR_RESPONSES)
async def list_alerts(
    request: Request, exchange: ExchangeDep, _operator: OperatorDep
) -> list[dict[str, Any]]:
    """The alerts in force, newest first (what the public feed lists)."""
    found = await alerts.current(exchange.services.pool, datetime.now(UTC))
    return [_answer(request, issued) for issued in found]


@router.get(
    "/cap/feed",
    response_class=Response,
    responses={200: {"content": {"application/atom+xml": {}}}},
)
async def cap_feed(request: Request, exchange: ExchangeDep) -> Response:
    """Public: the Atom index of the CAP alerts in force, each linking to its CAP XML."""
    now = datetime.now(UTC)
    found = await alerts.current(exchange.services.pool, now)
    entries = [
        FeedEntry(
            a.identifier,
            a.msg_type,
            a.headline,
            a.sent,
            a.expires,
            str(request.url_for("get_cap_alert", identifier=a.identifier)),
        )
        for a in found
    ]
    feed = build_feed(
        feed_url=str(request.url_for("cap_feed")),
        sender=exchange.origin.agency_id,
        sender_name=exchange.origin.name,
        entries=entries,
        now=now,
    )
    return Response(feed, media_type="application/atom+xml")


@router.get(
    "/cap/alerts/{identifier}",
    response_class=Response,
    responses={200: {"content": {CAP_MEDIA_TYPE: {}}}, **ERROR_RESPONSES},
    name="get_cap_alert",
)
async def get_cap_alert(identifier: Identifier, exchange: ExchangeDep) -> Response:
    """Public: one CAP 1.2 alert as issued (also once replaced or expired)."""
    xml = await alerts.xml_of(exchange.services.pool, identifier)
    if xml is None:
        raise NotFound("alert", identifier)
    return Response(xml, media_type=CAP_MEDIA_TYPE)
