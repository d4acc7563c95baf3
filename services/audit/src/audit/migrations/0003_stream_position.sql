-- How far audit has read RUJUK_EVENTS, committed in the same transaction as the entries: a
-- message JetStream delivered but audit never received (lost while NATS restarted) comes back
-- only after ack_wait, behind newer ones; audit sees the hole in the stream sequence and reads
-- the missing message from the stream itself, so the ledger keeps stream order.
CREATE TABLE stream_position (
    stream    text PRIMARY KEY,
    last_seq  bigint NOT NULL CHECK (last_seq >= 0)
);
