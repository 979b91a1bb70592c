-- The transaction that wrote each entry, so that the pages of one search
-- show the log as it stood at its first page: an entry written after it
-- (a long call's, which started before entries already read) is in no page
-- of that search rather than missed by some and not others. Entries written
-- before this migration have none and count as written before any search.
-- Not covered by the hash chain: it decides only what a search shows.
ALTER TABLE message_log ADD COLUMN written_by xid8;
ALTER TABLE message_log ALTER COLUMN written_by SET DEFAULT pg_current_xact_id();
