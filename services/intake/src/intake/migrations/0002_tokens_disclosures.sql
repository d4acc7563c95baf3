-- Bearer tokens: only the sha256 of each secret is kept (the secret is shown once, at creation).
CREATE TABLE access_tokens (
    token_id       text PRIMARY KEY,
    secret_sha256  bytea NOT NULL UNIQUE,
    role           text NOT NULL CHECK (role IN ('operator', 'partner', 'coordinator', 'auditor')),
    agency_id      text,
    label          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    CHECK ((role = 'partner') = (agency_id IS NOT NULL))
);

-- The access log: one row per disclosure of identifying details, written in the same
-- transaction as its `case.details_disclosed` event. Field names only, never values.
CREATE TABLE disclosures (
    event_id      text PRIMARY KEY,
    case_id       text NOT NULL REFERENCES cases (case_id),
    referral_id   text NOT NULL,
    agency_id     text NOT NULL,
    token_id      text NOT NULL,
    fields        text[] NOT NULL,
    purpose       text NOT NULL,
    disclosed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX disclosures_case ON disclosures (case_id);

ALTER TABLE cases ADD COLUMN erased_at timestamptz;
