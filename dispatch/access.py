"""Who may see and act on what through REST: the console socket's desk rule, for every
route. Pure: the routes read the facts (an incident's zone, a unit's zone) and ask here.

The rule (docs/api.md, "Who sees what"):

- A city-wide operator (no desk) sees and acts on everything.
- A desk operator sees an incident whose zone is one of the desk's, or that has no zone
  (not yet located, or outside every jurisdiction): exactly what ``DeskScope`` admits on
  the console socket, so no unlocated emergency falls between desks.
- A desk sees the units now in its zones (the units of its console snapshot) and may
  set their status; it may offer its incidents to any unit, since the console's map
  shows it the whole fleet for assignments across its borders.
- Anything else is answered as if it did not exist (404): a desk does not learn that
  another zone's incident exists, or what its id is.
- A unit's MDT token is not an operator token: 401 on every operator route; nor is a
  SHOUT volunteer's token, which opens the volunteer socket and nothing else.
- A desk manages the volunteers whose home area is one of its zones, as it sees units.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dispatch.auth import Principal
from dispatch.errors import NotFound
from dispatch.scope import DeskScope


def desk_zones(principal: Principal) -> frozenset[str] | None:
    """The zones a principal's views are filtered to; None for the whole city."""
    return principal.zones


def sees_incident_zone(principal: Principal, zone_id: str | None) -> bool:
    """Whether the principal may see (and act on) an incident now in ``zone_id``."""
    if principal.zones is None:
        return True
    # The very rule the console socket applies to each event, so REST and socket agree.
    return DeskScope(principal.zones).admits({"zone_id": zone_id})


def sees_unit_zone(principal: Principal, zone_id: str | None) -> bool:
    """Whether the principal may see a unit's record and set its status.

    A desk's snapshot lists the units now in its zones (a unit outside every zone is on
    no desk); their positions reach every console through the positions stream anyway.
    """
    return principal.zones is None or (zone_id is not None and zone_id in principal.zones)


def refusal(principal: Principal, kind: str, ident: object) -> NotFound:
    """The one refusal: a thing missing and a thing on another desk read the same (the
    same error name too), so a desk cannot probe for another zone's incidents."""
    err = NotFound(kind, ident)
    if principal.zones is not None:
        err.args = (
            f"{kind} {ident} does not exist or is not on this desk (it is in a zone the desk"
            " does not watch); a city-wide operator can see every zone",
        )
    return err


def require_incidents(
    principal: Principal, zones_by_id: Mapping[int, str | None], wanted: Iterable[int]
) -> None:
    """Refuse (404) unless every incident in ``wanted`` exists and the principal sees it.

    ``zones_by_id`` maps the incidents that exist to their zone (None for no zone).
    """
    for incident_id in wanted:
        if incident_id not in zones_by_id or not sees_incident_zone(
            principal, zones_by_id[incident_id]
        ):
            raise refusal(principal, "incident", incident_id)


def require_via_incident(
    principal: Principal, kind: str, ident: object, *, exists: bool, zone_id: str | None
) -> None:
    """Refuse (404) unless an incident, or a thing of one (an assignment, a report),
    exists and the principal sees the incident's zone; the refusal names the thing, not
    its incident, whose id a desk must not learn."""
    if not exists or not sees_incident_zone(principal, zone_id):
        raise refusal(principal, kind, ident)


def require_unit(principal: Principal, unit_id: str, *, exists: bool, zone_id: str | None) -> None:
    """Refuse (404) unless the unit exists and the principal sees it."""
    if not exists or not sees_unit_zone(principal, zone_id):
        raise refusal(principal, "unit", unit_id)


def sees_volunteer(principal: Principal, home_area: str | None) -> bool:
    """Whether the principal may see and manage a SHOUT volunteer: a desk those whose
    home area (a zone id) it watches, as it does units; a city-wide operator all."""
    return principal.zones is None or (home_area is not None and home_area in principal.zones)


def require_volunteer(
    principal: Principal, volunteer_id: str, *, exists: bool, home_area: str | None
) -> None:
    """Refuse (404) unless the volunteer exists and the principal sees them."""
    if not exists or not sees_volunteer(principal, home_area):
        raise refusal(principal, "volunteer", volunteer_id)


def require_zone(principal: Principal, zone_id: str, *, exists: bool) -> None:
    """Refuse (404) unless the zone exists and is on the principal's desk (a desk
    registers volunteers of its own zones)."""
    if not exists or not sees_volunteer(principal, zone_id):
        raise refusal(principal, "zone", zone_id)
