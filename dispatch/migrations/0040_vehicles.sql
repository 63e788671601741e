-- Vehicle panic buttons (AIS-140): the vehicles register, filled by the vehicle gateway
-- from its alerts (IMEI and registration) and by operators (operator, type). Either
-- identity alone is enough; each names at most one vehicle.
CREATE TABLE vehicles (
    id            bigserial PRIMARY KEY,
    registration  text UNIQUE,
    imei          text UNIQUE,
    operator      text,
    vehicle_type  text,
    updated_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (registration IS NOT NULL OR imei IS NOT NULL)
);

-- The vehicle gateway's channel. The constraint is replaced whole: a branch adding
-- another channel must list 'vehicle' too.
ALTER TABLE gateways DROP CONSTRAINT IF EXISTS gateways_channel_check;
ALTER TABLE gateways ADD CONSTRAINT gateways_channel_check
    CHECK (channel IN ('telecom', 'sms', 'panic', 'vehicle'));
