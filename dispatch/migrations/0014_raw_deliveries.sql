-- What a gateway sent, byte for byte: the JSON kept in `payload` is what could be used
-- of it (cleaned of what PostgreSQL's jsonb and text cannot hold); `raw` is the evidence.
ALTER TABLE reports ADD COLUMN raw bytea;
ALTER TABLE reports ADD COLUMN raw_content_type text;
-- Set when intake failed on the report for a reason that was not an outage (a bug): the
-- report was kept as an escalated incident with this error instead of being refused.
ALTER TABLE reports ADD COLUMN intake_error text;

-- A delivery is also known by its channel's own id (trigger_id, call_id, message_id, the
-- AML body's fingerprint): a captured request replayed under a new Idempotency-Key
-- gets the first answer instead of a second report.
ALTER TABLE idempotency_keys ADD COLUMN delivery_id text;
CREATE UNIQUE INDEX idempotency_keys_delivery ON idempotency_keys (gateway_id, delivery_id);
