-- Test support, not a migration: makes the message log's view writable one
-- entry at a time, as someone who can write the gateway's tables, and knows
-- how batches are kept, could edit the entries. Each change keeps its batch's
-- columns (members, methods, time span, ...) true to its entries, so the
-- chain, not those columns, has to show it. Installed by the API tests'
-- harness.

CREATE FUNCTION gateway.tamper_entry_json(entry gateway.message_log) RETURNS json
LANGUAGE sql IMMUTABLE AS $$
    SELECT json_build_object(
        'sequence', entry.sequence, 'request_id', entry.request_id, 'member_id', entry.member_id,
        'caller', entry.caller, 'method', entry.method, 'direction', entry.direction,
        'started_at_us', (extract(epoch FROM entry.started_at) * 1000000)::bigint,
        'duration_us', entry.duration_us, 'status_code', entry.status_code,
        'request_bytes', entry.request_bytes, 'response_bytes', entry.response_bytes,
        'request_sha256', encode(entry.request_sha256, 'hex'), 'response_sha256', encode(entry.response_sha256, 'hex'),
        'request_body', translate(encode(entry.request_body, 'base64'), E'\n', ''),
        'response_body', translate(encode(entry.response_body, 'base64'), E'\n', ''),
        'hash', encode(entry.hash, 'hex'))
$$;

-- Rewrites the batch of `node` starting at `first` with `entries` (a JSON
-- array; the batch goes when it is empty), its columns made from them.
CREATE FUNCTION gateway.tamper_rewrite(batch_node text, first bigint, entries json, written xid8) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM gateway.message_log_batches WHERE node = batch_node AND first_sequence = first;
    IF json_array_length(entries) > 0 THEN
        INSERT INTO gateway.message_log_batches (node, first_sequence, last_sequence, first_started_at, last_started_at,
                                                 member_ids, methods, services, request_ids, entries, written_by,
                                                 member_methods)
        SELECT batch_node, min(e.sequence), max(e.sequence),
               min(timestamptz '1970-01-01 00:00:00+00' + e.started_at_us * interval '1 microsecond'),
               max(timestamptz '1970-01-01 00:00:00+00' + e.started_at_us * interval '1 microsecond'),
               array_agg(DISTINCT e.member_id), array_agg(DISTINCT e.method),
               coalesce(array_agg(DISTINCT gateway.message_log_service(e.method))
                            FILTER (WHERE gateway.message_log_service(e.method) IS NOT NULL), '{}'),
               array_agg(e.request_id ORDER BY e.sequence), entries::text, written,
               gateway.message_log_member_methods(entries)
        FROM json_populate_recordset(NULL::gateway.message_log_entry, entries) e;
    END IF;
END;
$$;

CREATE FUNCTION gateway.tamper_message_log() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    batch gateway.message_log_batches;
    kept json;
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- A batch of its own.
        PERFORM gateway.tamper_rewrite(NEW.node, NEW.sequence, json_build_array(gateway.tamper_entry_json(NEW)),
                                       coalesce(NEW.written_by, pg_current_xact_id()));
        RETURN NEW;
    END IF;
    -- The batch that holds it now (an earlier row of the same statement may
    -- have changed where that batch starts).
    SELECT * INTO batch FROM gateway.message_log_batches
        WHERE node = OLD.node AND OLD.sequence BETWEEN first_sequence AND last_sequence
        ORDER BY first_sequence LIMIT 1;
    SELECT coalesce(json_agg(CASE WHEN (e ->> 'sequence')::bigint = OLD.sequence THEN gateway.tamper_entry_json(NEW)
                                  ELSE e END ORDER BY position), '[]')
        INTO kept
        FROM json_array_elements(batch.entries::json) WITH ORDINALITY AS t(e, position)
        WHERE TG_OP = 'UPDATE' OR (e ->> 'sequence')::bigint <> OLD.sequence;
    IF TG_OP = 'UPDATE' THEN
        PERFORM gateway.tamper_rewrite(batch.node, batch.first_sequence, kept, NEW.written_by);
        RETURN NEW;
    END IF;
    PERFORM gateway.tamper_rewrite(batch.node, batch.first_sequence, kept, batch.written_by);
    RETURN OLD;
END;
$$;

CREATE TRIGGER tamper_message_log INSTEAD OF INSERT OR UPDATE OR DELETE ON gateway.message_log
    FOR EACH ROW EXECUTE FUNCTION gateway.tamper_message_log();
