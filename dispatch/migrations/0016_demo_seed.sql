-- The demo's tokens are derived from this seed (HMAC per operator and unit), so that
-- restarting `erss serve --demo`, or a second instance with --demo on the same database,
-- hands out the same tokens instead of logging every open console and MDT out. Demo only:
-- a real deployment issues its operators' and units' tokens itself.
CREATE TABLE demo_seed (
    id    boolean PRIMARY KEY DEFAULT true CHECK (id),
    seed  text NOT NULL
);
