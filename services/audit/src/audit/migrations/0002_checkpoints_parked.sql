-- Signed checkpoints of the ledger's head, and the count of what the bus parked.
-- Both are append-only like the ledger: the refusal function of 0001 guards them too.
CREATE TABLE checkpoints (
    seq          bigint PRIMARY KEY CHECK (seq >= 1),
    hash         bytea NOT NULL CHECK (octet_length(hash) = 32),
    signed_at    timestamptz NOT NULL,
    key_id       text NOT NULL,
    public_key   bytea NOT NULL CHECK (octet_length(public_key) = 32),
    signature    bytea NOT NULL CHECK (octet_length(signature) = 64)
);

COMMENT ON TABLE checkpoints IS
    'Ed25519-signed statements "ledger entry seq has hash", published on rujuk.audit.checkpoint';

CREATE TRIGGER checkpoints_refuse_update_delete
    BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER checkpoints_refuse_truncate
    BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- One row per message on the dead-letter stream: who parked it, why, where it came from,
-- how big it was. Never the body: a parked message may be anything, PII included.
CREATE TABLE parked (
    dlq_seq           bigint PRIMARY KEY,  -- the message's sequence in stream RUJUK_DLQ
    service           text NOT NULL,
    reason            text NOT NULL,
    original_subject  text NOT NULL,
    size              integer NOT NULL CHECK (size >= 0),
    parked_at         timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX parked_service ON parked (service, parked_at);

CREATE TRIGGER parked_refuse_update_delete
    BEFORE UPDATE OR DELETE ON parked
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER parked_refuse_truncate
    BEFORE TRUNCATE ON parked
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Replays by time range (POST /v1/replays {from, to}).
CREATE INDEX ledger_event_time ON ledger (event_time);
