-- The codes an on-call contact acknowledges an alert with: one per (alert, contact), the same
-- in every round of pages, unique across alerts. A reply names only its code: the text it
-- came in is never kept. `channels`: what the contact was paged on (every round's, merged),
-- so a reply can say which page it answers. `replies`, `last_reply_at`: the replies counted
-- (each one an event), and when the last was, so a repeat within a minute counts once.
CREATE TABLE oncall_ack_codes (
    code           text PRIMARY KEY CHECK (code ~ '^[0-9A-HJKMNP-TV-Z]{8}$'),
    alert_id       text NOT NULL,
    case_id        text NOT NULL,
    contact_id     text NOT NULL,
    channels       text[] NOT NULL,
    issued_at      timestamptz NOT NULL DEFAULT now(),
    replies        int NOT NULL DEFAULT 0,
    last_reply_at  timestamptz,
    UNIQUE (alert_id, contact_id)
);
