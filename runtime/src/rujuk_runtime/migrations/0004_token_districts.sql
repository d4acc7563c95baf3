-- The districts an operator, coordinator or auditor token serves (token.issued's
-- `districts`). NULL: province level, every district. Every token projected before this
-- migration was issued before tokens carried districts; it keeps NULL, which is exactly the
-- access it had (every district), never more. A partner's is always NULL: its agency binds it.
ALTER TABLE access_token_projection ADD COLUMN districts text[];
