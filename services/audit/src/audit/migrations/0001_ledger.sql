-- The audit ledger: every event on the bus, once, in order, chained by hash (see chain.py).
-- Append-only at the database level: UPDATE, DELETE and TRUNCATE are refused by triggers.
CREATE TABLE ledger (
    seq          bigint PRIMARY KEY CHECK (seq >= 1),
    event_id     text NOT NULL UNIQUE,
    case_id      text NOT NULL,
    event_type   text NOT NULL,
    actor        text NOT NULL,
    event_time   timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL,
    -- json, not jsonb: json keeps the RFC 8785 text byte for byte, and that text is hashed.
    event        json NOT NULL,
    prev_hash    bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash         bytea NOT NULL CHECK (octet_length(hash) = 32)
);

COMMENT ON TABLE ledger IS
    'Append-only, hash-chained record of every rujuk event: '
    'hash = sha256(prev_hash || RFC 8785 JSON of the other columns)';

CREATE INDEX ledger_case_id ON ledger (case_id, seq);

CREATE FUNCTION ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit ledger is append-only: % refused', TG_OP
        USING HINT = 'The ledger is evidence: record a new event instead of changing an old one.';
END;
$$;

CREATE TRIGGER ledger_refuse_update_delete
    BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE TRIGGER ledger_refuse_truncate
    BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
