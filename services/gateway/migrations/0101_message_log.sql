-- The message log: one hash chain per gateway node. Entry n's hash is
-- SHA-256 over entry n-1's hash and entry n's fields (see message_log.rs),
-- so changing, removing or inserting an entry breaks every later hash; the
-- chain head is signed at intervals (log_checkpoints) with the gateway key.
CREATE TABLE message_log (
    node            text        NOT NULL,
    sequence        bigint      NOT NULL CHECK (sequence >= 1),
    request_id      text        NOT NULL,
    member_id       text        NOT NULL,
    caller          text        NOT NULL,
    method          text        NOT NULL,
    direction       text        NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    started_at      timestamptz NOT NULL,
    duration_us     bigint      NOT NULL CHECK (duration_us >= 0),
    status_code     integer     NOT NULL,
    request_bytes   bigint      NOT NULL CHECK (request_bytes >= 0),
    response_bytes  bigint      NOT NULL CHECK (response_bytes >= 0),
    request_sha256  bytea       NOT NULL,
    response_sha256 bytea       NOT NULL,
    request_body    bytea,
    response_body   bytea,
    hash            bytea       NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (node, sequence)
);

CREATE INDEX message_log_member_time ON message_log (member_id, started_at);
CREATE INDEX message_log_method_time ON message_log (method, started_at);
-- Entries come in time order: a BRIN index answers time ranges at almost no
-- cost per insert.
CREATE INDEX message_log_time ON message_log USING brin (started_at);
CREATE INDEX message_log_request ON message_log (request_id);

CREATE TABLE log_checkpoints (
    node       text        NOT NULL,
    sequence   bigint      NOT NULL CHECK (sequence >= 1),
    hash       bytea       NOT NULL CHECK (length(hash) = 32),
    signed_at  timestamptz NOT NULL,
    key_id     text        NOT NULL,
    -- Ed25519 over checkpoint_message(node, sequence, hash, signed_at)
    signature  bytea       NOT NULL CHECK (length(signature) = 64),
    PRIMARY KEY (node, sequence)
);
