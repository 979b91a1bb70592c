-- Administrative changes are read in the order they commit: each takes the
-- next `position` holding a transaction lock the next change waits for, so
-- a reader paging through them never passes a change that commits later
-- (as paging by `change_id`, a time-ordered id taken before the commit,
-- could). The changes made before keep their `change_id` order.
ALTER TABLE admin_changes DISABLE TRIGGER admin_changes_append_only;
ALTER TABLE admin_changes ADD COLUMN position bigint;
UPDATE admin_changes SET position = ordered.place
FROM (SELECT change_id, row_number() OVER (ORDER BY change_id) AS place FROM admin_changes) ordered
WHERE admin_changes.change_id = ordered.change_id;
ALTER TABLE admin_changes ENABLE TRIGGER admin_changes_append_only;

ALTER TABLE admin_changes
    ALTER COLUMN position SET NOT NULL,
    ALTER COLUMN position ADD GENERATED ALWAYS AS IDENTITY,
    ADD UNIQUE (position);
SELECT setval(pg_get_serial_sequence('admin_changes', 'position'), coalesce(max(position), 0) + 1, false)
FROM admin_changes;

DROP INDEX admin_changes_member;
CREATE INDEX admin_changes_member ON admin_changes (member_id, position);
