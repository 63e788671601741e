-- Zones that an incident's circle of uncertainty also overlaps (shown to operators:
-- the incident keeps the zone of its best point).
ALTER TABLE incidents ADD COLUMN other_zones text[] NOT NULL DEFAULT '{}';
