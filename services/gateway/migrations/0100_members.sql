-- Member systems (X-Road style identifiers), the methods they may call, the
-- event types they may subscribe to, and who changed any of it.

CREATE TABLE members (
    member_id         text        PRIMARY KEY
                                  CHECK (member_id ~ '^UA/(GOV|COM|NGO)/[0-9]{8}/[a-z0-9][a-z0-9._-]{0,63}$'),
    name              text        NOT NULL CHECK (length(name) BETWEEN 1 AND 300),
    -- the identity service's system client the member authenticates as
    client_id         text        NOT NULL UNIQUE,
    status            text        NOT NULL CHECK (status IN ('active', 'suspended')),
    contact           text        NOT NULL DEFAULT '',
    -- 0: the gateway's default
    requests_per_second integer   NOT NULL DEFAULT 0 CHECK (requests_per_second >= 0),
    burst             integer     NOT NULL DEFAULT 0 CHECK (burst >= 0),
    message_bytes_max integer     NOT NULL DEFAULT 0 CHECK (message_bytes_max >= 0),
    log_mode          text        NOT NULL CHECK (log_mode IN ('metadata', 'full')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- A full method path, or `/<package>.<Service>/*` for every method of a service.
CREATE TABLE access_rights (
    member_id  text        NOT NULL REFERENCES members (member_id),
    method     text        NOT NULL CHECK (method ~ '^/[A-Za-z_][A-Za-z0-9_.]*\.[A-Za-z_][A-Za-z0-9_]*/([A-Za-z_][A-Za-z0-9_]*|\*)$'),
    granted_at timestamptz NOT NULL DEFAULT now(),
    granted_by text        NOT NULL,
    PRIMARY KEY (member_id, method)
);

-- `<service>.<entity>.<event>` types a member may subscribe to.
CREATE TABLE event_entitlements (
    member_id  text NOT NULL REFERENCES members (member_id),
    event_type text NOT NULL CHECK (event_type ~ '^[a-z0-9_]+(\.[a-z0-9_]+){2,}$'),
    PRIMARY KEY (member_id, event_type)
);

-- Every change to the above, with its author. Append-only.
CREATE TABLE admin_changes (
    change_id           uuid        PRIMARY KEY,
    changed_at          timestamptz NOT NULL DEFAULT now(),
    changed_by          text        NOT NULL,
    changed_by_edrpou   text        NOT NULL DEFAULT '',
    action              text        NOT NULL,
    member_id           text        NOT NULL,
    details             jsonb       NOT NULL
);

CREATE INDEX admin_changes_member ON admin_changes (member_id, change_id);

CREATE FUNCTION admin_changes_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'admin_changes is append-only';
END;
$$;

CREATE TRIGGER admin_changes_append_only BEFORE UPDATE OR DELETE ON admin_changes
    FOR EACH ROW EXECUTE FUNCTION admin_changes_append_only();

-- Other gateway replicas reload members and rights when they change.
CREATE FUNCTION directory_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gateway_directory_' || TG_TABLE_SCHEMA, '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER members_notify AFTER INSERT OR UPDATE OR DELETE ON members
    FOR EACH STATEMENT EXECUTE FUNCTION directory_notify();
CREATE TRIGGER access_rights_notify AFTER INSERT OR UPDATE OR DELETE ON access_rights
    FOR EACH STATEMENT EXECUTE FUNCTION directory_notify();
CREATE TRIGGER event_entitlements_notify AFTER INSERT OR UPDATE OR DELETE ON event_entitlements
    FOR EACH STATEMENT EXECUTE FUNCTION directory_notify();
