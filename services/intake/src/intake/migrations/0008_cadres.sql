-- Cadres (issue 25): a cadre token is bound to one district and to kecamatan or villages in
-- it ("Kraksaan", "Kraksaan/Desa Contoh"); no other token names any area.
ALTER TABLE access_tokens DROP CONSTRAINT access_tokens_role_check;
ALTER TABLE access_tokens ADD CONSTRAINT access_tokens_role_check
    CHECK (role IN ('operator', 'partner', 'coordinator', 'auditor', 'cadre'));
ALTER TABLE access_tokens ADD COLUMN areas text[];
ALTER TABLE access_tokens ADD CONSTRAINT access_tokens_cadre_bound_to_areas
    CHECK (role <> 'cadre' OR (areas IS NOT NULL AND cardinality(areas) > 0
                               AND districts IS NOT NULL AND cardinality(districts) = 1));
ALTER TABLE access_tokens ADD CONSTRAINT access_tokens_areas_of_cadres_only
    CHECK (role = 'cadre' OR areas IS NULL);

-- Which token filed a case: a cadre reads the status of the reports it filed, and only
-- those. NULL for cases filed before this migration (no cadre filed any).
ALTER TABLE cases ADD COLUMN filed_by text;
CREATE INDEX cases_filed_by ON cases (filed_by) WHERE filed_by IS NOT NULL;
