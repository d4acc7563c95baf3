-- Cases routing could not route, kept until routed by hand or closed; and which SOP documents
-- routing has announced as in force (sop.in_force), so a restart announces nothing twice.

CREATE TABLE unrouted_cases (
    case_id          text PRIMARY KEY,
    district_code    text NOT NULL,
    reason           text NOT NULL
        CHECK (reason IN ('no_sop', 'sop_refused', 'sop_invalid', 'decision_failed')),
    -- What a coordinator can act on, in Bahasa Indonesia and English; never identifying data.
    detail           text NOT NULL,
    -- The case.reported payload (triage facts only), to route the case again by hand.
    reported         jsonb NOT NULL,
    reported_at      timestamptz NOT NULL,
    since            timestamptz NOT NULL,
    attempts         integer NOT NULL DEFAULT 1,
    last_attempt_at  timestamptz NOT NULL,
    resolved_at      timestamptz,
    resolution       text CHECK (resolution IN ('routed', 'closed')),
    resolved_by      text,
    CHECK ((resolved_at IS NULL) = (resolution IS NULL))
);

-- The coordinator's list and the rujuk_cases_unrouted gauge read the open ones only.
CREATE INDEX unrouted_cases_open ON unrouted_cases (district_code, since)
    WHERE resolved_at IS NULL;

CREATE TABLE sop_announcements (
    district_code  text NOT NULL,
    version        integer NOT NULL,
    sha256         text NOT NULL,
    announced_at   timestamptz NOT NULL,
    PRIMARY KEY (district_code, version, sha256)
);
