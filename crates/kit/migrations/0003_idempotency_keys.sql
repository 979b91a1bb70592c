-- Client-chosen request ids of mutating calls, with a fingerprint of the
-- request and the response given, written in the same transaction as the
-- change. A retry with the same id and content gets the stored response; the
-- same id with other content is refused.
CREATE TABLE idempotency_keys (
    request_id          uuid        PRIMARY KEY,
    method              text        NOT NULL,
    request_fingerprint bytea       NOT NULL CHECK (octet_length(request_fingerprint) = 32),
    response            bytea       NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
