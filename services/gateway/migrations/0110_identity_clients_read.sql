-- A client's state may also come from identity's list of its system clients
-- (`ListSystemClients`), which the gateway reads at intervals to learn of the
-- changes whose events it has not had (a stream rebuilt without them, or
-- NATS away while identity is not): such a row names no event.
ALTER TABLE identity_clients ALTER COLUMN event_id DROP NOT NULL;
