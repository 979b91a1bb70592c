//! Publishes the outbox to JetStream.
//!
//! Delivery is at least once. One relay per schema publishes at a time (a
//! transaction-level advisory lock; other replicas wait their turn), taking
//! pending rows in id order, publishing each with `Nats-Msg-Id` = event id,
//! and, in the same transaction, marking as published the leading run of rows
//! JetStream acknowledged. A row whose publish failed, and every row after it,
//! stays pending and is retried after a backoff.
//!
//! Order: events reach the stream in outbox order, except when an
//! acknowledgement is lost mid-batch: the rows after it may already be stored
//! when the unacknowledged one is sent again. Consumers must not depend on
//! strict order between events; payloads carry versions where order matters.
//! A crash between the acknowledgement and the commit publishes a row again;
//! JetStream drops the copy within the duplicate window and consumers drop it
//! by event id after that.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage};
use chrono::{DateTime, SecondsFormat, Utc};
use esocial_kit::config::EventSettings;
use opentelemetry::metrics::Counter;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::cloudevent::{CONTENT_TYPE, SPEC_VERSION, header};

/// Rows published per transaction.
pub const BATCH_SIZE_MAX: i64 = 256;
/// The longest pause between checks when no notification arrives.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Stream(String),
    #[error("publishing event {event_id} failed: {reason}")]
    Publish { event_id: Uuid, reason: String },
}

#[derive(sqlx::FromRow)]
struct PendingEvent {
    id: i64,
    event_id: Uuid,
    subject: String,
    event_type: String,
    source: String,
    subject_id: Option<String>,
    occurred_at: DateTime<Utc>,
    data_schema: String,
    payload: Vec<u8>,
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl PendingEvent {
    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, self.event_id.to_string());
        headers.insert(header::SPEC_VERSION, SPEC_VERSION);
        headers.insert(header::ID, self.event_id.to_string());
        headers.insert(header::TYPE, self.event_type.as_str());
        headers.insert(header::SOURCE, self.source.as_str());
        headers.insert(header::TIME, self.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true));
        headers.insert(header::DATA_SCHEMA, self.data_schema.as_str());
        headers.insert(header::CONTENT_TYPE, CONTENT_TYPE);
        if let Some(subject_id) = &self.subject_id {
            headers.insert(header::SUBJECT, subject_id.as_str());
        }
        if let Some(traceparent) = &self.traceparent {
            headers.insert(header::TRACEPARENT, traceparent.as_str());
        }
        if let Some(tracestate) = &self.tracestate {
            headers.insert(header::TRACESTATE, tracestate.as_str());
        }
        headers
    }
}

fn counters() -> &'static (Counter<u64>, Counter<u64>) {
    static COUNTERS: OnceLock<(Counter<u64>, Counter<u64>)> = OnceLock::new();
    COUNTERS.get_or_init(|| {
        let meter = opentelemetry::global::meter("esocial");
        (
            meter.u64_counter("esocial.outbox.published").with_description("events acknowledged by JetStream").build(),
            meter.u64_counter("esocial.outbox.publish_failures").with_description("failed publish attempts").build(),
        )
    })
}

/// The outbox relay of one service schema.
#[derive(Debug, Clone)]
pub struct OutboxRelay {
    pool: PgPool,
    jetstream: jetstream::Context,
    schema: String,
    events: EventSettings,
    batch_size: i64,
}

impl OutboxRelay {
    /// `pool` must be the service's pool (its search path reaches the outbox).
    pub fn new(pool: PgPool, jetstream: jetstream::Context, schema: &str, events: &EventSettings) -> Self {
        Self { pool, jetstream, schema: schema.to_owned(), events: events.clone(), batch_size: BATCH_SIZE_MAX }
    }

    /// Relays until `shutdown` completes, then returns (rows in flight stay
    /// pending and are sent by the next start). Provisions the stream first,
    /// retrying while NATS is unreachable.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut listener: Option<PgListener> = None;
        let mut backoff = BACKOFF_MIN;
        let mut stream_ready = false;
        loop {
            let outcome = tokio::select! {
                () = &mut shutdown => return,
                outcome = self.provision_then_publish(&mut stream_ready) => outcome,
            };
            match outcome {
                Ok(count) if i64::try_from(count).unwrap_or(0) >= self.batch_size => {
                    backoff = BACKOFF_MIN;
                    continue;
                }
                Ok(_) => backoff = BACKOFF_MIN,
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis(), schema = %self.schema, "outbox relay: will retry");
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            }
            // Idle: wait for a notification of a new row, or poll.
            if listener.is_none() {
                listener = self.listen().await;
            }
            let notified = async {
                match listener.as_mut() {
                    Some(active) => active.recv().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                received = notified => if !received { listener = None },
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }

    async fn provision_then_publish(&self, stream_ready: &mut bool) -> Result<usize, RelayError> {
        if !*stream_ready {
            crate::stream::ensure_stream(&self.jetstream, &self.events)
                .await
                .map_err(|error| RelayError::Stream(format!("{error:#}")))?;
            *stream_ready = true;
        }
        let published = self.publish_pending().await;
        if matches!(published, Err(RelayError::Publish { .. })) {
            // The stream may be gone (deleted, lost with a server): provision
            // it again before the next attempt.
            *stream_ready = false;
        }
        published
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await.ok()?;
        listener.listen(&format!("outbox_{}", self.schema)).await.ok()?;
        Some(listener)
    }

    /// Publishes one batch of pending events; returns how many JetStream
    /// acknowledged. Fails (after recording what was acknowledged) when a
    /// publish fails.
    pub async fn publish_pending(&self) -> Result<usize, RelayError> {
        let mut transaction = self.pool.begin().await?;
        // One publisher per schema at a time keeps the stream in outbox order.
        let ours: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('esocial.outbox.' || current_schema()))")
                .fetch_one(&mut *transaction)
                .await?;
        if !ours {
            transaction.commit().await?;
            return Ok(0);
        }
        let pending: Vec<PendingEvent> = sqlx::query_as(
            "SELECT id, event_id, subject, event_type, source, subject_id, occurred_at, data_schema, payload,
                    traceparent, tracestate
             FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(self.batch_size)
        .fetch_all(&mut *transaction)
        .await?;
        if pending.is_empty() {
            transaction.commit().await?;
            return Ok(0);
        }

        // Send everything first, then collect the acknowledgements in order.
        let mut acknowledgements = Vec::with_capacity(pending.len());
        let mut failure: Option<(usize, String)> = None;
        for (index, event) in pending.iter().enumerate() {
            let message = PublishMessage::build().payload(event.payload.clone().into()).headers(event.headers());
            match self
                .jetstream
                .send_publish(format!("{}.{}", self.events.subject_prefix, event.subject), message)
                .await
            {
                Ok(acknowledgement) => acknowledgements.push(acknowledgement),
                Err(error) => {
                    failure = Some((index, error.to_string()));
                    break;
                }
            }
        }
        let mut acknowledged = 0usize;
        for acknowledgement in acknowledgements {
            match acknowledgement.await {
                Ok(ack) => {
                    if ack.duplicate {
                        tracing::debug!(event_id = %pending[acknowledged].event_id, "JetStream already had this event");
                    }
                    acknowledged += 1;
                }
                Err(error) => {
                    // Earlier than any send failure: only sent rows have acks.
                    failure = Some((acknowledged, error.to_string()));
                    break;
                }
            }
        }

        let published_ids: Vec<i64> = pending[..acknowledged].iter().map(|event| event.id).collect();
        if !published_ids.is_empty() {
            sqlx::query(
                "UPDATE outbox SET published_at = now(), publish_attempts = publish_attempts + 1, last_error = NULL
                 WHERE id = ANY($1)",
            )
            .bind(&published_ids)
            .execute(&mut *transaction)
            .await?;
        }
        if let Some((index, reason)) = &failure {
            sqlx::query("UPDATE outbox SET publish_attempts = publish_attempts + 1, last_error = $2 WHERE id = $1")
                .bind(pending[*index].id)
                .bind(reason)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;

        let (published_counter, failure_counter) = counters();
        published_counter.add(acknowledged as u64, &[]);
        match failure {
            None => Ok(acknowledged),
            Some((index, reason)) => {
                failure_counter.add(1, &[]);
                Err(RelayError::Publish { event_id: pending[index].event_id, reason })
            }
        }
    }
}
