-- Counts kept on each referral's row: the settle that brings pending_sends to 0 (under the
-- row's lock) reports the referral delivered (no failed send) or failed, exactly once.
ALTER TABLE deliveries ADD COLUMN pending_sends int NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN failed_sends int NOT NULL DEFAULT 0;
UPDATE deliveries d SET
    pending_sends = (SELECT count(*) FROM sends s
                     WHERE s.referral_id = d.referral_id AND s.state = 'pending'),
    failed_sends = (SELECT count(*) FROM sends s
                    WHERE s.referral_id = d.referral_id AND s.state = 'failed');
