-- Transactional outbox: events written in the same transaction as the state they describe,
-- published by the relay with the event id as Nats-Msg-Id, deleted after JetStream's ack.
CREATE TABLE outbox (
    seq          bigserial PRIMARY KEY,
    event_id     text NOT NULL UNIQUE,
    subject      text NOT NULL,
    body         bytea NOT NULL,
    traceparent  text,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Idempotent consumer: every event id this service has acted on, committed with its effects.
CREATE TABLE processed_events (
    event_id      text PRIMARY KEY,
    event_type    text NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now()
);
