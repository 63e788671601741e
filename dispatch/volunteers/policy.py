"""Who is alerted to what, how far and for how long: config/volunteers.json, or the
file named by the ``volunteers_file`` setting."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from dispatch.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """The alerting rule's parameters (see config/volunteers.json's comment)."""

    incident_types: frozenset[str]
    radius_m: float = 2000.0
    max_per_incident: int = 3
    alert_ttl_s: float = 90.0
    approx_grid_m: float = 200.0
    position_stale_s: float | None = 900.0
    max_incident_age_s: float = 3600.0
    poll_s: float = 2.0


_NUMBERS = ("radius_m", "alert_ttl_s", "approx_grid_m", "max_incident_age_s", "poll_s")


def policy_from_dict(raw: Any, known_types: Collection[str], origin: str) -> AlertPolicy:
    """The policy in ``raw``; ConfigurationError naming the bad key otherwise."""
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{origin}: expected a JSON object")
    types = raw.get("incident_types")
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise ConfigurationError(f"{origin}: incident_types must be a list of type names")
    unknown = sorted(set(types) - set(known_types))
    if unknown:
        raise ConfigurationError(
            f"{origin}: incident_types names {unknown}, which config/incident_types.json does"
            f" not define (known: {sorted(known_types)})"
        )
    values: dict[str, Any] = {"incident_types": frozenset(types)}
    for key in _NUMBERS:
        if key in raw:
            value = raw[key]
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ConfigurationError(f"{origin}: {key} must be a positive number")
            values[key] = float(value)
    if "max_per_incident" in raw:
        n = raw["max_per_incident"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigurationError(f"{origin}: max_per_incident must be a whole number >= 1")
        values["max_per_incident"] = n
    if "position_stale_s" in raw:
        stale = raw["position_stale_s"]
        if stale is not None and (
            not isinstance(stale, int | float) or isinstance(stale, bool) or stale <= 0
        ):
            raise ConfigurationError(f"{origin}: position_stale_s must be positive or null")
        values["position_stale_s"] = None if stale is None else float(stale)
    return AlertPolicy(**values)


def load_policy(path: Path | None, known_types: Collection[str]) -> AlertPolicy:
    """The policy from ``path``, or the shipped config/volunteers.json when None."""
    origin = str(path) if path is not None else "config/volunteers.json"
    try:
        text = (
            path.read_text("utf-8")
            if path is not None
            else resources.files("config").joinpath("volunteers.json").read_text("utf-8")
        )
        raw = json.loads(text)
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigurationError(f"volunteers file {origin}: {err}") from err
    return policy_from_dict(raw, known_types, origin)
