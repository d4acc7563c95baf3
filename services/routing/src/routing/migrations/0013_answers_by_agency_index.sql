-- A period's per-agency median of time to answer read the period's answered referrals and
-- sorted them by agency (a province's year: 90,000 rows, 80-120 ms at five years of history,
-- bench/years.py). This index hands them over in agency order, index-only: no sort but each
-- agency's own few answer times. case_id for the district filter.
CREATE INDEX referrals_answers_by_agency ON referrals (agency_id, created_at)
    INCLUDE (acknowledged_at, case_id) WHERE acknowledged_at IS NOT NULL;
