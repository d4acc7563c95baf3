-- SOP proposals signed off by the agencies whose duties change, and published SOP versions
-- with the date they take effect, the proposal they came from and any override.

CREATE TABLE sop_proposals (
    proposal_id    text PRIMARY KEY CHECK (proposal_id ~ '^prop-[0-9a-f]{32}$'),
    district_code  text NOT NULL,
    sop_id         text NOT NULL,
    version        integer NOT NULL CHECK (version >= 1),
    yaml           text NOT NULL,
    sha256         text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    -- The version in force when it was proposed (NULL: none in force).
    base_version   integer,
    proposed_by    text NOT NULL,
    proposed_at    timestamptz NOT NULL,
    state          text NOT NULL DEFAULT 'open'
        CHECK (state IN ('open', 'published', 'withdrawn', 'superseded')),
    -- Every agency the version in force or the proposal names: the partners who may read it.
    agency_ids     text[] NOT NULL,
    closed_at      timestamptz,
    closed_by      text,
    CHECK ((state = 'open') = (closed_at IS NULL))
);
-- At most one open proposal per district: a new one supersedes it.
CREATE UNIQUE INDEX sop_proposals_one_open ON sop_proposals (district_code) WHERE state = 'open';
CREATE INDEX sop_proposals_by_district ON sop_proposals (district_code, proposed_at DESC);
CREATE INDEX sop_proposals_by_agency ON sop_proposals USING gin (agency_ids);

-- The agencies asked to sign a proposal off, and what changes for each (DutyChange codes).
CREATE TABLE sop_proposal_asked (
    proposal_id   text NOT NULL REFERENCES sop_proposals (proposal_id),
    agency_id     text NOT NULL,
    duty_changes  text[] NOT NULL CHECK (cardinality(duty_changes) >= 1),
    PRIMARY KEY (proposal_id, agency_id)
);
CREATE INDEX sop_proposal_asked_by_agency ON sop_proposal_asked (agency_id);

-- Each asked agency's current answer: a later answer replaces the earlier one (both are
-- events in the ledger).
CREATE TABLE sop_proposal_answers (
    proposal_id  text NOT NULL,
    agency_id    text NOT NULL,
    decision     text NOT NULL CHECK (decision IN ('agree', 'object')),
    reason       text,  -- an ObjectionReason code, for an objection
    note_ref     text,  -- a note's id at intake, never the text
    via          text NOT NULL CHECK (via IN ('console', 'api', 'nats')),
    answered_by  text NOT NULL,
    answered_at  timestamptz NOT NULL,
    PRIMARY KEY (proposal_id, agency_id),
    FOREIGN KEY (proposal_id, agency_id) REFERENCES sop_proposal_asked (proposal_id, agency_id),
    CHECK ((decision = 'object') = (reason IS NOT NULL))
);

-- A published version applies to new cases from effective_at; versions published before
-- took effect when published.
ALTER TABLE sops
    ADD COLUMN effective_at timestamptz,
    ADD COLUMN proposal_id text REFERENCES sop_proposals (proposal_id),
    ADD COLUMN override_reason text,
    ADD COLUMN agencies_not_agreed text[] NOT NULL DEFAULT '{}';
UPDATE sops SET effective_at = published_at;
ALTER TABLE sops ALTER COLUMN effective_at SET NOT NULL;
-- Which version is in force at a time: the newest whose effective_at has come.
CREATE INDEX sops_in_force ON sops (district_code, version DESC, effective_at);
