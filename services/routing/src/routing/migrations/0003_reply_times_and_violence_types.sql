-- What the coordinator's console and monitoring & evaluation read: the violence types of each
-- case, and when each referral was answered, accepted, declined, completed or handed on.

ALTER TABLE cases ADD COLUMN violence_types text[] NOT NULL DEFAULT '{}';

ALTER TABLE referrals
    -- The agency's first answer: acknowledged, or accepted/declined without acknowledging.
    -- The acknowledgement deadline is met when this is at or before it.
    ADD COLUMN acknowledged_at timestamptz,
    ADD COLUMN accepted_at timestamptz,
    ADD COLUMN declined_at timestamptz,
    ADD COLUMN decline_reason text,
    ADD COLUMN completed_at timestamptz,
    -- When routing handed the referral on to the next agency, and (on the referral that
    -- took over) why: deadline_missed, declined, delivery_failed.
    ADD COLUMN escalated_at timestamptz,
    ADD COLUMN escalation_reason text;

CREATE INDEX referrals_by_created ON referrals (created_at);
CREATE INDEX referrals_by_agency ON referrals (agency_id, created_at);
CREATE INDEX cases_by_reported ON cases (reported_at);
