-- The rakor's monitoring page (GET /v1/monitoring): how each case reached the programme (its
-- channel, from the case.reported event routing consumes: outreach counts as penjangkauan),
-- and the two indexes that answer a year of one district from that district's rows alone.

-- NULL for cases routed before routing kept the channel (counted as "channel unknown"), except
-- those routed by hand, whose case.reported payload routing kept.
ALTER TABLE cases ADD COLUMN channel text;

UPDATE cases c SET channel = u.reported ->> 'channel'
FROM unrouted_cases u WHERE u.case_id = c.case_id AND c.channel IS NULL;

-- The cases of a district reported in a period, in the order the impact simulation reads them
-- (0009), now with what the service-function table reads too.
DROP INDEX cases_by_district_reported;
CREATE INDEX cases_by_district_reported ON cases (district_code, reported_at, case_id)
    INCLUDE (channel, close_reason);

-- The referrals of a district (a case id begins with its district's code) made in a period,
-- with what the per-agency figures read: index-only scans, whatever the other districts hold.
CREATE INDEX referrals_by_district_created ON referrals (left(case_id, 4), created_at) INCLUDE (
    case_id, agency_id, service, state, acknowledged_at, acknowledgement_deadline,
    acknowledge_within, decline_reason, escalated_at, escalated_from, escalation_reason
);
