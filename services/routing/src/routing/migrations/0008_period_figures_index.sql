-- Monitoring & evaluation figures over a year of a province's referrals (bench/years.py: the
-- year's figures took 0.5-1 s at five years of history): the four statements over the
-- period's referrals read this index alone (index-only scans), not the table. It replaces the
-- plain index on created_at.
CREATE INDEX referrals_period_figures ON referrals (created_at) INCLUDE (
    agency_id, state, acknowledged_at, acknowledgement_deadline, escalated_at, escalated_from,
    escalation_reason, case_id
);
DROP INDEX referrals_by_created;
