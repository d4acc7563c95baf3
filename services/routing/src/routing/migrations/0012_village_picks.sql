-- Referrals whose agency the case's desa decides (SOP `pick: by_village`). The desa stays in
-- intake: routing records the question it asked (candidates from the SOP version that
-- decided), intake answers with an agency or none, and the pick is resolved once, by the
-- answer or, past due_at, by the timer (the agency for no match). Nothing here names a desa
-- of the case; candidates are directory data.
CREATE TABLE village_picks (
    question_id         text PRIMARY KEY,
    case_id             text NOT NULL REFERENCES cases (case_id),
    referral_id         text NOT NULL UNIQUE,   -- the referral it becomes
    service             text NOT NULL,
    priority            text NOT NULL CHECK (priority IN ('emergency', 'urgent', 'routine')),
    acknowledge_within  interval NOT NULL,
    escalate_to         text[] NOT NULL,        -- the SOP's steps; the chain is made on resolving
    coordinator         text NOT NULL,
    rule_ids            text[] NOT NULL,
    consent_override    text,
    sop_id              text NOT NULL,
    sop_version         integer NOT NULL,
    candidates          jsonb NOT NULL,         -- [{"agency_id": …, "villages": ["Kec/Desa", …]}]
    none_agency_id      text NOT NULL,          -- when no candidate lists the desa, or no answer
    none_reason         text NOT NULL CHECK (none_reason IN ('kecamatan', 'fallback')),
    asked_at            timestamptz NOT NULL,
    due_at              timestamptz NOT NULL,
    resolved_at         timestamptz,
    resolved_agency_id  text,
    resolved_how        text CHECK (resolved_how IN ('answer', 'timeout')),
    -- already_referred: the agency held that service in the case already; no second referral.
    -- case_closed: the case was closed before the pick was resolved; no referral.
    outcome             text CHECK (outcome IN ('referred', 'already_referred', 'case_closed')),
    CHECK ((resolved_at IS NULL) = (resolved_how IS NULL))
);

-- The timer claims the overdue open ones.
CREATE INDEX village_picks_due ON village_picks (due_at) WHERE resolved_at IS NULL;

-- How a referral's agency was picked when the desa decided: shown with the referral.
ALTER TABLE referrals ADD COLUMN picked_by text CHECK (picked_by IN (
    'village', 'kecamatan_no_village', 'fallback_no_village', 'kecamatan_timeout',
    'fallback_timeout'
));
