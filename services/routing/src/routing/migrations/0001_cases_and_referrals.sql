-- Routing's own state: each routed case with the SOP that decided it, and each referral with
-- its lifecycle state. Unqualified names: the pool's search_path is the routing schema.
CREATE TABLE cases (
    case_id        text PRIMARY KEY,
    district_code  text NOT NULL,
    sop_id         text NOT NULL,
    sop_version    integer NOT NULL,
    rules_fired    text[] NOT NULL,
    -- Referrals the rules asked for that consent did not allow: [{service, agency_id, rule_ids, reason}]
    withheld       jsonb NOT NULL DEFAULT '[]'::jsonb,
    reported_at    timestamptz NOT NULL,
    routed_at      timestamptz NOT NULL
);

CREATE TABLE referrals (
    referral_id               text PRIMARY KEY,
    case_id                   text NOT NULL REFERENCES cases (case_id),
    agency_id                 text NOT NULL,
    service                   text NOT NULL,
    priority                  text NOT NULL
        CHECK (priority IN ('emergency', 'urgent', 'routine')),
    state                     text NOT NULL DEFAULT 'requested'
        CHECK (state IN ('requested', 'delivered', 'acknowledged', 'accepted', 'declined',
                         'completed', 'escalated', 'cancelled', 'delivery_failed')),
    acknowledgement_deadline  timestamptz NOT NULL,
    escalation_chain          text[] NOT NULL,
    escalation_step           integer NOT NULL DEFAULT 0,
    rule_ids                  text[] NOT NULL,
    -- The legal basis when the referral was made without the survivor's consent.
    consent_override          text,
    delivery_attempts         integer NOT NULL DEFAULT 0,
    last_delivery_failure     text,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    UNIQUE (case_id, agency_id, service)
);

CREATE INDEX referrals_by_case ON referrals (case_id);
-- The deadline watcher scans open referrals by deadline.
CREATE INDEX referrals_open_by_deadline ON referrals (acknowledgement_deadline)
    WHERE state IN ('requested', 'delivered', 'delivery_failed');
