-- A sampled track of unit positions: one row per unit per flush, not one per ping.
CREATE TABLE unit_track (
    unit_id     text NOT NULL REFERENCES units (id),
    at          timestamptz NOT NULL,
    lat         double precision NOT NULL,
    lon         double precision NOT NULL,
    accuracy_m  double precision,
    PRIMARY KEY (unit_id, at)
);
