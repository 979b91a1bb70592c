-- When a member was given each event type: it gets only the events that
-- occurred while it held the entitlement, so one taken away and given again
-- does not bring the events of the time between. Entitlements given before
-- this column existed count from the start.
ALTER TABLE event_entitlements ADD COLUMN granted_at timestamptz NOT NULL DEFAULT 'epoch';
ALTER TABLE event_entitlements ALTER COLUMN granted_at SET DEFAULT now();
