-- Retention (docs/intake.md, "Retention"): when a case was closed, and how many days its
-- district's SOP keeps a closed case's vault record (sop.in_force, vault_days_after_close).
ALTER TABLE cases ADD COLUMN closed_at timestamptz;
-- Cases closed before this migration: their last change is the nearest time known, at or
-- after the close, so such a record is kept as long as the SOP says or a little longer.
UPDATE cases SET closed_at = updated_at WHERE status = 'closed';
ALTER TABLE sops_in_force ADD COLUMN vault_days_after_close integer;
-- What the retention sweep reads: the closed cases not yet erased, oldest first per district.
CREATE INDEX cases_closed_not_erased ON cases (district_code, closed_at)
    WHERE status = 'closed' AND erased_at IS NULL;
