"""Typed settings, read once from the environment (prefix ``ERSS_``) and passed down."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The plug-ins a deployment chooses between, by setting.
_CHOICES = {
    "dispatch_policy": ("closest_idle", "coverage"),
    "standby_policy": ("patrol", "coverage"),
}


class Settings(BaseSettings):
    """Everything an operator can set. Built once at start-up; never a module global."""

    model_config = SettingsConfigDict(env_prefix="ERSS_", extra="ignore")

    log_format: Literal["text", "json"] = Field(
        default="text",
        description="json: one JSON object per line with incident_id / unit_id fields, for "
        "log shippers; text: for people at a terminal.",
    )
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL. Unset: a private server is started under data_dir.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL. Unset: a private server is started under data_dir.",
    )
    data_dir: Path = Field(
        default=Path(".erss"),
        description="Folder for the embedded servers' data and demo-credentials.json.",
    )
    db_schema: str = Field(
        default="erss",
        description="PostgreSQL schema holding every table; lets several deployments "
        "(or tests) share one database.",
    )
    redis_prefix: str = Field(
        default="erss:", description="Prefix of every Redis key this deployment uses."
    )
    startup_wait_s: float = Field(
        default=60.0,
        ge=0,
        description="How long a starting instance waits for PostgreSQL and Redis to answer "
        "before it gives up and exits.",
    )
    offer_timeout_s: float = Field(
        default=30.0, gt=0, description="Seconds an MDT has to accept an offer."
    )
    max_offers: int = Field(
        default=3,
        gt=0,
        description="Offers declined or expired before an incident is escalated to operators.",
    )
    preempt_priority: int | None = Field(
        default=None,
        ge=2,
        le=4,
        description="When set, a priority-1 incident with no free unit may take a unit "
        "off a job of this priority or lower (e.g. 4); unset: never pre-empt.",
    )
    queue_poll_s: float = Field(
        default=1.0, gt=0, description="How often each instance serves the waiting queue."
    )
    position_flush_s: float = Field(
        default=5.0,
        gt=0,
        description="How often MDT positions are written to PostgreSQL (pings in between "
        "only update Redis).",
    )
    position_publish_s: float = Field(
        default=1.0,
        gt=0,
        description="How often the positions of units that moved are pushed to consoles "
        "(one batched message; consoles no longer poll the fleet for them).",
    )
    geofence_hysteresis_m: float = Field(
        default=200.0,
        ge=0,
        description="A unit on patrol counts as having left its home zone only this far "
        "outside it (no alert flood along a border).",
    )
    expiry_poll_s: float = Field(
        default=1.0, gt=0, description="How often each instance looks for expired offers."
    )
    road_factor: float = Field(
        default=1.4, gt=0, description="Road distance over straight-line distance."
    )
    urban_speed_kmh: float = Field(
        default=30.0, gt=0, description="Average ERV speed used to estimate travel time."
    )
    zone_slack_s: float = Field(
        default=120.0,
        ge=0,
        description="Seconds by which a unit of the incident's own zone may be slower than "
        "a neighbour's and still be chosen first.",
    )
    response_target_min: float = Field(
        default=10.0,
        gt=0,
        description="Response target (report to unit on scene) in minutes, for the "
        "coverage policy's hold of low-priority calls: a call waits for a unit that can "
        "still arrive within it.",
    )
    zone_response_target_min: dict[str, float] = Field(
        default_factory=dict,
        description="Response targets per zone id, overriding response_target_min "
        '(JSON: {"chandaka": 15}). Unset: config/simulation.json\'s zone_target_min.',
    )
    zone_speeds_kmh: dict[str, float] = Field(
        default_factory=dict,
        description="Average speed per zone id, overriding urban_speed_kmh "
        '(JSON: {"capital": 25}).',
    )
    position_stale_s: float | None = Field(
        default=600.0,
        gt=0,
        description="A unit whose MDT has not reported for this long is not offered incidents. "
        "Unset (or erss serve --demo without it) to trust any last position.",
    )
    max_candidate_radius_m: float = Field(
        default=15_000.0,
        gt=0,
        description="Beyond the incident's zone and its neighbours, units within this "
        "straight-line distance are still candidates.",
    )
    gateway_clock_skew_s: int = Field(
        default=300,
        gt=0,
        description="Largest accepted gap between a gateway's timestamp and the server clock.",
    )
    gateway_max_body_bytes: int = Field(
        default=512 * 1024,
        gt=0,
        description="Largest gateway request body (PIDF-LO documents are the largest).",
    )
    gateway_rate_per_s: int = Field(
        default=500,
        gt=0,
        description="Requests per second one gateway may send, over all instances; beyond "
        "it: 429 with Retry-After.",
    )
    gateways_file: Path | None = Field(
        default=None,
        description='JSON file of gateways loaded at start-up: {"<id>": {"channel": '
        '"telecom|sms|panic|vehicle", "secrets": ["<old>", "<new>"]}}. Every listed '
        "secret is valid, so a secret is rotated by listing both for a while. An sms"
        ' gateway may add "aml_keys": ["<key>"] to check AML-over-HTTPS bodies\' own hmac.',
    )
    agency_id: str = Field(
        default="112.erss.invalid",
        min_length=3,
        max_length=100,
        pattern=r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$",
        description="This centre's domain-style id (e.g. 112.odisha.gov.in): the issuer of "
        "its EIDOs and the sender of its CAP alerts (docs/exchange.md).",
    )
    agency_name: str = Field(
        default="112 Emergency Response Support System",
        max_length=200,
        description="This centre's name as CAP alerts and the Atom feed show it.",
    )
    agencies_file: Path | None = Field(
        default=None,
        description='JSON file of other agencies\' CADs incidents are handed to: {"<id>": '
        '{"endpoint": "https://...", "secrets": ["<old>", "<new>"], "type": "ems"}} '
        "(docs/exchange.md). The first secret signs what we send; every listed secret is "
        "valid on what they send back, so a secret is rotated as a gateway's is.",
    )
    handoff_max_attempts: int = Field(
        default=10,
        ge=1,
        description="Tries of one hand-off (or status update) to another CAD before it is "
        "given up on and the incident escalated to operators.",
    )
    handoff_retry_base_s: float = Field(
        default=2.0, gt=0, description="Wait before the second try; it doubles with each try."
    )
    handoff_retry_cap_s: float = Field(
        default=300.0, gt=0, description="Longest wait between two tries of one hand-off."
    )
    handoff_timeout_s: float = Field(
        default=10.0, gt=0, description="How long one POST to another CAD may take."
    )
    same_sender_window_s: float = Field(
        default=900.0,
        gt=0,
        description="Reports from the same phone number within this time join one incident.",
    )
    nearby_radius_m: float = Field(
        default=150.0,
        ge=0,
        description="Reports of the same (non-personal) type this close join one incident.",
    )
    nearby_window_s: float = Field(
        default=600.0, ge=0, description="... if they come within this time of each other."
    )
    zone_tolerance_m: float = Field(
        default=50.0,
        ge=0,
        description="A location outside every zone but this close to one belongs to the "
        "nearest (jurisdiction polygons have sliver gaps and misdrawn borders).",
    )
    zone_refresh_s: float = Field(
        default=30.0, gt=0, description="How often each instance looks for reloaded zones."
    )
    intake_group_commit: bool = Field(
        default=False,
        description="Write reports that arrive together in one transaction, each in its"
        " own savepoint (dispatch/group_commit.py). Pays where a commit's flush to disk"
        " dominates; on a fast disk it costs latency under load (docs/benchmarks.md), so"
        " it is off unless set.",
    )
    relay_poll_s: float = Field(
        default=0.5, gt=0, description="Outbox relay poll interval when no NOTIFY arrives."
    )
    stream_maxlen: int = Field(
        default=100_000,
        gt=0,
        description="Approximate length the Redis event stream is "
        "trimmed to; older events are replayed from PostgreSQL.",
    )
    ws_per_message_deflate: bool = Field(
        default=False,
        description="Compress websocket messages. Off by default: events are small, and "
        "compression costs about 50 KiB of memory per connection (tens of thousands of MDTs).",
    )
    ws_queue_size: int = Field(
        default=1_000,
        ge=600,
        description="Events buffered per websocket client before it is disconnected as too "
        "slow. Must exceed the 500 events one stream read can hand over at once.",
    )
    ws_max_connections: int | None = Field(
        default=None,
        ge=1,
        description="Websockets (MDTs and consoles) one instance holds open; beyond it a "
        "new one is closed with 1013 (try again later). Unset: the process's file "
        "descriptor limit (raised to its hard limit at start) less 1,024 kept for "
        "gateways, PostgreSQL and Redis, or half of it when that is small.",
    )
    dispatch_policy: str = Field(
        default="closest_idle",
        description="How the unit to offer is chosen: closest_idle (nearest by travel "
        "time, own zone first) or coverage (the dynamic MEXCLP rule: among units in time, "
        "the one whose absence least reduces coverage, and low-priority calls no free unit "
        "can reach in time held up to hold_s for one that can; "
        "dispatch/simulation/policies.py, parameters in config/simulation.json). Compare "
        "them with bench/policies.py. coverage is built from the zones loaded at start-up.",
    )
    standby_policy: str = Field(
        default="patrol",
        description="Where a unit waits after a job: patrol (the crew goes back to its own "
        "patrol; the engine says nothing) or coverage (the engine names a post of the "
        "unit's home zone where it adds the most expected coverage, sent to its MDT as "
        "unit.post_assigned; dispatch/posts.py). bench/policies.py measures both. Like "
        "the coverage dispatch policy, built from the zones loaded at start-up: restart "
        "instances after `erss zones load`.",
    )
    nominatim_url: str | None = Field(
        default=None,
        description="Base URL of a self-hosted Nominatim server (e.g. http://nominatim:8080) "
        "that operators' geocoding asks first; the offline gazetteer "
        "(config/gazetteer.json) answers when it fails or finds nothing. Unset: the "
        "gazetteer alone.",
    )

    volunteers_file: Path | None = Field(
        default=None,
        description="JSON file of the SHOUT volunteer alerting rule (incident types, radius, "
        "volunteers per incident, alert lifetime, location rounding); unset: "
        "config/volunteers.json.",
    )

    @field_validator("dispatch_policy", "standby_policy")
    @classmethod
    def _known_choice(cls, value: str, info: ValidationInfo) -> str:
        choices = _CHOICES[str(info.field_name)]
        if value not in choices:
            raise ValueError(f"{info.field_name} must be {' or '.join(choices)}")
        return value

    @field_validator("db_schema")
    @classmethod
    def _schema_is_identifier(cls, value: str) -> str:
        # The schema name is interpolated into DDL, so only plain identifiers are allowed.
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
            raise ValueError("db_schema must be a lower-case SQL identifier")
        return value
