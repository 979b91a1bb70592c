//! Durable consumers that handle each event once.
//!
//! For every message: read the CloudEvent attributes, then in one database
//! transaction record `(consumer, event id)` in `processed_events` and run
//! the handler; commit, then acknowledge. A redelivered or duplicated event
//! finds its id recorded and is acknowledged without running the handler
//! again. A handler asking for a retry (or a database that cannot be
//! reached) gets the message redelivered with a growing delay of up to about
//! a minute, without limit by default; a malformed message or a rejected
//! event is terminated (not redelivered) and logged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use esocial_kit::config::EventSettings;
use futures_util::StreamExt as _;
use sqlx::{PgConnection, PgPool};
use tracing::Instrument as _;

use crate::ReceivedEvent;
use crate::cloudevent::EventTraceContext;

/// What a handler wants done with an event it could not handle.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// A temporary problem: deliver it again later.
    #[error("retry: {0:#}")]
    Retry(anyhow::Error),
    /// The event can never be handled: stop delivering it.
    #[error("rejected: {0:#}")]
    Reject(anyhow::Error),
}

impl From<sqlx::Error> for HandleError {
    fn from(error: sqlx::Error) -> Self {
        HandleError::Retry(error.into())
    }
}

/// Handles events inside the transaction that records them as processed.
pub trait EventHandler: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        transaction: &'a mut PgConnection,
        event: &'a ReceivedEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), HandleError>> + Send + 'a>>;
}

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Durable consumer name, unique per consuming service and purpose.
    pub durable_name: String,
    /// Subject filter without the prefix, e.g. `classifier.>`.
    pub filter_subject: String,
    /// Deliveries before JetStream gives up on a message; -1 (the default):
    /// never. Temporary failures (a database outage) must not lose events,
    /// so only a handler's `Reject` stops redelivery.
    pub max_deliver: i64,
    /// How long a delivery may stay unacknowledged before redelivery.
    pub ack_wait: Duration,
}

impl ConsumerSettings {
    pub fn new(durable_name: impl Into<String>, filter_subject: impl Into<String>) -> Self {
        Self {
            durable_name: durable_name.into(),
            filter_subject: filter_subject.into(),
            max_deliver: -1,
            ack_wait: Duration::from_secs(30),
        }
    }
}

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Handled,
    Duplicate,
    Retrying,
    Terminated,
}

#[derive(Debug, Clone)]
pub struct EventConsumer {
    pool: PgPool,
    jetstream: jetstream::Context,
    events: EventSettings,
    settings: ConsumerSettings,
}

impl EventConsumer {
    pub fn new(
        pool: PgPool,
        jetstream: jetstream::Context,
        events: &EventSettings,
        settings: ConsumerSettings,
    ) -> Self {
        Self { pool, jetstream, events: events.clone(), settings }
    }

    async fn consumer(&self) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
        let stream = self.jetstream.get_stream(&self.events.stream_name).await?;
        let config = pull::Config {
            durable_name: Some(self.settings.durable_name.clone()),
            filter_subject: format!("{}.{}", self.events.subject_prefix, self.settings.filter_subject),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.settings.ack_wait,
            max_deliver: self.settings.max_deliver,
            max_ack_pending: 1024,
            ..pull::Config::default()
        };
        Ok(stream.get_or_create_consumer(&self.settings.durable_name, config).await?)
    }

    /// Consumes until `shutdown` completes. Reconnects with backoff when the
    /// message stream breaks.
    pub async fn run(self, handler: Arc<dyn EventHandler>, shutdown: impl Future<Output = ()> + Send) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = Duration::from_millis(200);
        loop {
            let messages = async { self.consumer().await?.messages().await.map_err(anyhow::Error::from) };
            let mut messages = tokio::select! {
                () = &mut shutdown => return,
                result = messages => match result {
                    Ok(messages) => messages,
                    Err(error) => {
                        tracing::warn!(%error, consumer = %self.settings.durable_name, "cannot open consumer; retrying");
                        tokio::select! {
                            () = &mut shutdown => return,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        continue;
                    }
                },
            };
            backoff = Duration::from_millis(200);
            loop {
                let next = tokio::select! {
                    () = &mut shutdown => return,
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(message)) => {
                        self.process(handler.as_ref(), &message).await;
                    }
                    Some(Err(error)) => {
                        tracing::debug!(%error, consumer = %self.settings.durable_name, "message stream error");
                    }
                    None => break,
                }
            }
        }
    }

    /// Handles one message and acknowledges it as its outcome requires.
    pub async fn process(&self, handler: &dyn EventHandler, message: &jetstream::Message) -> Outcome {
        let event = match ReceivedEvent::from_message(message) {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(%error, subject = %message.subject, consumer = %self.settings.durable_name, "malformed event terminated");
                let _ = message.ack_with(AckKind::Term).await;
                return Outcome::Terminated;
            }
        };
        let span = if esocial_kit::telemetry::exporting() {
            tracing::info_span!(
                "event",
                otel.name = %event.event_type,
                otel.kind = "consumer",
                event_id = %event.id,
                consumer = %self.settings.durable_name,
            )
        } else {
            // The exported span's name and kind mean nothing in a log line
            // (as in the kit's server layer): the logs get the event's type.
            tracing::info_span!(
                "event",
                event_type = %event.event_type,
                event_id = %event.id,
                consumer = %self.settings.durable_name,
            )
        };
        esocial_kit::telemetry::set_parent_from(&span, &EventTraceContext(&event));
        let outcome = self.handle(handler, &event).instrument(span.clone()).await;
        let _entered = span.enter();
        let acknowledgement = match &outcome {
            // `handle` reports only these two on success.
            Ok(_) => message.ack().await,
            Err(HandleError::Retry(error)) => {
                let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
                let delay = Duration::from_millis(200 * 2u64.pow(u32::try_from(delivered.clamp(1, 8)).unwrap_or(8)));
                tracing::warn!(
                    error = format!("{error:#}"),
                    delivered,
                    retry_in_ms = delay.as_millis(),
                    "event handling failed; will retry"
                );
                message.ack_with(AckKind::Nak(Some(delay))).await
            }
            Err(HandleError::Reject(error)) => {
                tracing::error!(error = format!("{error:#}"), "event rejected and terminated");
                message.ack_with(AckKind::Term).await
            }
        };
        if let Err(error) = acknowledgement {
            // The next delivery finds the event recorded and acknowledges it.
            tracing::warn!(%error, "acknowledgement failed");
        }
        match outcome {
            Ok(outcome) => outcome,
            Err(HandleError::Retry(_)) => Outcome::Retrying,
            Err(HandleError::Reject(_)) => Outcome::Terminated,
        }
    }

    async fn handle(&self, handler: &dyn EventHandler, event: &ReceivedEvent) -> Result<Outcome, HandleError> {
        let mut transaction = self.pool.begin().await?;
        let first_time = sqlx::query(
            "INSERT INTO processed_events (consumer, event_id, event_type) VALUES ($1, $2, $3)
             ON CONFLICT (consumer, event_id) DO NOTHING",
        )
        .bind(&self.settings.durable_name)
        .bind(event.id)
        .bind(&event.event_type)
        .execute(&mut *transaction)
        .await?
        .rows_affected()
            == 1;
        if !first_time {
            transaction.rollback().await?;
            tracing::debug!("duplicate event acknowledged without handling");
            return Ok(Outcome::Duplicate);
        }
        handler.handle(&mut transaction, event).await?;
        transaction.commit().await?;
        Ok(Outcome::Handled)
    }
}
