-- Cases as intake knows them: triage facts in the clear, identifying data only as ciphertext.
CREATE TABLE cases (
    case_id          text PRIMARY KEY,
    district_code    text NOT NULL,
    channel          text NOT NULL,
    triage           jsonb NOT NULL,
    reported_at      timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'reported',
    idempotency_key  text UNIQUE,
    request_hash     bytea,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The vault: one sealed record per case. Deleting the wrapped key crypto-shreds the case.
CREATE TABLE vault (
    case_id      text PRIMARY KEY REFERENCES cases (case_id),
    key_id       text NOT NULL,
    wrapped_key  bytea,
    ciphertext   bytea NOT NULL,
    erased_at    timestamptz
);

-- What operators see of the routing: referrals by agency, as events report them.
CREATE TABLE case_referrals (
    referral_id  text PRIMARY KEY,
    case_id      text NOT NULL REFERENCES cases (case_id),
    agency_id    text NOT NULL,
    service      text NOT NULL,
    priority     text NOT NULL,
    state        text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX case_referrals_case ON case_referrals (case_id);
