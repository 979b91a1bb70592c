-- Sign-in: challenges, failures (for throttling and audit), sessions and
-- their rotating refresh tokens, client assertion replay protection, and the
-- token signing keys.

CREATE TABLE login_challenges (
    id         uuid        PRIMARY KEY,
    nonce      bytea       NOT NULL CHECK (octet_length(nonce) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

CREATE INDEX login_challenges_expires ON login_challenges (expires_at);

CREATE TABLE login_failures (
    id                      bigserial   PRIMARY KEY,
    occurred_at             timestamptz NOT NULL DEFAULT now(),
    account_id              uuid,
    certificate_fingerprint text,
    reason                  text        NOT NULL
);

CREATE INDEX login_failures_account ON login_failures (account_id, occurred_at) WHERE account_id IS NOT NULL;
CREATE INDEX login_failures_certificate ON login_failures (certificate_fingerprint, occurred_at)
    WHERE certificate_fingerprint IS NOT NULL;

CREATE TABLE sessions (
    id             uuid        PRIMARY KEY,
    account_id     uuid        NOT NULL REFERENCES accounts (id),
    certificate_id uuid        NOT NULL REFERENCES certificates (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- the session ends at the latest here, whatever its refresh tokens say
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoke_reason  text
);

CREATE INDEX sessions_account ON sessions (account_id) WHERE revoked_at IS NULL;
CREATE INDEX sessions_certificate ON sessions (certificate_id) WHERE revoked_at IS NULL;

-- Refresh tokens are stored as SHA-256 hashes only. One family per session:
-- using a token marks it used; presenting a used one again revokes the session.
CREATE TABLE refresh_tokens (
    token_hash bytea       PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    session_id uuid        NOT NULL REFERENCES sessions (id),
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE client_assertions (
    client_id  text        NOT NULL,
    jti        text        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);

CREATE TABLE signing_keys (
    kid                text        PRIMARY KEY,
    public_jwk         jsonb       NOT NULL,
    -- AES-256-GCM under the master key: 12-byte nonce, then ciphertext and tag
    sealed_private_key bytea       NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    -- stops signing here
    retired_at         timestamptz,
    -- leaves the published key set here
    publish_until      timestamptz
);

CREATE UNIQUE INDEX signing_keys_one_in_use ON signing_keys ((true)) WHERE retired_at IS NULL;
