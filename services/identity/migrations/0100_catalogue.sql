-- The account catalogue: organizations, the accounts of people who operate
-- the system, their qualified certificates, and system clients.

CREATE TABLE organizations (
    id         uuid        PRIMARY KEY,
    edrpou     text        NOT NULL UNIQUE CHECK (edrpou ~ '^[0-9]{8}$'),
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 500),
    kind       text        NOT NULL CHECK (kind IN ('social_protection_body', 'administrative_service_centre', 'provider', 'ministry_unit', 'state_system')),
    territory  text        NOT NULL CHECK (territory ~ '^UA[0-9]{17}$'),
    active     boolean     NOT NULL DEFAULT true,
    version    integer     NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text        NOT NULL
);

CREATE TABLE accounts (
    id              uuid        PRIMARY KEY,
    rnokpp          text        NOT NULL UNIQUE CHECK (rnokpp ~ '^[0-9]{10}$'),
    full_name       text        NOT NULL CHECK (length(full_name) BETWEEN 1 AND 300),
    organization_id uuid        NOT NULL REFERENCES organizations (id),
    position        text        NOT NULL DEFAULT '',
    roles           text[]      NOT NULL DEFAULT '{}',
    territories     text[]      NOT NULL DEFAULT '{}',
    status          text        NOT NULL CHECK (status IN ('active', 'suspended')),
    version         integer     NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text        NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      text        NOT NULL
);

CREATE INDEX accounts_organization ON accounts (organization_id);

CREATE TABLE certificates (
    id                uuid        PRIMARY KEY,
    account_id        uuid        NOT NULL REFERENCES accounts (id),
    -- hex SHA-256 of the DER
    fingerprint       text        NOT NULL UNIQUE CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
    subject           text        NOT NULL,
    issuer            text        NOT NULL,
    serial_number     text        NOT NULL,
    not_before        timestamptz NOT NULL,
    not_after         timestamptz NOT NULL,
    der               bytea       NOT NULL,
    status            text        NOT NULL CHECK (status IN ('active', 'blocked', 'revoked')),
    status_reason     text        NOT NULL DEFAULT '',
    status_changed_at timestamptz NOT NULL DEFAULT now(),
    status_changed_by text        NOT NULL,
    replaces          uuid        REFERENCES certificates (id),
    registered_at     timestamptz NOT NULL DEFAULT now(),
    registered_by     text        NOT NULL
);

-- Renewal replaces: at most one active certificate per person.
CREATE UNIQUE INDEX certificates_one_active_per_account ON certificates (account_id) WHERE status = 'active';

CREATE TABLE system_clients (
    client_id  text        PRIMARY KEY CHECK (client_id ~ '^[a-z0-9][a-z0-9._-]{1,99}$'),
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 300),
    public_jwk jsonb       NOT NULL,
    scopes     text[]      NOT NULL DEFAULT '{}',
    active     boolean     NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text        NOT NULL
);

-- Who changed what (admin changes) and who read personal data, append-only.
CREATE TABLE audit_log (
    id            bigserial   PRIMARY KEY,
    occurred_at   timestamptz NOT NULL DEFAULT now(),
    actor         text        NOT NULL,
    actor_org     text,
    action        text        NOT NULL,
    target        text        NOT NULL,
    details       jsonb       NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_target ON audit_log (target, occurred_at);
