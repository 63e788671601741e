-- Initial schema: zones, units, incidents with their reports, assignments, the
-- append-only event log (which doubles as the outbox) and gateway idempotency keys.

CREATE TABLE zones (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    geometry    jsonb NOT NULL,          -- GeoJSON geometry, lon/lat (RFC 7946)
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gateways (
    id       text PRIMARY KEY,
    channel  text NOT NULL CHECK (channel IN ('telecom', 'sms', 'panic')),
    -- HMAC needs the shared secret itself, not a hash of it.
    secret   text NOT NULL
);

CREATE TABLE operators (
    name        text PRIMARY KEY,
    token_hash  text NOT NULL UNIQUE     -- sha256 hex of the bearer token
);

CREATE TABLE units (
    id            text PRIMARY KEY,
    callsign      text NOT NULL,
    agency        text NOT NULL CHECK (agency IN ('police', 'ambulance', 'fire')),
    status        text NOT NULL DEFAULT 'available',
    home_zone_id  text REFERENCES zones (id),
    zone_id       text,
    lat           double precision,
    lon           double precision,
    position_at   timestamptz,
    capabilities  text[] NOT NULL DEFAULT '{}',
    token_hash    text UNIQUE,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((lat IS NULL) = (lon IS NULL))
);
CREATE INDEX units_available ON units (agency) WHERE status = 'available';

CREATE TABLE incidents (
    id                 bigserial PRIMARY KEY,
    status             text NOT NULL,
    priority           smallint NOT NULL CHECK (priority BETWEEN 1 AND 4),
    type               text NOT NULL,
    lat                double precision,
    lon                double precision,
    radius_m           double precision,
    location_method    text,
    zone_id            text,
    escalated          boolean NOT NULL DEFAULT false,
    escalation_reason  text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((lat IS NULL) = (lon IS NULL))
);
CREATE INDEX incidents_open ON incidents (priority, created_at) WHERE status NOT IN ('closed', 'merged');

CREATE TABLE reports (
    id               bigserial PRIMARY KEY,
    incident_id      bigint NOT NULL REFERENCES incidents (id),
    channel          text NOT NULL,
    gateway_id       text NOT NULL,
    external_id      text NOT NULL,      -- trigger_id, call_id, message_id
    sender           text NOT NULL,      -- device id, caller number
    received_at      timestamptz NOT NULL DEFAULT now(),
    lat              double precision,
    lon              double precision,
    radius_m         double precision,
    location_method  text,
    location_time    timestamptz,
    payload          jsonb NOT NULL,
    warnings         jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX reports_incident ON reports (incident_id);

CREATE TABLE assignments (
    id              bigserial PRIMARY KEY,
    incident_id     bigint NOT NULL REFERENCES incidents (id),
    unit_id         text NOT NULL REFERENCES units (id),
    status          text NOT NULL
                    CHECK (status IN ('offered', 'accepted', 'declined', 'expired', 'cancelled',
                                      'completed')),
    offered_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    responded_at    timestamptz,
    travel_time_s   double precision
);
CREATE INDEX assignments_incident ON assignments (incident_id);
-- The conditional UPDATE on units is the claim; this index is the backstop that makes a
-- second active assignment for one unit impossible whatever the code does.
CREATE UNIQUE INDEX assignments_one_active_per_unit
    ON assignments (unit_id) WHERE status IN ('offered', 'accepted');

-- The event log is the audit trail and the outbox. `position` is assigned by the outbox
-- relay, one relay at a time, so positions are in commit-visible order even when ids
-- (taken at insert) are not; clients resume by position.
CREATE TABLE events (
    id           bigserial PRIMARY KEY,
    position     bigint UNIQUE,
    published    boolean NOT NULL DEFAULT false,
    type         text NOT NULL,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    incident_id  bigint,
    unit_id      text,
    actor        text NOT NULL,
    data         jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_unpositioned ON events (id) WHERE position IS NULL;
CREATE INDEX events_unpublished ON events (position) WHERE position IS NOT NULL AND NOT published;
CREATE INDEX events_incident ON events (incident_id, id);
CREATE INDEX events_unit_position ON events (unit_id, position);

-- Append-only: the relay may set position once and mark the row published; nothing
-- else may change or remove an event.
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'events are append-only: delete refused for event %', OLD.id;
    END IF;
    IF (OLD.position IS NOT NULL AND NEW.position IS DISTINCT FROM OLD.position)
       OR (OLD.published AND NOT NEW.published)
       OR NEW.type IS DISTINCT FROM OLD.type OR NEW.at IS DISTINCT FROM OLD.at
       OR NEW.incident_id IS DISTINCT FROM OLD.incident_id
       OR NEW.unit_id IS DISTINCT FROM OLD.unit_id
       OR NEW.actor IS DISTINCT FROM OLD.actor OR NEW.data IS DISTINCT FROM OLD.data THEN
        RAISE EXCEPTION 'events are append-only: update refused for event %', OLD.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();

CREATE TABLE idempotency_keys (
    gateway_id   text NOT NULL,
    key          text NOT NULL,
    body_sha256  text NOT NULL,
    status_code  integer,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, key)
);
