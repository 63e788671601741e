-- Why an incident waits for a unit (the last incident.queued reason, e.g. the coverage
-- policy's hold), so that consoles see it in snapshots too; NULL once every slot of its
-- plan has a unit.
ALTER TABLE incidents ADD COLUMN waiting_reason text;
