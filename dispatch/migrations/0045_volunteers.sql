-- SHOUT volunteers (issue 18): citizens registered with the police who are alerted to a
-- nearby woman or child in distress. Personal data lives only in `volunteers`; deleting
-- a volunteer deletes that row, and the alerts it leaves behind keep no link to it.
CREATE TABLE volunteers (
    id             text PRIMARY KEY,
    name           text NOT NULL,
    phone          text NOT NULL,
    home_area      text NOT NULL,
    languages      text[] NOT NULL DEFAULT '{}',
    verified       boolean NOT NULL DEFAULT false,
    verified_by    text,
    verified_at    timestamptz,
    available      boolean NOT NULL DEFAULT false,
    opted_out      boolean NOT NULL DEFAULT false,
    lat            double precision,
    lon            double precision,
    position_at    timestamptz,
    token_hash     text NOT NULL UNIQUE,
    registered_by  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((lat IS NULL) = (lon IS NULL))
);
CREATE INDEX volunteers_ready ON volunteers (lat, lon) WHERE available AND verified AND NOT opted_out;

CREATE TABLE volunteer_alerts (
    id            bigserial PRIMARY KEY,
    incident_id   bigint NOT NULL REFERENCES incidents (id),
    -- NULL once the volunteer's data was deleted: the alert stays, anonymous.
    volunteer_id  text REFERENCES volunteers (id) ON DELETE SET NULL,
    state         text NOT NULL
                  CHECK (state IN ('alerted', 'accepted', 'declined', 'expired', 'stood_down',
                                   'done')),
    distance_m    double precision NOT NULL,
    alerted_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    answered_at   timestamptz,
    ended_at      timestamptz,
    end_reason    text
);
-- The conditional claim: a volunteer is on at most one incident at a time, whichever
-- instance alerts them (an insert that would break it does nothing).
CREATE UNIQUE INDEX volunteer_alerts_one_active ON volunteer_alerts (volunteer_id)
    WHERE state IN ('alerted', 'accepted');
-- Alerted once per incident: one who declined or let it expire is not asked again.
CREATE UNIQUE INDEX volunteer_alerts_once ON volunteer_alerts (incident_id, volunteer_id);
CREATE INDEX volunteer_alerts_pending ON volunteer_alerts (expires_at) WHERE state = 'alerted';

-- Whether the caller agreed to volunteers coming (asked by the call-taker); no row: not
-- asked. Refused: no volunteer is alerted, and those alerted are stood down.
CREATE TABLE volunteer_consent (
    incident_id  bigint PRIMARY KEY REFERENCES incidents (id),
    consent      text NOT NULL CHECK (consent IN ('given', 'refused')),
    set_by       text NOT NULL,
    set_at       timestamptz NOT NULL DEFAULT now()
);
