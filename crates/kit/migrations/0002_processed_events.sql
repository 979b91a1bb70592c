-- Events a consumer of this service has handled, by event id: written in the
-- same transaction as the handler's changes, so a redelivered event is
-- recognised and acknowledged without being handled twice.
CREATE TABLE processed_events (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    event_type   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
