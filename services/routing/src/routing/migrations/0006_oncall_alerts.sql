-- On call past the coordinator: an alert opens when a referral's escalation chain runs out
-- (the coordinator did not answer either). Routing pages the on-call list of the SOP in force,
-- a round at a time, until someone acknowledges the alert or the rounds run out; each round
-- is staged in the outbox in the transaction that records it, so it is paged once.

CREATE TABLE oncall_alerts (
    alert_id          text PRIMARY KEY,
    case_id           text NOT NULL,
    district_code     text NOT NULL,
    referral_id       text NOT NULL UNIQUE,   -- the referral nobody answered (one alert each)
    agency_id         text NOT NULL,
    priority          text NOT NULL,
    reason            text NOT NULL CHECK (reason IN ('deadline_missed', 'declined', 'delivery_failed')),
    opened_at         timestamptz NOT NULL,
    -- Taken from the SOP in force when the first round is paged, then kept for every round.
    sop_id            text,
    sop_version       integer,
    contacts          jsonb,                  -- [{"contact_id": …, "channels": […]}]
    rounds            integer CHECK (rounds >= 1),
    every_seconds     double precision CHECK (every_seconds > 0),
    rounds_paged      integer NOT NULL DEFAULT 0,
    next_page_at      timestamptz,            -- null: nothing more to page
    last_paged_at     timestamptz,
    acknowledged_at   timestamptz,
    acknowledged_by   text,                   -- a token id or an on-call contact id
    acknowledged_via  text CHECK (acknowledged_via IN ('console', 'reply')),
    CHECK ((acknowledged_at IS NULL) = (acknowledged_by IS NULL))
);

-- The pager claims the due ones; the console and the gauge read the open ones.
CREATE INDEX oncall_alerts_due ON oncall_alerts (next_page_at)
    WHERE acknowledged_at IS NULL AND next_page_at IS NOT NULL;
CREATE INDEX oncall_alerts_open ON oncall_alerts (district_code, opened_at)
    WHERE acknowledged_at IS NULL;
