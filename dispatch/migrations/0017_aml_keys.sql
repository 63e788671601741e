-- Keys an SMS gateway's AML-over-HTTPS endpoint shares with the handsets' AML service:
-- each such body carries `hmac` (HMAC-SHA1 with that key), which is checked when a key is
-- configured. A mismatch is a warning on the report, never a refusal.
ALTER TABLE gateways ADD COLUMN aml_keys text[] NOT NULL DEFAULT '{}';
