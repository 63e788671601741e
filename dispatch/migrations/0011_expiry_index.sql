-- The expiry sweep runs every second on every instance: due offers by index, not by
-- scanning every assignment ever made.
CREATE INDEX assignments_offered_expiry ON assignments (expires_at) WHERE status = 'offered';
