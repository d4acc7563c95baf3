-- The districts an operator, coordinator or auditor token serves. NULL is province level:
-- every district. What an existing token becomes: every operator, coordinator and auditor
-- token made before this migration could reach every district, so it stays NULL (province
-- level), exactly the access it had and never more; `rujuk token list` shows it as
-- "province" so that an administrator can revoke it and issue district tokens instead.
-- New tokens say their reach: `rujuk token create` refuses one without --district or
-- --province. A partner's stays NULL: its agency binds it.
ALTER TABLE access_tokens ADD COLUMN districts text[];
ALTER TABLE access_tokens ADD CONSTRAINT access_tokens_partner_without_districts
    CHECK (role <> 'partner' OR districts IS NULL);
ALTER TABLE access_tokens ADD CONSTRAINT access_tokens_districts_not_empty
    CHECK (districts IS NULL OR cardinality(districts) > 0);
