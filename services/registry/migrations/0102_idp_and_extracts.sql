-- Internally displaced persons, their e-certificates and shared copies, and
-- the register's extracts.

CREATE TABLE idp_registrations (
    id                    uuid        PRIMARY KEY,
    person_id             uuid        NOT NULL REFERENCES persons (id),
    family_member_ids     uuid[]      NOT NULL DEFAULT '{}',
    origin_territory      text        NOT NULL,
    current_territory     text        NOT NULL,
    current_address       text        NOT NULL DEFAULT '',
    registered_on         date        NOT NULL,
    registered_by         text        NOT NULL CHECK (registered_by ~ '^[0-9]{8}$'),
    status                text        NOT NULL CHECK (status IN ('registered', 'deregistered')),
    deregistration_reason text,
    deregistered_on       date,
    recorded_by           text        NOT NULL,
    recorded_at           timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'deregistered') = (deregistered_on IS NOT NULL))
);

-- A person is registered at most once at a time.
CREATE UNIQUE INDEX idp_registrations_one_open ON idp_registrations (person_id) WHERE status = 'registered';

CREATE SEQUENCE idp_certificate_numbers;

CREATE TABLE idp_certificates (
    id              uuid        PRIMARY KEY,
    number          text        NOT NULL UNIQUE,
    registration_id uuid        NOT NULL REFERENCES idp_registrations (id),
    issued_on       date        NOT NULL,
    -- 16 digits, the last a Luhn check digit
    numeric_code    text        NOT NULL UNIQUE CHECK (numeric_code ~ '^[0-9]{16}$'),
    content         jsonb       NOT NULL,
    state           text        NOT NULL CHECK (state IN ('valid', 'revoked', 'superseded')),
    state_reason    text        NOT NULL DEFAULT '',
    issued_by       text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX idp_certificates_one_valid ON idp_certificates (registration_id) WHERE state = 'valid';

CREATE TABLE share_requests (
    id                     uuid        PRIMARY KEY,
    person_id              uuid        NOT NULL REFERENCES persons (id),
    organization_client_id text        NOT NULL,
    organization_edrpou    text,
    documents              text[]      NOT NULL,
    purpose                text        NOT NULL,
    status                 text        NOT NULL CHECK (status IN ('pending', 'approved', 'refused', 'delivered')),
    created_at             timestamptz NOT NULL DEFAULT now(),
    decided_at             timestamptz,
    delivered_at           timestamptz,
    pdf_sha256             text
);

CREATE INDEX share_requests_person ON share_requests (person_id, created_at);

CREATE SEQUENCE extract_numbers;

CREATE TABLE extracts (
    number       text        PRIMARY KEY,
    person_id    uuid        NOT NULL REFERENCES persons (id),
    generated_at timestamptz NOT NULL,
    json_sha256  text        NOT NULL,
    requested_by text        NOT NULL,
    purpose      text        NOT NULL
);
