-- What identity last said of each system client, from its
-- `identity.system_client.*` events: a member whose client identity
-- deactivated is turned away at once, its open streams included, rather
-- than served until the tokens it holds expire. A change is kept only over
-- an older one (events may come again, or out of order after a retry).
CREATE TABLE identity_clients (
    client_id  text        PRIMARY KEY,
    active     boolean     NOT NULL,
    changed_at timestamptz NOT NULL,
    event_id   uuid        NOT NULL
);

CREATE TRIGGER identity_clients_notify AFTER INSERT OR UPDATE OR DELETE ON identity_clients
    FOR EACH STATEMENT EXECUTE FUNCTION directory_notify();
