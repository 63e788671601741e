"""Other agencies' CADs this centre exchanges incidents with, from a JSON file like the
gateways' (``ERSS_AGENCIES_FILE``): where to POST, the shared secrets, what they are."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from dispatch.errors import ConfigurationError

_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


@dataclass(frozen=True, slots=True)
class HandOverRule:
    """Hand an incident to this agency on its own: one of ``types`` whose plan's slot of
    ``no_unit_of`` has had no unit (none offered or on its way) for ``after_s`` since it
    was reported (e.g. medical to the 108 ambulance service when no own ambulance is
    free)."""

    types: frozenset[str]
    no_unit_of: str
    after_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Agency:
    """An external CAD. ``secrets[0]`` signs what we send; any of them is accepted on what
    it sends (several during a rotation). ``type`` is its IANA responder type (ems,
    fire, police, psap)."""

    id: str
    endpoint: str
    # Out of the repr: an Agency in a log line or a traceback must not carry its secrets.
    secrets: tuple[str, ...] = field(repr=False)
    type: str = "psap"
    name: str = ""
    hand_over_when: HandOverRule | None = None

    def public(self) -> dict[str, str]:
        """What an operator may see of it (no secret, no endpoint credentials)."""
        return {"id": self.id, "name": self.name or self.id, "type": self.type}


def parse_agencies(raw: object, source: str) -> dict[str, Agency]:
    """Agencies from the file's JSON; ConfigurationError naming the problem otherwise."""
    if not isinstance(raw, dict):
        raise ConfigurationError(f"agencies file {source}: expected an object of agencies")
    agencies: dict[str, Agency] = {}
    for agency_id, spec in raw.items():
        if not isinstance(agency_id, str) or not _ID.fullmatch(agency_id):
            raise ConfigurationError(
                f"agencies file {source}: {agency_id!r} is not an agency id (lower-case"
                " letters, digits, '.', '_' and '-')"
            )
        if not isinstance(spec, dict):
            raise ConfigurationError(f"agencies file {source}: {agency_id!r} must be an object")
        endpoint = spec.get("endpoint")
        if not isinstance(endpoint, str) or not re.match(r"https?://[^\s/]+", endpoint):
            raise ConfigurationError(
                f"agencies file {source}: {agency_id!r} needs an endpoint http(s)://host[:port]"
            )
        secrets = spec.get("secrets")
        if (
            not isinstance(secrets, list)
            or not secrets
            or not all(isinstance(s, str) and len(s) >= 16 for s in secrets)
        ):
            raise ConfigurationError(
                f"agencies file {source}: {agency_id!r} needs a list of secrets of 16 or"
                " more characters"
            )
        kind = spec.get("type", "psap")
        name = spec.get("name", "")
        if not isinstance(kind, str) or not isinstance(name, str):
            raise ConfigurationError(
                f"agencies file {source}: {agency_id!r} type and name must be text"
            )
        agencies[agency_id] = Agency(
            agency_id,
            endpoint.rstrip("/"),
            tuple(secrets),
            kind,
            name or agency_id,
            _rule(spec.get("hand_over_when"), f"agencies file {source}: {agency_id!r}"),
        )
    return agencies


def _rule(raw: object, where: str) -> HandOverRule | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: hand_over_when must be an object")
    types, agency, after = raw.get("types"), raw.get("no_unit_of"), raw.get("after_s", 0)
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        raise ConfigurationError(f"{where}: hand_over_when.types must list incident types")
    if not isinstance(agency, str) or not agency:
        raise ConfigurationError(
            f"{where}: hand_over_when.no_unit_of must name an agency of the response plans"
        )
    if isinstance(after, bool) or not isinstance(after, int | float) or after < 0:
        raise ConfigurationError(f"{where}: hand_over_when.after_s must be seconds, 0 or more")
    return HandOverRule(frozenset(types), agency, float(after))


def load_agencies(path: Path | None) -> dict[str, Agency]:
    """The configured agencies (none without a file)."""
    if path is None:
        return {}
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigurationError(f"agencies file {path}: {err}") from err
    return parse_agencies(raw, str(path))
