-- Purposes typed before they were codes may hold identifying data (a tester typed a victim's
-- name and address into one), and this table outlives erasure. Each becomes `other`: the
-- access log keeps who read which fields of which case and when; the words go. (The ledger's
-- copy of such an event cannot change: that is the ledger's point, and docs/intake.md says so.)
UPDATE disclosures SET purpose = 'other'
WHERE purpose NOT IN ('first_contact', 'medical_care', 'police_investigation',
                      'shelter_placement', 'psychosocial_support', 'legal_aid', 'case_review',
                      'other');
