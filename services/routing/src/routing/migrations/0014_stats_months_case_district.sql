-- A case's referrals count in the case's district (the roll-up joins cases), in the month each
-- referral was made, which need not be the month the case was reported (a case reported on the
-- last evening of a month and routed the next morning; escalations months later). A case moved
-- to another district therefore changes the figures of its referrals' months as well: they are
-- thrown away too, under the same lock (migration 0013).
CREATE OR REPLACE FUNCTION stats_case_written() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM stats_months_stale(OLD.reported_at);
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.reported_at <> OLD.reported_at) THEN
        PERFORM stats_months_stale(NEW.reported_at);
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.district_code IS DISTINCT FROM OLD.district_code THEN
        PERFORM stats_months_stale(made.created_at)
        FROM (SELECT DISTINCT created_at FROM referrals WHERE case_id = OLD.case_id) AS made;
    END IF;
    RETURN NULL;
END;
$$;
ALTER FUNCTION stats_case_written() SET search_path FROM CURRENT;
