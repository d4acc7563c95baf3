-- Close reasons typed before they were codes may hold identifying data. The old default
-- ("every referral completed or cancelled") is `services_completed`; any other words become
-- `other`. (The ledger's copy of the case.closed event cannot change.)
UPDATE cases SET close_reason = 'services_completed'
WHERE close_reason = 'every referral completed or cancelled';
UPDATE cases SET close_reason = 'other'
WHERE close_reason IS NOT NULL
  AND close_reason NOT IN ('services_completed', 'survivor_withdrew', 'transferred',
                           'duplicate_report', 'filed_in_error', 'other');
