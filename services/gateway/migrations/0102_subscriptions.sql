-- Members' event subscriptions; each event type of a subscription is read
-- through its own durable JetStream consumer (one filter subject each works
-- on every NATS version the project supports).
CREATE TABLE subscriptions (
    subscription_id uuid        PRIMARY KEY,
    member_id       text        NOT NULL REFERENCES members (member_id),
    event_types     text[]      NOT NULL CHECK (cardinality(event_types) BETWEEN 1 AND 50),
    created_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);

CREATE INDEX subscriptions_member ON subscriptions (member_id) WHERE deleted_at IS NULL;
