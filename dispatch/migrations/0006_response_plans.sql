-- Response plans: an incident may need a unit from each of several agencies (a road
-- accident with injuries: police and an ambulance). `unfilled` lists the agencies with
-- no unit offered or assigned yet; each assignment records the agency it fills.
ALTER TABLE incidents ADD COLUMN unfilled text[] NOT NULL DEFAULT '{}';
ALTER TABLE assignments ADD COLUMN agency text;
UPDATE assignments a SET agency = u.agency FROM units u WHERE u.id = a.unit_id;
ALTER TABLE assignments ALTER COLUMN agency SET NOT NULL;
CREATE INDEX incidents_unfilled ON incidents (priority, created_at)
    WHERE cardinality(unfilled) > 0 AND status NOT IN ('closed', 'merged');
