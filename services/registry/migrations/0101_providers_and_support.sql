-- Providers (three sections) and support relations, each with full history.

CREATE TABLE providers (
    id         uuid        PRIMARY KEY,
    version    integer     NOT NULL CHECK (version >= 1),
    valid_from date        NOT NULL,
    section    text        NOT NULL CHECK (section IN ('social_protection_body', 'service_provider', 'individual_caregiver')),
    name       text        NOT NULL,
    edrpou     text        CHECK (edrpou ~ '^[0-9]{8}$'),
    rnokpp     text        CHECK (rnokpp ~ '^[0-9]{10}$'),
    territory  text        NOT NULL,
    services   text[]      NOT NULL DEFAULT '{}',
    status     text        NOT NULL CHECK (status IN ('active', 'suspended', 'closed')),
    -- the current version's data (ProviderData as JSON)
    data       jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (edrpou IS NOT NULL OR rnokpp IS NOT NULL),
    CHECK (section <> 'individual_caregiver' OR rnokpp IS NOT NULL),
    CHECK (section <> 'social_protection_body' OR edrpou IS NOT NULL)
);

CREATE UNIQUE INDEX providers_edrpou ON providers (edrpou) WHERE edrpou IS NOT NULL;
CREATE UNIQUE INDEX providers_rnokpp ON providers (section, rnokpp) WHERE rnokpp IS NOT NULL AND edrpou IS NULL;
CREATE INDEX providers_territory ON providers (territory);


CREATE TABLE provider_versions (
    provider_id uuid        NOT NULL REFERENCES providers (id),
    version     integer     NOT NULL,
    valid_from  date        NOT NULL,
    data        jsonb       NOT NULL,
    reason      text        NOT NULL,
    recorded_by text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider_id, version)
);

CREATE TRIGGER provider_versions_append_only BEFORE UPDATE OR DELETE ON provider_versions
    FOR EACH ROW EXECUTE FUNCTION history_is_append_only();

CREATE TABLE support_relations (
    id                   uuid        PRIMARY KEY,
    person_id            uuid        NOT NULL REFERENCES persons (id),
    support_type_code    text        NOT NULL CHECK (support_type_code ~ '^[A-Z][A-Z0-9_]{0,63}$'),
    support_type_version integer     NOT NULL CHECK (support_type_version >= 1),
    provider_id          uuid        NOT NULL REFERENCES providers (id),
    decision_number      text        NOT NULL,
    decision_date        date        NOT NULL,
    period_from          date        NOT NULL,
    period_to            date        CHECK (period_to IS NULL OR period_to >= period_from),
    status               text        NOT NULL CHECK (status IN ('assigned', 'suspended', 'terminated')),
    version              integer     NOT NULL CHECK (version >= 1),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX support_relations_person ON support_relations (person_id);

CREATE TABLE support_relation_versions (
    relation_id uuid        NOT NULL REFERENCES support_relations (id),
    version     integer     NOT NULL,
    data        jsonb       NOT NULL,
    reason      text        NOT NULL,
    recorded_by text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (relation_id, version)
);

CREATE TRIGGER support_relation_versions_append_only BEFORE UPDATE OR DELETE ON support_relation_versions
    FOR EACH ROW EXECUTE FUNCTION history_is_append_only();

-- The classifier's support type versions (replicated from its events), to
-- check the code and version a support relation names.
CREATE TABLE support_type_versions (
    code       text    NOT NULL,
    version    integer NOT NULL CHECK (version >= 1),
    valid_from date    NOT NULL,
    valid_to   date,
    PRIMARY KEY (code, version)
);
