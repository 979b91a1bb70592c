-- Which member called which method and service, a batch at a time: each
-- pair of a batch's entries once, as `<member id> <method>` and `<member id>
-- <service>` (a member id holds no space; a service, `/package.Service/`,
-- ends with a slash, a method does not). A search by a member and a method
-- (or a service) found every batch that names both, and unpacked each
-- whole, even where the member never called that method: "did this member
-- ever call this method?" read the whole log to say no. Such a search now
-- unpacks only the batches where the pair is named. The pairs are not
-- indexed (the member's and the method's indexes find the batches, this
-- column only leaves some out), so the writer pays an array, not an index;
-- compressed with lz4, as the request ids are (0111).
--
-- `verify-log` checks each entry's pairs are named here, as it checks its
-- member and method (else searches would miss it).
--
-- Written here for the batches before, from their entries (every row of
-- the table is written again).
-- A batch's pairs from its entries (a JSON array of `message_log_entry`),
-- for the batches written before and for tools that write batches in SQL;
-- the gateway's writer makes them itself.
CREATE FUNCTION message_log_member_methods(entries json) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path FROM CURRENT AS $$
    SELECT coalesce(array_agg(DISTINCT pair), '{}')
    FROM json_populate_recordset(NULL::message_log_entry, entries) e,
         LATERAL (VALUES (e.member_id || ' ' || e.method),
                         (e.member_id || ' ' || message_log_service(e.method))) AS pairs(pair)
    WHERE pair IS NOT NULL
$$;

ALTER TABLE message_log_batches ADD COLUMN member_methods text[] COMPRESSION lz4;
UPDATE message_log_batches SET member_methods = message_log_member_methods(entries::json);
ALTER TABLE message_log_batches ALTER COLUMN member_methods SET NOT NULL;

-- The view as before, with the pairs last.
CREATE OR REPLACE VIEW message_log AS
SELECT b.node,
       e.sequence, e.request_id, e.member_id, e.caller, e.method, e.direction,
       timestamptz '1970-01-01 00:00:00+00' + e.started_at_us * interval '1 microsecond' AS started_at,
       e.duration_us,
       e.status_code, e.request_bytes, e.response_bytes,
       decode(e.request_sha256, 'hex') AS request_sha256,
       decode(e.response_sha256, 'hex') AS response_sha256,
       decode(e.request_body, 'base64') AS request_body,
       decode(e.response_body, 'base64') AS response_body,
       length(e.request_body) / 4 * 3 - (length(e.request_body) - length(rtrim(e.request_body, '=')))
           AS request_body_bytes,
       length(e.response_body) / 4 * 3 - (length(e.response_body) - length(rtrim(e.response_body, '=')))
           AS response_body_bytes,
       decode(e.hash, 'hex') AS hash,
       b.written_by,
       b.first_sequence AS batch_first_sequence, b.last_sequence AS batch_last_sequence,
       b.first_started_at AS batch_first_started_at, b.last_started_at AS batch_last_started_at,
       b.member_ids AS batch_member_ids, b.methods AS batch_methods, b.services AS batch_services,
       b.request_ids AS batch_request_ids,
       e.ordinality AS batch_position,
       b.member_methods AS batch_member_methods
FROM message_log_batches b
CROSS JOIN LATERAL json_populate_recordset(NULL::message_log_entry, b.entries::json) WITH ORDINALITY e;
