-- Impact simulation (docs/routing.md, "Impact simulation"): routed cases keep their triage
-- facts (TriageFacts: codes and flags, never identifying data), so a candidate SOP can be run
-- over a district's past cases; and the simulation jobs, with their progress, so that any
-- routing replica can answer a progress poll.

-- NULL for cases routed before this migration: the simulation counts them as not simulable.
ALTER TABLE cases ADD COLUMN triage jsonb;

-- A district's cases in a period, read a chunk at a time by keyset (reported_at, case_id).
CREATE INDEX cases_by_district_reported ON cases (district_code, reported_at, case_id);

CREATE TABLE sop_simulations (
    simulation_id     text PRIMARY KEY,
    district_code     text NOT NULL,
    -- The SOP in force when it was asked for, and the candidate, as documents: the job runs
    -- on any replica, whatever SOP is in force by then.
    base_version      integer NOT NULL,
    base_origin       text NOT NULL CHECK (base_origin IN ('file', 'published')),
    base_sha256       text NOT NULL CHECK (base_sha256 ~ '^[0-9a-f]{64}$'),
    base_yaml         text NOT NULL,
    candidate_version integer NOT NULL,
    candidate_sha256  text NOT NULL CHECK (candidate_sha256 ~ '^[0-9a-f]{64}$'),
    candidate_yaml    text NOT NULL,
    period_from       timestamptz NOT NULL,
    period_to         timestamptz NOT NULL CHECK (period_to > period_from),
    state             text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'done', 'failed')),
    cases_done        integer NOT NULL DEFAULT 0,
    cases_total       integer,
    diff              jsonb NOT NULL,          -- routing.sop.diff, rule by rule
    result            jsonb,                   -- routing.simulate, when done
    failure           text,                    -- why it failed: codes and reasons, no case data
    requested_by      text NOT NULL,           -- role and token id, never a name
    requested_at      timestamptz NOT NULL,
    started_at        timestamptz,
    finished_at       timestamptz,
    CHECK ((state = 'done') = (result IS NOT NULL)),
    CHECK ((state = 'failed') = (failure IS NOT NULL))
);

-- Each replica's runner claims the oldest queued job.
CREATE INDEX sop_simulations_queued ON sop_simulations (requested_at) WHERE state = 'queued';
-- A runner that starts looks for jobs left running by a routing that died.
CREATE INDEX sop_simulations_running ON sop_simulations (simulation_id) WHERE state = 'running';
