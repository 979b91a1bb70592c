-- Each change of a system client counts one more: 1 when registered. The
-- row's lock orders the changes, so the version follows the order they
-- committed, which the times of their events (taken when each transaction
-- started) need not. Consumers of the `identity.system_client.*` events
-- (the gateway) keep the state of the highest version.
ALTER TABLE system_clients ADD COLUMN version bigint NOT NULL DEFAULT 1 CHECK (version >= 1);
