-- The rest of the rakor's province-wide figures from rolled-up months (GET /v1/monitoring for
-- every district took 310-350 ms for a year at five years of a province, most of it in three
-- statements: per-agency percentiles, cases per service function, declines).
--
-- * The deadlines' median from counts per deadline: a month's 9,000 referrals have a handful
--   of distinct deadlines (the SOP's minutes per priority), so the median is found walking a
--   few rows per agency instead of sorting every referral's minutes.
-- * Declines by agency and reason, as the rows count them.
-- * The cases of the month (by reported_at) by the set of services they were ever referred
--   for and their close reason: a case's service functions are a function of the set, and the
--   close reason decides whether it counts (not a complaint: a duplicate, filed in error).
--   These are the month's *cases*, not its referrals: a referral made in a later month (an
--   escalation to a new service) changes them, so a referral's write also throws away the
--   month its case was reported in, and a case's close reason is watched too.
CREATE TABLE stats_month_deadlines (
    zone       text NOT NULL,
    starts     timestamptz NOT NULL,
    agency_id  text NOT NULL,
    minutes    float8 NOT NULL,
    referrals  integer NOT NULL,
    FOREIGN KEY (zone, starts) REFERENCES stats_months ON DELETE CASCADE
);
CREATE INDEX stats_month_deadlines_by_month ON stats_month_deadlines (zone, starts);

ALTER TABLE stats_month_agencies DROP COLUMN deadline_minutes;

CREATE TABLE stats_month_declines (
    zone       text NOT NULL,
    starts     timestamptz NOT NULL,
    agency_id  text NOT NULL,
    reason     text NOT NULL,
    declined   integer NOT NULL,
    FOREIGN KEY (zone, starts) REFERENCES stats_months ON DELETE CASCADE
);
CREATE INDEX stats_month_declines_by_month ON stats_month_declines (zone, starts);

CREATE TABLE stats_month_services (
    zone          text NOT NULL,
    starts        timestamptz NOT NULL,
    services      text[] NOT NULL,   -- sorted, distinct
    close_reason  text,
    cases         integer NOT NULL,
    FOREIGN KEY (zone, starts) REFERENCES stats_months ON DELETE CASCADE
);
CREATE INDEX stats_month_services_by_month ON stats_month_services (zone, starts);

-- A referral's insert, delete, or move to another case or service also throws away the month
-- its case was reported in (usually the referral's own month: then nothing more is deleted).
CREATE OR REPLACE FUNCTION stats_referral_written() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM stats_months_stale(OLD.created_at);
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.created_at <> OLD.created_at) THEN
        PERFORM stats_months_stale(NEW.created_at);
    END IF;
    IF TG_OP <> 'INSERT' AND (TG_OP = 'DELETE' OR NEW.case_id IS DISTINCT FROM OLD.case_id
                              OR NEW.service IS DISTINCT FROM OLD.service) THEN
        PERFORM stats_months_stale(c.reported_at) FROM cases c WHERE c.case_id = OLD.case_id;
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.case_id IS DISTINCT FROM OLD.case_id
                              OR NEW.service IS DISTINCT FROM OLD.service) THEN
        PERFORM stats_months_stale(c.reported_at) FROM cases c WHERE c.case_id = NEW.case_id;
    END IF;
    RETURN NULL;
END;
$$;
ALTER FUNCTION stats_referral_written() SET search_path FROM CURRENT;

DROP TRIGGER stats_referral_updated ON referrals;
CREATE TRIGGER stats_referral_updated
    AFTER UPDATE ON referrals
    FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state
          OR OLD.agency_id IS DISTINCT FROM NEW.agency_id
          OR OLD.case_id IS DISTINCT FROM NEW.case_id
          OR OLD.service IS DISTINCT FROM NEW.service
          OR OLD.created_at IS DISTINCT FROM NEW.created_at
          OR OLD.acknowledged_at IS DISTINCT FROM NEW.acknowledged_at
          OR OLD.acknowledgement_deadline IS DISTINCT FROM NEW.acknowledgement_deadline
          OR OLD.acknowledge_within IS DISTINCT FROM NEW.acknowledge_within
          OR OLD.decline_reason IS DISTINCT FROM NEW.decline_reason
          OR OLD.escalated_at IS DISTINCT FROM NEW.escalated_at
          OR OLD.escalated_from IS DISTINCT FROM NEW.escalated_from
          OR OLD.escalation_reason IS DISTINCT FROM NEW.escalation_reason)
    EXECUTE FUNCTION stats_referral_written();

DROP TRIGGER stats_case_updated ON cases;
CREATE TRIGGER stats_case_updated
    AFTER UPDATE ON cases
    FOR EACH ROW
    WHEN (OLD.reported_at IS DISTINCT FROM NEW.reported_at
          OR OLD.district_code IS DISTINCT FROM NEW.district_code
          OR OLD.violence_types IS DISTINCT FROM NEW.violence_types
          OR OLD.close_reason IS DISTINCT FROM NEW.close_reason)
    EXECUTE FUNCTION stats_case_written();

-- Months rolled up before these tables have none of their rows: counted again on request.
DELETE FROM stats_months;
