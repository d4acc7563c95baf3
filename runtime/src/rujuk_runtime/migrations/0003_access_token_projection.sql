-- Every service's copy of the bearer tokens intake issued (token.issued / token.revoked):
-- only the sha256 of each secret, as the event carries it. Intake itself checks its own
-- access_tokens table and leaves this one empty.
CREATE TABLE access_token_projection (
    token_id       text PRIMARY KEY,
    -- NULL only while a revocation has arrived before its issue (redelivery order).
    secret_sha256  bytea UNIQUE,
    role           text NOT NULL DEFAULT 'unknown',
    agency_id      text,
    issued_at      timestamptz,
    revoked_at     timestamptz
);
