-- One row per referral per channel: each (agency, channel) is a lane delivered in order,
-- with its own attempts and backoff, so one channel's outage never holds back another.
CREATE TABLE sends (
    id               bigserial PRIMARY KEY,
    referral_id      text NOT NULL REFERENCES deliveries (referral_id),
    agency_id        text NOT NULL,
    channel          text NOT NULL,
    state            text NOT NULL DEFAULT 'pending',  -- pending | done | failed
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),  -- also the lease while in flight
    last_error       text,
    finished_at      timestamptz,
    UNIQUE (referral_id, channel)
);
CREATE INDEX sends_lanes ON sends (agency_id, channel, id) WHERE state = 'pending';

-- Deliveries queued before lanes existed go out on the NATS feed.
INSERT INTO sends (referral_id, agency_id, channel)
SELECT referral_id, agency_id, 'nats' FROM deliveries
WHERE state = 'pending' AND NOT ('nats' = ANY (channels_done));
