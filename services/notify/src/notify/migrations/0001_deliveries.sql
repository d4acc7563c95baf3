-- One row per referral to deliver; the worker claims due rows with FOR UPDATE SKIP LOCKED.
CREATE TABLE deliveries (
    referral_id      text PRIMARY KEY,
    case_id          text NOT NULL,
    agency_id        text NOT NULL,
    event_id         text NOT NULL,
    event_type       text NOT NULL,
    body             bytea NOT NULL,
    traceparent      text,
    state            text NOT NULL DEFAULT 'pending',  -- pending | delivered | failed
    channels_done    text[] NOT NULL DEFAULT '{}',
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';

-- Every attempt on every channel, for the partner's and the auditor's questions.
CREATE TABLE delivery_attempts (
    id            bigserial PRIMARY KEY,
    referral_id   text NOT NULL REFERENCES deliveries (referral_id),
    channel       text NOT NULL,
    attempt       int NOT NULL,
    ok            boolean NOT NULL,
    detail        text,
    at            timestamptz NOT NULL DEFAULT now()
);
