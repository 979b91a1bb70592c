//! Events between services: CloudEvents in binary mode over NATS JetStream.
//!
//! * A service writes an event with [`outbox::enqueue`] in the same database
//!   transaction as the change it announces.
//! * [`relay::OutboxRelay`] publishes pending rows to JetStream with
//!   `Nats-Msg-Id` set to the event id and marks them published only after
//!   the JetStream acknowledgement. When NATS is down it keeps the rows and
//!   retries with backoff; nothing is dropped.
//! * [`stream::ensure_stream`] provisions the stream, idempotently.
//! * [`consumer::EventConsumer`] runs a durable pull consumer with explicit
//!   acknowledgements and handles each event id once, recording it in the
//!   consumer's `processed_events` table in the handler's transaction.

pub mod cloudevent;
pub mod consumer;
pub mod outbox;
pub mod relay;
pub mod stream;

pub use cloudevent::{EventType, ReceivedEvent};
pub use consumer::{ConsumerSettings, EventConsumer, EventHandler, HandleError};
pub use relay::OutboxRelay;
