-- Reference books (territorial units, document types, organization types,
-- banks, relationship kinds), versioned exactly like support types.

CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;

CREATE TABLE reference_entries (
    book           text        NOT NULL CHECK (book IN ('territorial_units', 'document_types', 'organization_types', 'banks', 'relationship_kinds')),
    code           text        NOT NULL CHECK (length(code) BETWEEN 1 AND 64),
    latest_version integer     NOT NULL CHECK (latest_version >= 1),
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (book, code)
);

CREATE TABLE reference_entry_versions (
    book                 text        NOT NULL,
    code                 text        NOT NULL,
    version              integer     NOT NULL CHECK (version >= 1),
    valid_from           date        NOT NULL,
    valid_to             date        CHECK (valid_to IS NULL OR valid_to >= valid_from),
    name_uk              text        NOT NULL CHECK (length(name_uk) BETWEEN 1 AND 500),
    name_en              text        NOT NULL CHECK (length(name_en) <= 500),
    -- name_uk normalised for search: lower case, one apostrophe form, single spaces
    search_name          text        NOT NULL,
    parent_code          text,
    territorial_level    text        CHECK (territorial_level IN ('oblast', 'raion', 'hromada', 'settlement', 'city_district')),
    territorial_category text        CHECK (territorial_category ~ '^[A-Z]$'),
    change_reason        text        NOT NULL CHECK (length(change_reason) BETWEEN 1 AND 2000),
    recorded_by          text        NOT NULL,
    recorded_by_org      text,
    recorded_at          timestamptz NOT NULL DEFAULT now(),
    end_dated_at         timestamptz,
    end_dated_by         text,
    end_date_reason      text,
    PRIMARY KEY (book, code, version),
    FOREIGN KEY (book, code) REFERENCES reference_entries (book, code),
    CHECK ((book = 'territorial_units') = (territorial_level IS NOT NULL AND territorial_category IS NOT NULL)),
    CONSTRAINT reference_entry_versions_no_overlap
        EXCLUDE USING gist (book WITH =, code WITH =, daterange(valid_from, valid_to, '[]') WITH &&)
);

CREATE TRIGGER reference_entry_versions_append_only
    BEFORE UPDATE OR DELETE ON reference_entry_versions
    FOR EACH ROW EXECUTE FUNCTION versions_are_append_only();

CREATE INDEX reference_entry_versions_children ON reference_entry_versions (book, parent_code, code) WHERE parent_code IS NOT NULL;
CREATE INDEX reference_entry_versions_search ON reference_entry_versions USING gin (search_name gin_trgm_ops);
