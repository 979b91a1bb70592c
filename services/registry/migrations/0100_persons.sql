-- Recipients: the current state of each person (for lookups), every version
-- ever recorded (append-only), family links, merges and the pairs marked
-- distinct, bulk imports, and the log of every read of personal data.

-- similarity() scores name keys.
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;

-- Territorial units as the classifier publishes them (replicated from its
-- events): which KATOTTG codes exist, and the hierarchy for territorial
-- access checks.
CREATE TABLE territories (
    code        text        PRIMARY KEY CHECK (code ~ '^UA[0-9]{17}$'),
    parent_code text,
    level       text        NOT NULL,
    name_uk     text        NOT NULL,
    valid_from  date        NOT NULL,
    valid_to    date,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE persons (
    id                   uuid        PRIMARY KEY,
    status               text        NOT NULL CHECK (status IN ('active', 'merged')),
    merged_into          uuid        REFERENCES persons (id),
    version              integer     NOT NULL CHECK (version >= 1),
    valid_from           date        NOT NULL,
    rnokpp               text        CHECK (rnokpp ~ '^[0-9]{10}$'),
    unzr                 text        CHECK (unzr ~ '^[0-9]{8}-[0-9]{5}$'),
    passport_number      text,
    last_name            text        NOT NULL,
    first_name           text        NOT NULL,
    patronymic           text        NOT NULL DEFAULT '',
    -- the full name reduced for matching spelling variants and transliterations
    name_key             text        NOT NULL,
    birth_date           date        NOT NULL,
    registered_territory text        NOT NULL,
    -- the version whose data is in force today (its data is in
    -- person_versions; the columns above are copied from it for lookups)
    data_version         integer     NOT NULL CHECK (data_version BETWEEN 1 AND version),
    import_id            uuid,
    import_row           bigint,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'merged') = (merged_into IS NOT NULL)),
    CHECK (rnokpp IS NOT NULL OR passport_number IS NOT NULL OR unzr IS NOT NULL)
);

CREATE UNIQUE INDEX persons_rnokpp ON persons (rnokpp) WHERE rnokpp IS NOT NULL AND status = 'active';
CREATE UNIQUE INDEX persons_unzr ON persons (unzr) WHERE unzr IS NOT NULL AND status = 'active';
CREATE INDEX persons_passport ON persons (passport_number) WHERE passport_number IS NOT NULL;
-- Names are always looked up with a birth date (search, duplicates): the
-- date narrows a million persons to a few dozen, whose keys pg_trgm scores.
-- (A trigram index on every name would cost a third of the bulk import.)
CREATE INDEX persons_birth_date ON persons (birth_date);
CREATE INDEX persons_import ON persons (import_id, import_row) WHERE import_id IS NOT NULL;

CREATE TABLE person_versions (
    person_id       uuid        NOT NULL REFERENCES persons (id),
    version         integer     NOT NULL CHECK (version >= 1),
    valid_from      date        NOT NULL,
    -- PersonData as JSON (json, not jsonb: never queried inside, cheaper
    -- to write in bulk)
    data            json        NOT NULL,
    reason          text        NOT NULL,
    source_document text        NOT NULL DEFAULT '',
    recorded_by     text        NOT NULL,
    recorded_by_org text,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, version)
);

CREATE FUNCTION history_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'P0001';
END;
$$;

CREATE TRIGGER person_versions_append_only BEFORE UPDATE OR DELETE ON person_versions
    FOR EACH ROW EXECUTE FUNCTION history_is_append_only();

CREATE TABLE family_links (
    person_id         uuid        NOT NULL REFERENCES persons (id),
    related_person_id uuid        NOT NULL REFERENCES persons (id),
    relation          text        NOT NULL CHECK (relation IN ('parent', 'child', 'spouse', 'guardian', 'ward')),
    valid_from        date        NOT NULL,
    recorded_by       text        NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, related_person_id, relation),
    CHECK (person_id <> related_person_id)
);

CREATE TABLE person_merges (
    merged_person_id    uuid        PRIMARY KEY REFERENCES persons (id),
    surviving_person_id uuid        NOT NULL REFERENCES persons (id),
    reason              text        NOT NULL,
    recorded_by         text        NOT NULL,
    recorded_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE distinct_persons (
    person_a    uuid        NOT NULL REFERENCES persons (id),
    person_b    uuid        NOT NULL REFERENCES persons (id),
    reason      text        NOT NULL,
    recorded_by text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_a, person_b),
    CHECK (person_a < person_b)
);

CREATE TABLE imports (
    id              uuid        PRIMARY KEY,
    request_id      uuid        NOT NULL UNIQUE,
    format          text        NOT NULL,
    source_document text        NOT NULL DEFAULT '',
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    rows            bigint      NOT NULL DEFAULT 0,
    accepted        bigint      NOT NULL DEFAULT 0,
    rejected        bigint      NOT NULL DEFAULT 0,
    duplicates      bigint      NOT NULL DEFAULT 0,
    recorded_by     text        NOT NULL
);

-- Rows of an import that were not accepted (accepted rows are the persons
-- with this import_id and their row number).
CREATE TABLE import_problems (
    import_id uuid   NOT NULL REFERENCES imports (id),
    row       bigint NOT NULL,
    outcome   text   NOT NULL CHECK (outcome IN ('rejected', 'duplicate')),
    person_id uuid,
    reason    text   NOT NULL,
    PRIMARY KEY (import_id, row)
);

CREATE TABLE access_log (
    id          bigserial   PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    reader      text        NOT NULL,
    reader_org  text,
    person_id   uuid        NOT NULL,
    method      text        NOT NULL,
    purpose     text        NOT NULL
);

CREATE INDEX access_log_person ON access_log (person_id, id);

CREATE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION history_is_append_only();
