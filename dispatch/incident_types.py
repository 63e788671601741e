"""Incident types from config/: the priority and the agency each one calls for."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from dispatch.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class IncidentType:
    """One kind of emergency."""

    name: str
    label: str
    priority: int
    agency: str


def load_incident_types() -> dict[str, IncidentType]:
    """The incident types shipped in config/incident_types.json, by name."""
    raw = json.loads(resources.files("config").joinpath("incident_types.json").read_text("utf-8"))
    types: dict[str, IncidentType] = {}
    for name, spec in raw.items():
        if name.startswith("_"):
            continue
        try:
            kind = IncidentType(
                name, str(spec["label"]), int(spec["priority"]), str(spec["agency"])
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigurationError(f"incident type {name!r} is malformed: {err}") from err
        if not 1 <= kind.priority <= 4:
            raise ConfigurationError(f"incident type {name!r}: priority must be 1 to 4")
        types[name] = kind
    if "other" not in types:
        raise ConfigurationError("incident types must include 'other', the fallback")
    return types
