-- Published SOP versions, the referral's own SOP and escalation position, durable deadlines,
-- and closing a case.

-- Every SOP version published through the API; the newest per district is in force.
CREATE TABLE sops (
    district_code  text NOT NULL,
    version        integer NOT NULL CHECK (version >= 1),
    sop_id         text NOT NULL,
    yaml           text NOT NULL,
    sha256         text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    published_by   text NOT NULL,
    published_at   timestamptz NOT NULL,
    PRIMARY KEY (district_code, version)
);

-- A referral keeps the SOP version it started under; its stored escalation_chain is what later
-- escalations follow, whatever SOP is in force by then.
ALTER TABLE referrals
    ADD COLUMN sop_id text,
    ADD COLUMN sop_version integer,
    -- How long the agency has to acknowledge; an escalated referral gets the same.
    ADD COLUMN acknowledge_within interval,
    -- The referral this one took over from (escalation), and the first of that line.
    ADD COLUMN escalated_from text REFERENCES referrals (referral_id),
    ADD COLUMN root_referral_id text;

UPDATE referrals r SET
    sop_id = c.sop_id,
    sop_version = c.sop_version,
    acknowledge_within = r.acknowledgement_deadline - c.routed_at,
    root_referral_id = r.referral_id
FROM cases c WHERE c.case_id = r.case_id;

ALTER TABLE referrals
    ALTER COLUMN sop_id SET NOT NULL,
    ALTER COLUMN sop_version SET NOT NULL,
    ALTER COLUMN acknowledge_within SET NOT NULL,
    ALTER COLUMN root_referral_id SET NOT NULL,
    -- An escalated referral goes to an agency that may already hold the same service.
    DROP CONSTRAINT referrals_case_id_agency_id_service_key;

-- Acknowledgement deadlines, claimed by routing's deadline worker with FOR UPDATE SKIP LOCKED.
-- A row is kept after it fired (fired_at, outcome): the coordinator's record of missed deadlines.
CREATE TABLE deadlines (
    referral_id  text PRIMARY KEY REFERENCES referrals (referral_id),
    due_at       timestamptz NOT NULL,
    fired_at     timestamptz,
    outcome      text CHECK (outcome IN ('escalated', 'met', 'chain_exhausted'))
);

CREATE INDEX deadlines_pending ON deadlines (due_at) WHERE fired_at IS NULL;

ALTER TABLE cases
    ADD COLUMN closed_at timestamptz,
    ADD COLUMN closed_by text,
    ADD COLUMN close_reason text;
