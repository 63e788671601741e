-- Incidents that travel (docs/exchange.md): hand-offs to other agencies' CADs with the
-- outbox that delivers them (and status updates back) until acknowledged, the inbound
-- deliveries already taken (a retry is answered, never applied twice), and CAP alerts.

-- One hand-off of an incident to one agency: where it stands, as the console shows it.
CREATE TABLE handoffs (
    id             bigserial PRIMARY KEY,
    incident_id    bigint NOT NULL REFERENCES incidents (id),
    agency_id      text NOT NULL,
    state          text NOT NULL CHECK (state IN ('pending', 'acknowledged', 'refused',
                                                  'escalated')),
    -- What the other CAD last said it did with it (accepted, unit_assigned, ...).
    remote_status  text,
    remote_detail  jsonb NOT NULL DEFAULT '{}',
    actor          text NOT NULL,
    reason         text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX handoffs_incident ON handoffs (incident_id);
-- An incident is handed to an agency once at a time; refused or escalated, it may be
-- handed again.
CREATE UNIQUE INDEX handoffs_one_live ON handoffs (incident_id, agency_id)
    WHERE state IN ('pending', 'acknowledged');

-- Every signed POST to another CAD, kept until it is acknowledged (or given up on), so a
-- restart never loses one. The body is sent byte for byte on every try, under the same
-- Idempotency-Key: the receiver takes it once.
CREATE TABLE exchange_outbox (
    id               bigserial PRIMARY KEY,
    agency_id        text NOT NULL,
    path             text NOT NULL,
    body             bytea NOT NULL,
    idempotency_key  text NOT NULL UNIQUE,
    handoff_id       bigint REFERENCES handoffs (id),
    incident_id      bigint REFERENCES incidents (id),
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'refused', 'escalated')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX exchange_outbox_due ON exchange_outbox (next_attempt_at) WHERE state = 'pending';
-- Deliveries about one incident to one agency go in order (the earliest pending first).
CREATE INDEX exchange_outbox_order ON exchange_outbox (agency_id, incident_id, id)
    WHERE state = 'pending';

-- Signed deliveries from other agencies already applied (status updates), by their key.
CREATE TABLE exchange_received (
    agency_id    text NOT NULL,
    key          text NOT NULL,
    body_sha256  text NOT NULL,
    response     jsonb,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agency_id, key)
);

-- An incident that came from another CAD: whom to tell what we do with it.
CREATE TABLE exchange_inbound (
    agency_id    text NOT NULL,
    tracking_id  text NOT NULL,
    -- Several may join one incident here (the same emergency from two centres).
    incident_id  bigint NOT NULL REFERENCES incidents (id),
    -- The event position up to which our changes were reported back.
    reported_to  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (agency_id, tracking_id)
);
CREATE INDEX exchange_inbound_incident ON exchange_inbound (incident_id);

-- CAP 1.2 alerts as issued (the XML is kept as sent: an alert is never edited, an
-- Update or Cancel is a new alert that references it).
CREATE TABLE alerts (
    id            bigserial PRIMARY KEY,
    identifier    text NOT NULL UNIQUE,
    msg_type      text NOT NULL CHECK (msg_type IN ('Alert', 'Update', 'Cancel')),
    incident_id   bigint REFERENCES incidents (id),
    references_id bigint REFERENCES alerts (id),
    -- The alert a later Update or Cancel replaced: no longer current.
    superseded    boolean NOT NULL DEFAULT false,
    headline      text NOT NULL,
    sent_at       timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    xml           text NOT NULL,
    actor         text NOT NULL
);
CREATE INDEX alerts_current ON alerts (expires_at) WHERE NOT superseded;
