"""CAP 1.2 public alerts and their Atom index. Pure: a spec, an identity and a time in,
XML text out. A public alert carries what the public needs (what, where, what to do)
and who issued it (this centre's agency id), never an operator, a caller or an incident.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from lxml import etree

CAP = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM = "http://www.w3.org/2005/Atom"
CAP_MEDIA_TYPE = "application/cap+xml"
# India Standard Time: CAP's dateTime pattern wants an offset, never Z.
IST = timezone(timedelta(hours=5, minutes=30))
# A circle drawn on a map is also given as a polygon of this many sides, for the
# receivers that read only polygons.
_CIRCLE_SIDES = 32
_EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True, slots=True)
class Circle:
    """An alert area: a centre and a radius in kilometres."""

    lat: float
    lon: float
    radius_km: float


@dataclass(frozen=True, slots=True)
class Area:
    """Where an alert applies: a described polygon (lat, lon pairs) or circle."""

    description: str
    polygon: tuple[tuple[float, float], ...] = ()
    circle: Circle | None = None


@dataclass(frozen=True, slots=True)
class AlertSpec:
    """What the operator says: CAP's required info fields, the texts, the area."""

    event: str
    headline: str
    urgency: str
    severity: str
    certainty: str
    categories: tuple[str, ...]
    area: Area
    description: str = ""
    instruction: str = ""
    status: str = "Actual"
    language: str = "en-IN"


@dataclass(frozen=True, slots=True)
class Reference:
    """An earlier alert an Update or Cancel refers to."""

    sender: str
    identifier: str
    sent: datetime


def cap_time(moment: datetime) -> str:
    """A CAP dateTime: whole seconds, India's offset (``2026-12-04T12:45:00+05:30``)."""
    return moment.astimezone(IST).replace(microsecond=0).isoformat()


def closed_ring(points: Sequence[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """The polygon with its first point repeated at the end, as CAP requires."""
    ring = tuple(points)
    return ring if ring and ring[0] == ring[-1] else (*ring, ring[0])


def circle_polygon(circle: Circle) -> tuple[tuple[float, float], ...]:
    """The circle as a closed polygon (lat, lon), on a sphere."""
    lat1, lon1 = math.radians(circle.lat), math.radians(circle.lon)
    angular = circle.radius_km / _EARTH_RADIUS_KM
    points = []
    for step in range(_CIRCLE_SIDES):
        bearing = 2 * math.pi * step / _CIRCLE_SIDES
        lat2 = math.asin(
            math.sin(lat1) * math.cos(angular)
            + math.cos(lat1) * math.sin(angular) * math.cos(bearing)
        )
        lon2 = lon1 + math.atan2(
            math.sin(bearing) * math.sin(angular) * math.cos(lat1),
            math.cos(angular) - math.sin(lat1) * math.sin(lat2),
        )
        lon_deg = (math.degrees(lon2) + 540.0) % 360.0 - 180.0
        points.append((round(math.degrees(lat2), 6), round(lon_deg, 6)))
    return closed_ring(points)


def _sub(parent: etree._Element, name: str, text: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{CAP}}}{name}")
    element.text = text
    return element


def _pairs(points: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{lat:.6f},{lon:.6f}" for lat, lon in points)


def build_alert(
    *,
    identifier: str,
    sender: str,
    sender_name: str,
    sent: datetime,
    expires: datetime,
    msg_type: str,
    spec: AlertSpec | None,
    references: Sequence[Reference] = (),
    note: str = "",
) -> str:
    """One CAP 1.2 alert as XML text. ``msg_type`` is Alert, Update (with ``references``)
    or Cancel (``references`` and a ``note``; ``spec`` None: a Cancel has no info)."""
    alert = etree.Element(f"{{{CAP}}}alert", nsmap={None: CAP})  # type: ignore[dict-item]
    _sub(alert, "identifier", identifier)
    _sub(alert, "sender", sender)
    _sub(alert, "sent", cap_time(sent))
    _sub(alert, "status", spec.status if spec is not None else "Actual")
    _sub(alert, "msgType", msg_type)
    _sub(alert, "scope", "Public")
    if note:
        _sub(alert, "note", note)
    if references:
        _sub(
            alert,
            "references",
            " ".join(f"{r.sender},{r.identifier},{cap_time(r.sent)}" for r in references),
        )
    if spec is not None:
        info = etree.SubElement(alert, f"{{{CAP}}}info")
        _sub(info, "language", spec.language)
        for category in spec.categories:
            _sub(info, "category", category)
        _sub(info, "event", spec.event)
        _sub(info, "urgency", spec.urgency)
        _sub(info, "severity", spec.severity)
        _sub(info, "certainty", spec.certainty)
        _sub(info, "effective", cap_time(sent))
        _sub(info, "expires", cap_time(expires))
        _sub(info, "senderName", sender_name)
        _sub(info, "headline", spec.headline)
        if spec.description:
            _sub(info, "description", spec.description)
        if spec.instruction:
            _sub(info, "instruction", spec.instruction)
        area = etree.SubElement(info, f"{{{CAP}}}area")
        _sub(area, "areaDesc", spec.area.description)
        if spec.area.polygon:
            _sub(area, "polygon", _pairs(closed_ring(spec.area.polygon)))
        if spec.area.circle is not None:
            circle = spec.area.circle
            _sub(area, "polygon", _pairs(circle_polygon(circle)))
            _sub(area, "circle", f"{circle.lat:.6f},{circle.lon:.6f} {circle.radius_km:g}")
    text: str = etree.tostring(alert, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + text


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One current alert in the Atom index."""

    identifier: str
    msg_type: str
    headline: str
    sent: datetime
    expires: datetime
    url: str


def build_feed(
    *, feed_url: str, sender: str, sender_name: str, entries: Sequence[FeedEntry], now: datetime
) -> str:
    """The Atom index of current alerts, newest first, each linking to its CAP XML."""
    feed = etree.Element(f"{{{ATOM}}}feed", nsmap={None: ATOM})  # type: ignore[dict-item]

    def sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
        element = etree.SubElement(parent, f"{{{ATOM}}}{name}")
        if text is not None:
            element.text = text
        return element

    sub(feed, "id", feed_url)
    sub(feed, "title", f"{sender_name}: public alerts")
    newest = max((e.sent for e in entries), default=now)
    sub(feed, "updated", newest.astimezone(UTC).replace(microsecond=0).isoformat())
    author = sub(feed, "author")
    sub(author, "name", sender_name)
    sub(author, "uri", f"urn:erss:agency:{sender}")
    sub(feed, "link").attrib.update({"rel": "self", "href": feed_url})
    for entry in sorted(entries, key=lambda e: (e.sent, e.identifier), reverse=True):
        item = sub(feed, "entry")
        sub(item, "id", entry.url)
        title = (
            entry.headline if entry.msg_type == "Alert" else f"{entry.msg_type}: {entry.headline}"
        )
        sub(item, "title", title)
        sub(item, "updated", cap_time(entry.sent))
        sub(item, "published", cap_time(entry.sent))
        sub(item, "summary", f"{entry.msg_type}, expires {cap_time(entry.expires)}")
        sub(item, "link").attrib.update(
            {"rel": "alternate", "type": CAP_MEDIA_TYPE, "href": entry.url}
        )
    text: str = etree.tostring(feed, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + text
