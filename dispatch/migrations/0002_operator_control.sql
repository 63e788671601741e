-- Operator control: closing with a disposition and merging duplicates.
ALTER TABLE incidents
    ADD COLUMN disposition  text,
    ADD COLUMN closed_at    timestamptz,
    ADD COLUMN merged_into  bigint REFERENCES incidents (id);
