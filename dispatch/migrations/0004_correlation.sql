-- Correlation of reports of one emergency: who sent each report (normalised keys such
-- as tel:<number> or device:<id>), and the time of the incident's best location fix.
CREATE TABLE report_keys (
    key          text NOT NULL,
    report_id    bigint NOT NULL REFERENCES reports (id),
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key, report_id)
);
CREATE INDEX report_keys_recent ON report_keys (key, received_at DESC);

ALTER TABLE incidents ADD COLUMN location_time timestamptz;
CREATE INDEX incidents_open_type ON incidents (type, created_at)
    WHERE status NOT IN ('closed', 'merged');
