-- What identity last said of each system client, from its
-- `identity.system_client.*` events: a member whose client identity
-- deactivated is turned away at once, its open streams included, rather
-- than served until the tokens it holds expire. A change is kept only over
-- an older one, by the client's version at identity (which follows the
-- order identity's changes committed), then by the event's time (events
-- from before identity counted versions carry 0): events may come again,
-- or out of order.
CREATE TABLE identity_clients (
    client_id  text        PRIMARY KEY,
    active     boolean     NOT NULL,
    version    bigint      NOT NULL CHECK (version >= 0),
    changed_at timestamptz NOT NULL,
    event_id   uuid        NOT NULL
);

-- The directory is read again only when what it uses changes: a client
-- deactivated or active again, not every key rotation or redelivery.
CREATE TRIGGER identity_clients_inserted AFTER INSERT ON identity_clients
    FOR EACH ROW WHEN (NOT NEW.active) EXECUTE FUNCTION directory_notify();
CREATE TRIGGER identity_clients_updated AFTER UPDATE ON identity_clients
    FOR EACH ROW WHEN (OLD.active IS DISTINCT FROM NEW.active) EXECUTE FUNCTION directory_notify();
CREATE TRIGGER identity_clients_deleted AFTER DELETE ON identity_clients
    FOR EACH ROW WHEN (NOT OLD.active) EXECUTE FUNCTION directory_notify();
