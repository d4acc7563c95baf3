-- Tokens are announced (token.issued / token.revoked) in the transaction that makes them.
-- Tokens made before that are announced once at start (auth.announce_unannounced).
ALTER TABLE access_tokens ADD COLUMN announced boolean NOT NULL DEFAULT false;
ALTER TABLE access_tokens ALTER COLUMN announced SET DEFAULT true;
