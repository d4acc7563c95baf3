-- The rakor's figures of a rolled-up month (GET /v1/monitoring for the whole province, which
-- took 500-700 ms for a year from its rows): per agency, its referrals, answers, deadlines met
-- and missed, and each referral's minutes to acknowledge for the deadlines' median (the
-- answer times are stats_month_answers'); the escalations by the agency handed away from.
-- Kept and thrown away with their month (migration 0013). A district's figures are read from
-- its rows: they find a referral's district by its case id, these by its case.
CREATE TABLE stats_month_agencies (
    zone              text NOT NULL,
    starts            timestamptz NOT NULL,
    agency_id         text NOT NULL,
    referrals         integer NOT NULL,
    acknowledged      integer NOT NULL,
    met               integer NOT NULL,
    missed            integer NOT NULL,
    deadline_minutes  float8[] NOT NULL,
    FOREIGN KEY (zone, starts) REFERENCES stats_months ON DELETE CASCADE
);
CREATE INDEX stats_month_agencies_by_month ON stats_month_agencies (zone, starts);

CREATE TABLE stats_month_escalations (
    zone         text NOT NULL,
    starts       timestamptz NOT NULL,
    agency_id    text,           -- handed away from
    reason       text NOT NULL,
    escalations  integer NOT NULL,
    FOREIGN KEY (zone, starts) REFERENCES stats_months ON DELETE CASCADE
);
CREATE INDEX stats_month_escalations_by_month ON stats_month_escalations (zone, starts);

-- The deadlines' median reads acknowledge_within: a change to it throws its month away too.
DROP TRIGGER stats_referral_updated ON referrals;
CREATE TRIGGER stats_referral_updated
    AFTER UPDATE ON referrals
    FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state
          OR OLD.agency_id IS DISTINCT FROM NEW.agency_id
          OR OLD.case_id IS DISTINCT FROM NEW.case_id
          OR OLD.created_at IS DISTINCT FROM NEW.created_at
          OR OLD.acknowledged_at IS DISTINCT FROM NEW.acknowledged_at
          OR OLD.acknowledgement_deadline IS DISTINCT FROM NEW.acknowledgement_deadline
          OR OLD.acknowledge_within IS DISTINCT FROM NEW.acknowledge_within
          OR OLD.escalated_at IS DISTINCT FROM NEW.escalated_at
          OR OLD.escalated_from IS DISTINCT FROM NEW.escalated_from
          OR OLD.escalation_reason IS DISTINCT FROM NEW.escalation_reason)
    EXECUTE FUNCTION stats_referral_written();

-- Months rolled up before these tables have none of their rows: counted again on request.
DELETE FROM stats_months;
