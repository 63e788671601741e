-- Several secrets may be valid for one gateway at once, so a secret can be rotated
-- without a window in which the gateway's signed posts are refused.
ALTER TABLE gateways ADD COLUMN secrets text[];
UPDATE gateways SET secrets = ARRAY[secret];
ALTER TABLE gateways ALTER COLUMN secrets SET NOT NULL;
ALTER TABLE gateways ADD CHECK (cardinality(secrets) > 0);
ALTER TABLE gateways DROP COLUMN secret;
