"""Incident types from config/: the priority and the response plan of each."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources

from dispatch.errors import ConfigurationError

AGENCIES = frozenset({"police", "ambulance", "fire"})


@dataclass(frozen=True, slots=True)
class IncidentType:
    """One kind of emergency: how urgent, and which agencies must each send a unit."""

    name: str
    label: str
    priority: int
    plan: tuple[str, ...]
    # Capabilities the unit of an agency must have (a woman officer for a woman in
    # distress); agencies not listed need none.
    needs: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def needs_of(self, agency: str) -> frozenset[str]:
        """Capabilities this type requires of a unit of ``agency``."""
        return self.needs.get(agency, frozenset())

    @property
    def agency(self) -> str:
        """The agency whose unit goes first."""
        return self.plan[0]


def load_incident_types() -> dict[str, IncidentType]:
    """The incident types shipped in config/incident_types.json, by name."""
    raw = json.loads(resources.files("config").joinpath("incident_types.json").read_text("utf-8"))
    types: dict[str, IncidentType] = {}
    for name, spec in raw.items():
        if name.startswith("_"):
            continue
        try:
            plan = tuple(str(a) for a in spec["plan"])
            needs = {
                str(agency): frozenset(str(c) for c in caps)
                for agency, caps in dict(spec.get("needs", {})).items()
            }
            kind = IncidentType(name, str(spec["label"]), int(spec["priority"]), plan, needs)
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigurationError(f"incident type {name!r} is malformed: {err}") from err
        if not 1 <= kind.priority <= 4:
            raise ConfigurationError(f"incident type {name!r}: priority must be 1 to 4")
        if not set(kind.needs) <= set(plan):
            raise ConfigurationError(
                f"incident type {name!r}: needs names an agency that is not in its plan"
            )
        if not plan or not set(plan) <= AGENCIES or len(set(plan)) != len(plan):
            raise ConfigurationError(
                f"incident type {name!r}: plan must list distinct agencies of {sorted(AGENCIES)}"
            )
        types[name] = kind
    if "other" not in types:
        raise ConfigurationError("incident types must include 'other', the fallback")
    return types
