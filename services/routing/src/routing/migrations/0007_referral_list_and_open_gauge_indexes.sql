-- Years of referrals (bench/years.py): the console's list, open ones first, most urgent
-- first, then newest, is read in this index's order and stops at the page's end, instead of
-- sorting every referral ever made for each page (its cost grew with the history).
CREATE INDEX referrals_console_order ON referrals (
    (state NOT IN ('completed', 'declined', 'cancelled', 'escalated')) DESC,
    (CASE priority WHEN 'emergency' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END),
    created_at DESC,
    referral_id
);
-- The open-referrals gauge the deadline watcher refreshes (every 25 polls) counts the open
-- referrals only: from this index, whatever the history.
CREATE INDEX referrals_open_by_agency ON referrals (agency_id, state)
    WHERE state IN ('requested', 'delivered', 'delivery_failed', 'acknowledged');
