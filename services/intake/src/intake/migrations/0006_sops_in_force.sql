-- The SOP routing applies to each district, as its sop.in_force events announce it: intake
-- files reports only for these districts, and issues partner tokens only for agencies their
-- directories name. One row per district, the newest version announced.
CREATE TABLE sops_in_force (
    district_code  text PRIMARY KEY,
    sop_id         text NOT NULL,
    sop_version    integer NOT NULL,
    sha256         text NOT NULL,
    origin         text NOT NULL,
    agency_ids     text[] NOT NULL,
    announced_at   timestamptz NOT NULL
);
