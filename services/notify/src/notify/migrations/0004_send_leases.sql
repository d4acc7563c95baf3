-- Who holds a send's lease: the worker that claimed it, by its id. A worker holds a session
-- advisory lock on that id while it runs, so a lease whose holder's lock is free belongs to a
-- worker that died (kill -9): its sends are due again at once, not when the lease ends.
ALTER TABLE sends ADD COLUMN leased_by text;
CREATE INDEX sends_leased ON sends (leased_by) WHERE state = 'pending' AND leased_by IS NOT NULL;
