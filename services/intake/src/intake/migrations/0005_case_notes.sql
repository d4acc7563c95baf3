-- Free text a person types about an action (why a partner declines, why a coordinator closes,
-- why details are read): sealed (AES-GCM) under its case's data key, so it is shredded with
-- the case. Events and the ledger carry only the note's id (`note_ref`). `sealed` is NULL once
-- the case is erased: the row stays as the record that a note existed, never its text.
CREATE TABLE case_notes (
    note_id           text PRIMARY KEY,
    case_id           text NOT NULL REFERENCES cases (case_id),
    kind              text NOT NULL,
    sealed            bytea,
    author_token_id   text NOT NULL,
    author_role       text NOT NULL,
    author_agency_id  text,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX case_notes_case ON case_notes (case_id);

-- The access log of notes: one row per reading of a note, written in the same transaction as
-- its `case.note_read` event (who read which note; never its text).
CREATE TABLE note_reads (
    event_id   text PRIMARY KEY,
    case_id    text NOT NULL REFERENCES cases (case_id),
    note_id    text NOT NULL REFERENCES case_notes (note_id),
    token_id   text NOT NULL,
    role       text NOT NULL,
    agency_id  text,
    read_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX note_reads_case ON note_reads (case_id);

-- A disclosure's purpose is a DisclosurePurpose code from now on; the partner's own words, if
-- any, are a disclosure note named here.
ALTER TABLE disclosures ADD COLUMN note_ref text;
