-- The exchange gateway's token exchange (RFC 8693).

-- A client may hold the `gateway` scope: the right to exchange a member
-- system's token for an internal one. Like `service`, only systems have it.
ALTER TABLE system_clients DROP CONSTRAINT system_clients_scopes_of_systems;
ALTER TABLE system_clients
    ADD CONSTRAINT system_clients_scopes_of_systems
    CHECK (scopes <@ ARRAY['service', 'integrator', 'gateway']::text[]);

-- The services a client's tokens are good for; empty: every service. A
-- member system that comes in only through the gateway has the gateway's
-- audience alone.
ALTER TABLE system_clients ADD COLUMN audiences text[] NOT NULL DEFAULT '{}';
