-- Console sign-ins, so that signing out or revoking a token ends them on the server: a cookie
-- replayed afterwards opens nothing. The session id itself is never stored, only its sha256
-- (a copy of this table opens no session), and neither is the bearer token: it stays sealed
-- in the person's cookie beside the session id.
CREATE TABLE sessions (
    id_sha256     bytea PRIMARY KEY CHECK (length(id_sha256) = 32),
    token_id      text NOT NULL,
    role          text NOT NULL,
    agency_id     text,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    ended_reason  text CHECK (ended_reason IN ('signed_out', 'token_revoked')),
    CHECK ((ended_at IS NULL) = (ended_reason IS NULL))
);
-- A revoked token ends every session signed in with it.
CREATE INDEX sessions_token ON sessions (token_id) WHERE ended_at IS NULL;
-- No index on the times: rows that ended or expired a day ago are deleted at each sign-in,
-- so the table holds about a day and a half of sign-ins.
