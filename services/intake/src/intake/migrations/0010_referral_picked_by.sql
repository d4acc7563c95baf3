-- How a referral's agency was picked when the case's desa decided it (SOP pick: by_village),
-- as its referral.requested says (picked_by): shown with the referral on the case's status.
-- Null for every other referral, and for those projected before this column. No CHECK: the
-- contract may add a value within its version (rujuk_contracts.events.PickedBy).
ALTER TABLE case_referrals ADD COLUMN picked_by text;
