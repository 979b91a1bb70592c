-- Each answer of a search of the message log (which may carry the bodies
-- of exchanges, and so personal data), recorded before it is sent: who
-- searched, for what, and which entries it carried. Append-only. Read in
-- the order of `position`, which records take in the order they commit
-- (each takes it holding a transaction lock the next waits for), so a
-- reader paging through them never passes one that commits later.
CREATE TABLE log_searches (
    search_id uuid PRIMARY KEY,
    position bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    searched_at timestamptz NOT NULL,
    searched_by text NOT NULL,
    searched_by_edrpou text NOT NULL,
    member_id text NOT NULL,
    method text NOT NULL,
    time_from timestamptz,
    time_to timestamptz,
    request_id text NOT NULL,
    include_bodies boolean NOT NULL,
    page_token text NOT NULL,
    entry_nodes text[] NOT NULL,
    entry_sequences bigint[] NOT NULL,
    CHECK (cardinality(entry_nodes) = cardinality(entry_sequences))
);

CREATE INDEX log_searches_by ON log_searches (searched_by, position);

CREATE FUNCTION log_searches_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'log_searches is append-only';
END;
$$;

CREATE TRIGGER log_searches_append_only BEFORE UPDATE OR DELETE ON log_searches
    FOR EACH ROW EXECUTE FUNCTION log_searches_append_only();
