-- The support types catalogue. Every change is a new row in
-- support_type_versions; a version's content is never updated. The one update
-- allowed is end-dating an open-ended version (setting valid_to once, when a
-- later version or a retirement takes effect), recorded with who, when and
-- why. Validity periods of one code never overlap.

CREATE EXTENSION IF NOT EXISTS btree_gist WITH SCHEMA public;

CREATE TABLE support_types (
    code           text        PRIMARY KEY CHECK (code ~ '^[A-Z][A-Z0-9_]{0,63}$'),
    latest_version integer     NOT NULL CHECK (latest_version >= 1),
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE support_type_versions (
    code              text        NOT NULL REFERENCES support_types (code),
    version           integer     NOT NULL CHECK (version >= 1),
    valid_from        date        NOT NULL,
    -- last day the version applies (inclusive); NULL: open-ended
    valid_to          date        CHECK (valid_to IS NULL OR valid_to >= valid_from),
    name_uk           text        NOT NULL CHECK (length(name_uk) BETWEEN 1 AND 500),
    name_en           text        NOT NULL CHECK (length(name_en) BETWEEN 1 AND 500),
    category          text        NOT NULL CHECK (category IN ('payment', 'benefit', 'social_service', 'housing_subsidy')),
    legal_basis       text        NOT NULL CHECK (length(legal_basis) BETWEEN 1 AND 2000),
    -- NULL for support that is not paid in money
    payment_rule      jsonb,
    decisive_date     text        NOT NULL CHECK (decisive_date IN ('birth_date', 'application_date', 'payment_month')),
    thresholds        jsonb       NOT NULL DEFAULT '[]',
    eligibility_notes text        NOT NULL DEFAULT '',
    change_reason     text        NOT NULL CHECK (length(change_reason) BETWEEN 1 AND 2000),
    recorded_by       text        NOT NULL,
    recorded_by_org   text,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    end_dated_at      timestamptz,
    end_dated_by      text,
    end_date_reason   text,
    PRIMARY KEY (code, version),
    CONSTRAINT support_type_versions_no_overlap
        EXCLUDE USING gist (code WITH =, daterange(valid_from, valid_to, '[]') WITH &&)
);

-- Content is immutable; valid_to may go from NULL to a date once, with the
-- end-dating record; rows are never deleted.
CREATE FUNCTION versions_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'versions of % are never deleted', TG_TABLE_NAME USING ERRCODE = 'P0001';
    END IF;
    IF OLD.valid_to IS NOT NULL
       OR NEW.valid_to IS NULL
       OR NEW.end_dated_at IS NULL
       OR (to_jsonb(NEW) - ARRAY['valid_to', 'end_dated_at', 'end_dated_by', 'end_date_reason'])
          IS DISTINCT FROM (to_jsonb(OLD) - ARRAY['valid_to', 'end_dated_at', 'end_dated_by', 'end_date_reason'])
    THEN
        RAISE EXCEPTION 'versions of % are immutable except for end-dating an open version once', TG_TABLE_NAME
            USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER support_type_versions_append_only
    BEFORE UPDATE OR DELETE ON support_type_versions
    FOR EACH ROW EXECUTE FUNCTION versions_are_append_only();

CREATE INDEX support_type_versions_in_force ON support_type_versions USING gist (daterange(valid_from, valid_to, '[]'));
