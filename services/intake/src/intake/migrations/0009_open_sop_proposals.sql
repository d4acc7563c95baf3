-- The agencies routing's SOP proposals ask to sign off (sop.proposed), until the proposal is
-- withdrawn or superseded (sop.proposal_withdrawn) or published (sop.published naming it):
-- intake issues a partner token to an agency an open proposal asks, as to one a directory in
-- force names. A close seen before its proposal leaves a closed row, so order does not matter.
CREATE TABLE sop_proposals_asking (
    proposal_id    text PRIMARY KEY,
    district_code  text NOT NULL,
    agency_ids     text[] NOT NULL,
    closed_at      timestamptz
);
CREATE INDEX sop_proposals_asking_open ON sop_proposals_asking (district_code)
    WHERE closed_at IS NULL;
