-- The districts the signed-in token serves, as intake's GET /v1/whoami said at sign-in (sorted
-- BPS codes such as 3514); NULL for a province-level token and for a partner (bound to its
-- agency). The pages show it and offer only those districts; every service still checks the
-- token itself on each call.
ALTER TABLE sessions ADD COLUMN districts text[];
-- A session begun before this column cannot say which districts its token serves, and NULL
-- would read as "province": it goes, and its person signs in again (the cookie then finds no
-- session, as for one that expired).
DELETE FROM sessions WHERE ended_at IS NULL;
