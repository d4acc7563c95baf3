-- Monthly roll-ups of the monitoring figures (docs/operations.md, "Fourth round"): a province's
-- year read from its referrals costs PostgreSQL about 250 ms of CPU, linear in the rows; read
-- from twelve months rolled up, a few milliseconds. A month in the stats time zone is rolled
-- up by the first reader that finds it settled (every acknowledgement deadline of its
-- referrals passed, so no figure of it depends on "now" any more) and is thrown away by any
-- write that changes a row of it: a late answer, a state change, a case routed late. A period
-- reads its rolled-up months from here and the rest (its edges, months not settled or thrown
-- away since) from the referrals, in one snapshot.
--
-- Why the figures here always equal the referrals': every write to a row of referrals or
-- cases takes a shared advisory lock on the row's UTC month and deletes the roll-ups whose
-- month holds the row, in the writer's transaction (routing writes in READ COMMITTED, so the
-- delete, run after the lock, sees a roll-up committed while it waited). A reader rolls a
-- month up only after taking the exclusive lock on the UTC months it spans without waiting
-- (pg_try_advisory_xact_lock; on failure it reads that month live): no write to the month is
-- in flight while it counts, and any write after it deletes what it wrote. In any snapshot a
-- month's roll-up is present only if no write to it has committed since it was counted.
CREATE TABLE stats_months (
    zone        text NOT NULL,
    starts      timestamptz NOT NULL,
    ends        timestamptz NOT NULL,
    month       text NOT NULL CHECK (month ~ '^[0-9]{4}-[0-9]{2}$'),
    -- The latest acknowledgement deadline of the month's referrals (its start when it has
    -- none): its figures hold for any "now" after it.
    settled_at  timestamptz NOT NULL,
    rolled_at   timestamptz NOT NULL,
    PRIMARY KEY (zone, starts),
    CHECK (starts < ends)
);

-- A write finds the roll-ups holding its row by their end: the current month is never rolled
-- up (its deadlines have not passed), so for most writes this range is empty.
CREATE INDEX stats_months_by_end ON stats_months (ends);

-- The month's referrals counted as _referral_groups counts a period's, by district.
CREATE TABLE stats_month_referrals (
    zone           text NOT NULL,
    starts         timestamptz NOT NULL,
    district_code  text NOT NULL,
    agency_id      text NOT NULL,
    state          text NOT NULL,
    still_open     boolean NOT NULL,
    escalated      boolean NOT NULL,
    reason         text NOT NULL,
    met            integer NOT NULL,
    missed         integer NOT NULL,
    referrals      integer NOT NULL,
    FOREIGN KEY (zone, starts) REFERENCES stats_months ON DELETE CASCADE
);
CREATE INDEX stats_month_referrals_by_month ON stats_month_referrals (zone, starts);

-- Each agency's answer times in the month (minutes to the first answer), for the median.
CREATE TABLE stats_month_answers (
    zone           text NOT NULL,
    starts         timestamptz NOT NULL,
    district_code  text NOT NULL,
    agency_id      text NOT NULL,
    minutes        float8[] NOT NULL,
    FOREIGN KEY (zone, starts) REFERENCES stats_months ON DELETE CASCADE
);
CREATE INDEX stats_month_answers_by_month ON stats_month_answers (zone, starts);

-- The month's cases by district: violence_type NULL counts every case, a type the cases of it.
CREATE TABLE stats_month_cases (
    zone           text NOT NULL,
    starts         timestamptz NOT NULL,
    district_code  text NOT NULL,
    violence_type  text,
    cases          integer NOT NULL,
    FOREIGN KEY (zone, starts) REFERENCES stats_months ON DELETE CASCADE
);
CREATE INDEX stats_month_cases_by_month ON stats_month_cases (zone, starts);

-- A UTC month as one integer (year * 12 + month - 1): the key of its advisory lock.
CREATE FUNCTION stats_lock_month(at timestamptz) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (date_part('year', at AT TIME ZONE 'UTC') * 12
            + date_part('month', at AT TIME ZONE 'UTC') - 1)::integer
$$;

-- The roll-ups holding a row written at ``at`` are thrown away, after waiting for any reader
-- rolling up that UTC month.
CREATE FUNCTION stats_months_stale(at timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtext('routing.stats_months'), stats_lock_month(at));
    DELETE FROM stats_months WHERE ends > at AND starts <= at;
END;
$$;
ALTER FUNCTION stats_months_stale(timestamptz) SET search_path FROM CURRENT;

CREATE FUNCTION stats_referral_written() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM stats_months_stale(OLD.created_at);
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.created_at <> OLD.created_at) THEN
        PERFORM stats_months_stale(NEW.created_at);
    END IF;
    RETURN NULL;
END;
$$;
ALTER FUNCTION stats_referral_written() SET search_path FROM CURRENT;

CREATE FUNCTION stats_case_written() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM stats_months_stale(OLD.reported_at);
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.reported_at <> OLD.reported_at) THEN
        PERFORM stats_months_stale(NEW.reported_at);
    END IF;
    RETURN NULL;
END;
$$;
ALTER FUNCTION stats_case_written() SET search_path FROM CURRENT;

-- Only the columns the figures read: a delivery attempt or an updated_at alone changes none.
CREATE TRIGGER stats_referral_inserted_or_deleted
    AFTER INSERT OR DELETE ON referrals
    FOR EACH ROW EXECUTE FUNCTION stats_referral_written();
CREATE TRIGGER stats_referral_updated
    AFTER UPDATE ON referrals
    FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state
          OR OLD.agency_id IS DISTINCT FROM NEW.agency_id
          OR OLD.case_id IS DISTINCT FROM NEW.case_id
          OR OLD.created_at IS DISTINCT FROM NEW.created_at
          OR OLD.acknowledged_at IS DISTINCT FROM NEW.acknowledged_at
          OR OLD.acknowledgement_deadline IS DISTINCT FROM NEW.acknowledgement_deadline
          OR OLD.escalated_at IS DISTINCT FROM NEW.escalated_at
          OR OLD.escalated_from IS DISTINCT FROM NEW.escalated_from
          OR OLD.escalation_reason IS DISTINCT FROM NEW.escalation_reason)
    EXECUTE FUNCTION stats_referral_written();

CREATE TRIGGER stats_case_inserted_or_deleted
    AFTER INSERT OR DELETE ON cases
    FOR EACH ROW EXECUTE FUNCTION stats_case_written();
CREATE TRIGGER stats_case_updated
    AFTER UPDATE ON cases
    FOR EACH ROW
    WHEN (OLD.reported_at IS DISTINCT FROM NEW.reported_at
          OR OLD.district_code IS DISTINCT FROM NEW.district_code
          OR OLD.violence_types IS DISTINCT FROM NEW.violence_types)
    EXECUTE FUNCTION stats_case_written();
