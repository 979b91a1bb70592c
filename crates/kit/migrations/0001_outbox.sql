-- Events written in the same transaction as the change they announce, and
-- relayed to JetStream by the outbox relay (esocial-events). A row is marked
-- published only after JetStream acknowledged it. Rows are kept after
-- publishing: a lost stream can be rebuilt from them.
CREATE TABLE outbox (
    id               bigserial PRIMARY KEY,
    event_id         uuid        NOT NULL UNIQUE,
    -- relative subject `<service>.<entity>.<event>`; the relay prepends the
    -- configured subject prefix
    subject          text        NOT NULL CHECK (subject ~ '^[a-z0-9_]+(\.[a-z0-9_]+)+$'),
    event_type       text        NOT NULL,
    source           text        NOT NULL,
    subject_id       text,
    occurred_at      timestamptz NOT NULL DEFAULT now(),
    data_schema      text        NOT NULL,
    payload          bytea       NOT NULL,
    traceparent      text,
    tracestate       text,
    published_at     timestamptz,
    publish_attempts integer     NOT NULL DEFAULT 0 CHECK (publish_attempts >= 0),
    last_error       text
);

CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Wakes the relay as soon as an event is committed. The channel is named
-- after the schema, so services sharing a database do not wake each other.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_' || TG_TABLE_SCHEMA, '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
