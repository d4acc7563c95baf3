-- Notices of a proposed SOP version are queued as deliveries keyed <proposal_id>:<event>:<agency>,
-- with the proposal id where a referral has its case id: the agencies told of a proposal are
-- found again, when it is withdrawn or published, through this index.
CREATE INDEX deliveries_sop_notices ON deliveries (case_id, agency_id)
    WHERE event_type = 'id.rujuk.sop.proposed.v1';
