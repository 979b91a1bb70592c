-- The message log, one row a batch: the writer's batch of entries (one
-- transaction) is stored as one row, its entries packed as a JSON array in
-- `entries`, with what searches look for (members, methods, services,
-- request ids, the time span) beside them in columns of their own, indexed
-- once a batch rather than once an entry. An entry row costs PostgreSQL
-- a heap tuple and five index entries; a batch of hundreds costs one and
-- a few. `message_log` stays, as a view of the entries one row each.
--
-- The hash chain covers the entries only. The columns beside them decide
-- what a search finds; `verify-log` checks each entry against them (an
-- entry its batch's columns do not name would be hidden from searches).

-- No entry is written while the entries move: a gateway of the version
-- before, still writing, waits here, then finds no table to write to (its
-- calls are refused, as when the log cannot be written), so every gateway
-- node is to be stopped, then started at this version.
LOCK TABLE message_log IN ACCESS EXCLUSIVE MODE;

CREATE TYPE message_log_entry AS (
    sequence        bigint,
    request_id      text,
    member_id       text,
    caller          text,
    method          text,
    direction       text,
    started_at_us   bigint,  -- microseconds since 1970-01-01 UTC
    duration_us     bigint,
    status_code     integer,
    request_bytes   bigint,
    response_bytes  bigint,
    request_sha256  text,  -- hexadecimal
    response_sha256 text,  -- hexadecimal
    request_body    text,  -- base64, or null when not kept
    response_body   text,  -- base64, or null when not kept
    hash            text   -- hexadecimal
);

-- A method path's service, `/package.Service/` (its first two segments), as
-- a search names it; null for a path without one.
CREATE FUNCTION message_log_service(method text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT substring(method FROM '^(/[^/]*/)') $$;

CREATE TABLE message_log_batches (
    node             text        NOT NULL,
    first_sequence   bigint      NOT NULL CHECK (first_sequence >= 1),
    last_sequence    bigint      NOT NULL CHECK (last_sequence >= first_sequence),
    -- The earliest and latest start of its entries' exchanges.
    first_started_at timestamptz NOT NULL,
    last_started_at  timestamptz NOT NULL CHECK (last_started_at >= first_started_at),
    -- Each once.
    member_ids       text[]      NOT NULL,
    methods          text[]      NOT NULL,
    -- The methods' services, as `/package.Service/` (a method path's first
    -- two segments).
    services         text[]      NOT NULL,
    -- The entries' request ids, in entry order.
    request_ids      text[]      NOT NULL,
    -- A JSON array of `message_log_entry` objects in sequence order. Kept as
    -- text: PostgreSQL parses it when it is read, not when it is written.
    entries          text        COMPRESSION lz4 NOT NULL,
    -- The transaction that wrote the batch (see 0107).
    written_by       xid8        DEFAULT pg_current_xact_id(),
    PRIMARY KEY (node, first_sequence)
);

CREATE UNIQUE INDEX message_log_batches_last ON message_log_batches (node, last_sequence);
CREATE INDEX message_log_batches_members ON message_log_batches USING gin (member_ids);
CREATE INDEX message_log_batches_methods ON message_log_batches USING gin (methods);
CREATE INDEX message_log_batches_services ON message_log_batches USING gin (services);
CREATE INDEX message_log_batches_requests ON message_log_batches USING gin (request_ids);
CREATE INDEX message_log_batches_time ON message_log_batches
    USING gist (tstzrange(first_started_at, last_started_at, '[]'));
-- A search reads batches in the order they start.
CREATE INDEX message_log_batches_start ON message_log_batches (first_started_at);
-- The longest span: a search after a time reads the batches that start no
-- earlier than that time less it.
CREATE INDEX message_log_batches_span ON message_log_batches ((last_started_at - first_started_at));

-- The entries written so far, a batch for each transaction that wrote them
-- (those from before 0107, which did not record it, cut every 1,000 entries
-- and every 256 MiB of kept bodies, so that no batch nears the 1 GB a value
-- may hold).
INSERT INTO message_log_batches (node, first_sequence, last_sequence, first_started_at, last_started_at,
                                 member_ids, methods, services, request_ids, entries, written_by)
SELECT node, min(sequence), max(sequence), min(started_at), max(started_at),
       array_agg(DISTINCT member_id), array_agg(DISTINCT method),
       coalesce(array_agg(DISTINCT message_log_service(method))
                    FILTER (WHERE message_log_service(method) IS NOT NULL), '{}'),
       array_agg(request_id ORDER BY sequence),
       json_agg(json_build_object(
           'sequence', sequence, 'request_id', request_id, 'member_id', member_id, 'caller', caller,
           'method', method, 'direction', direction, 'started_at_us', (extract(epoch FROM started_at) * 1000000)::bigint, 'duration_us', duration_us,
           'status_code', status_code, 'request_bytes', request_bytes, 'response_bytes', response_bytes,
           'request_sha256', encode(request_sha256, 'hex'), 'response_sha256', encode(response_sha256, 'hex'),
           'request_body', translate(encode(request_body, 'base64'), E'\n', ''),
           'response_body', translate(encode(response_body, 'base64'), E'\n', ''),
           'hash', encode(hash, 'hex')) ORDER BY sequence)::text,
       written_by
FROM (
    SELECT *, sum(coalesce(octet_length(request_body), 0) + coalesce(octet_length(response_body), 0))
                  OVER (PARTITION BY node ORDER BY sequence) AS bodies_before
    FROM message_log
) entries
GROUP BY node, written_by,
         CASE WHEN written_by IS NULL THEN (sequence - 1) / 1000 END,
         CASE WHEN written_by IS NULL THEN bodies_before / (256 * 1024 * 1024) END;

DROP TABLE message_log;

-- The entries one row each, with their batch's columns (`batch_…`) for
-- queries that narrow the batches first, and their place in it.
CREATE VIEW message_log AS
SELECT b.node,
       e.sequence, e.request_id, e.member_id, e.caller, e.method, e.direction,
       timestamptz '1970-01-01 00:00:00+00' + e.started_at_us * interval '1 microsecond' AS started_at,
       e.duration_us,
       e.status_code, e.request_bytes, e.response_bytes,
       decode(e.request_sha256, 'hex') AS request_sha256,
       decode(e.response_sha256, 'hex') AS response_sha256,
       decode(e.request_body, 'base64') AS request_body,
       decode(e.response_body, 'base64') AS response_body,
       -- The bodies' sizes, without decoding them.
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
       e.ordinality AS batch_position
FROM message_log_batches b
CROSS JOIN LATERAL json_populate_recordset(NULL::message_log_entry, b.entries::json) WITH ORDINALITY e;
