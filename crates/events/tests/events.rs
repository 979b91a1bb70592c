//! The outbox, relay and consumer against real PostgreSQL and NATS.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use esocial_events::consumer::Outcome;
use esocial_events::{
    ConsumerSettings, EventConsumer, EventHandler, EventType, HandleError, OutboxRelay, ReceivedEvent,
};
use esocial_kit::shutdown::Shutdown;
use esocial_testkit::{TestDatabase, TestEvents};
use sqlx::PgPool;

const SCHEMA: &str = "events_test";
const THING_HAPPENED: EventType =
    EventType { service: "testing", entity: "thing", event: "happened", payload: "google.protobuf.StringValue" };

struct Fixture {
    _database: TestDatabase,
    events: TestEvents,
    pool: PgPool,
    jetstream: async_nats::jetstream::Context,
}

async fn fixture() -> Fixture {
    let database = TestDatabase::create().await.expect("database");
    let pool = esocial_kit::db::pool(database.url(), SCHEMA, "events-test", 4).expect("pool");
    esocial_kit::db::migrate(&pool, SCHEMA, &sqlx::migrate::Migrator::with_migrations(Vec::new()))
        .await
        .expect("migrate");
    sqlx::query("CREATE TABLE handled (event_id uuid PRIMARY KEY, payload text NOT NULL)")
        .execute(&pool)
        .await
        .expect("table");
    let events = TestEvents::new();
    let jetstream = events.jetstream().await.expect("jetstream");
    esocial_events::stream::ensure_stream(&jetstream, &events.settings).await.expect("stream");
    Fixture { _database: database, events, pool, jetstream }
}

async fn enqueue(pool: &PgPool, text: &str) -> uuid::Uuid {
    let mut transaction = pool.begin().await.expect("begin");
    let id = esocial_events::outbox::enqueue(&mut transaction, &THING_HAPPENED, Some(text), &text.to_owned())
        .await
        .expect("enqueue");
    transaction.commit().await.expect("commit");
    id
}

/// Records each event's payload in `handled`; fails the first `failures` calls.
struct RecordingHandler {
    calls: AtomicUsize,
    failures: usize,
}

impl EventHandler for RecordingHandler {
    fn handle<'a>(
        &'a self,
        transaction: &'a mut sqlx::PgConnection,
        event: &'a ReceivedEvent,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), HandleError>> + Send + 'a>> {
        Box::pin(async move {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            let text: String = event.decode().map_err(|error| HandleError::Reject(error.into()))?;
            sqlx::query("INSERT INTO handled (event_id, payload) VALUES ($1, $2)")
                .bind(event.id)
                .bind(text)
                .execute(&mut *transaction)
                .await?;
            // Fails after writing: the write must be rolled back, or the next
            // attempt hits the primary key.
            if call < self.failures {
                return Err(HandleError::Retry(anyhow::anyhow!("temporary failure {call}")));
            }
            Ok(())
        })
    }
}

async fn handled(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT payload FROM handled ORDER BY payload").fetch_all(pool).await.expect("select")
}

async fn wait_until(condition: impl AsyncFn() -> bool) -> bool {
    for _ in 0..100 {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn provisioning_the_stream_twice_is_harmless() {
    let fixture = fixture().await;
    let again =
        esocial_events::stream::ensure_stream(&fixture.jetstream, &fixture.events.settings).await.expect("again");
    assert_eq!(again.config.subjects, [format!("{}.>", fixture.events.settings.subject_prefix)]);
    assert_eq!(again.config.storage, async_nats::jetstream::stream::StorageType::File);
    assert_eq!(again.config.duplicate_window, fixture.events.settings.duplicate_window);
}

#[tokio::test]
async fn the_relay_publishes_in_outbox_order_and_marks_rows_after_the_ack() {
    let fixture = fixture().await;
    let ids = [
        enqueue(&fixture.pool, "one").await,
        enqueue(&fixture.pool, "two").await,
        enqueue(&fixture.pool, "three").await,
    ];
    let relay = OutboxRelay::new(fixture.pool.clone(), fixture.jetstream.clone(), SCHEMA, &fixture.events.settings);
    assert_eq!(relay.publish_pending().await.expect("published"), 3);
    assert_eq!(relay.publish_pending().await.expect("nothing left"), 0);

    let mut stream = fixture.jetstream.get_stream(&fixture.events.settings.stream_name).await.expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 3);
    for (sequence, id) in (1u64..).zip(ids) {
        let message = stream.get_raw_message(sequence).await.expect("message");
        assert_eq!(message.headers.get("ce-id").map(|value| value.as_str().to_owned()), Some(id.to_string()));
    }
    let attempts: Vec<i32> =
        sqlx::query_scalar("SELECT publish_attempts FROM outbox WHERE published_at IS NOT NULL ORDER BY id")
            .fetch_all(&fixture.pool)
            .await
            .expect("rows");
    assert_eq!(attempts, [1, 1, 1]);
}

#[tokio::test]
async fn republishing_a_row_is_dropped_by_the_duplicate_window() {
    let fixture = fixture().await;
    enqueue(&fixture.pool, "once").await;
    let relay = OutboxRelay::new(fixture.pool.clone(), fixture.jetstream.clone(), SCHEMA, &fixture.events.settings);
    relay.publish_pending().await.expect("published");
    // A crash after the ack but before the commit publishes the row again.
    sqlx::query("UPDATE outbox SET published_at = NULL").execute(&fixture.pool).await.expect("reset");
    relay.publish_pending().await.expect("published again");
    let mut stream = fixture.jetstream.get_stream(&fixture.events.settings.stream_name).await.expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 1, "JetStream keeps one copy");
}

#[tokio::test]
async fn the_consumer_handles_each_event_id_once_even_when_delivered_twice() {
    let fixture = fixture().await;
    enqueue(&fixture.pool, "alpha").await;
    enqueue(&fixture.pool, "beta").await;
    let relay = OutboxRelay::new(fixture.pool.clone(), fixture.jetstream.clone(), SCHEMA, &fixture.events.settings);
    relay.publish_pending().await.expect("published");

    // The same event again under another message id (outside the window).
    let mut stream = fixture.jetstream.get_stream(&fixture.events.settings.stream_name).await.expect("stream");
    let first = stream.get_raw_message(1).await.expect("first");
    let mut headers = first.headers.clone();
    headers.insert("Nats-Msg-Id", uuid::Uuid::new_v4().to_string());
    fixture
        .jetstream
        .publish_with_headers(first.subject.to_string(), headers, first.payload.clone())
        .await
        .expect("publish")
        .await
        .expect("ack");
    assert_eq!(stream.info().await.expect("info").state.messages, 3);

    let handler = Arc::new(RecordingHandler { calls: AtomicUsize::new(0), failures: 0 });
    let consumer = EventConsumer::new(
        fixture.pool.clone(),
        fixture.jetstream.clone(),
        &fixture.events.settings,
        ConsumerSettings::new("events_test_consumer", "testing.>"),
    );
    let shutdown = Shutdown::new();
    let task = tokio::spawn(consumer.run(handler.clone(), shutdown.wait()));
    assert!(wait_until(async || handled(&fixture.pool).await.len() == 2).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.trigger();
    task.await.expect("consumer stops");
    assert_eq!(handled(&fixture.pool).await, ["alpha", "beta"]);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2, "the duplicate never reached the handler");
    let recorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE consumer = 'events_test_consumer'")
            .fetch_one(&fixture.pool)
            .await
            .expect("count");
    assert_eq!(recorded, 2);
}

#[tokio::test]
async fn a_failing_handler_is_retried_and_its_partial_work_rolled_back() {
    let fixture = fixture().await;
    enqueue(&fixture.pool, "eventually").await;
    OutboxRelay::new(fixture.pool.clone(), fixture.jetstream.clone(), SCHEMA, &fixture.events.settings)
        .publish_pending()
        .await
        .expect("published");
    let handler = Arc::new(RecordingHandler { calls: AtomicUsize::new(0), failures: 2 });
    let consumer = EventConsumer::new(
        fixture.pool.clone(),
        fixture.jetstream.clone(),
        &fixture.events.settings,
        ConsumerSettings::new("retrying_consumer", "testing.>"),
    );
    let shutdown = Shutdown::new();
    let task = tokio::spawn(consumer.run(handler.clone(), shutdown.wait()));
    assert!(wait_until(async || handled(&fixture.pool).await.len() == 1).await, "handled after two retries");
    shutdown.trigger();
    task.await.expect("stops");
    assert_eq!(handler.calls.load(Ordering::SeqCst), 3, "two failed attempts, then success");
    assert_eq!(handled(&fixture.pool).await, ["eventually"], "the failed attempts left nothing behind");
}

#[tokio::test]
async fn a_message_that_is_not_a_cloudevent_is_terminated_not_retried() {
    let fixture = fixture().await;
    let subject = format!("{}.testing.thing.happened", fixture.events.settings.subject_prefix);
    fixture.jetstream.publish(subject, "no headers".into()).await.expect("publish").await.expect("ack");
    let consumer = EventConsumer::new(
        fixture.pool.clone(),
        fixture.jetstream.clone(),
        &fixture.events.settings,
        ConsumerSettings::new("strict_consumer", "testing.>"),
    );
    let stream = fixture.jetstream.get_stream(&fixture.events.settings.stream_name).await.expect("stream");
    let pull = stream
        .get_or_create_consumer(
            "inspect",
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("inspect".to_owned()),
                ..Default::default()
            },
        )
        .await
        .expect("consumer");
    let mut batch = pull.fetch().max_messages(1).messages().await.expect("fetch");
    let message = futures_util::StreamExt::next(&mut batch).await.expect("one").expect("ok");
    let handler = RecordingHandler { calls: AtomicUsize::new(0), failures: 0 };
    assert_eq!(consumer.process(&handler, &message).await, Outcome::Terminated);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 0);
}

/// Captures the trace context the handler runs in.
struct TraceRecordingHandler {
    seen: std::sync::Mutex<Vec<String>>,
}

impl EventHandler for TraceRecordingHandler {
    fn handle<'a>(
        &'a self,
        _transaction: &'a mut sqlx::PgConnection,
        _event: &'a ReceivedEvent,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), HandleError>> + Send + 'a>> {
        let context = esocial_kit::telemetry::current_trace_context();
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(context.get("traceparent").cloned().unwrap_or_default());
        }
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn the_consumer_continues_the_trace_of_the_change() {
    static TELEMETRY: std::sync::OnceLock<Option<esocial_kit::telemetry::TelemetryGuard>> = std::sync::OnceLock::new();
    TELEMETRY.get_or_init(|| {
        let settings = esocial_kit::config::TelemetrySettings {
            log_format: esocial_kit::config::LogFormat::Text,
            log_filter: "warn".to_owned(),
            otlp_endpoint: None,
        };
        esocial_kit::telemetry::init("events-test", &settings).ok()
    });
    let fixture = fixture().await;
    // The change happens inside a span that continues a caller's trace, as a
    // gRPC handler's would.
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let span = tracing::info_span!("change");
    let carrier: std::collections::HashMap<String, String> =
        [("traceparent".to_owned(), format!("00-{trace_id}-b7ad6b7169203331-01"))].into();
    esocial_kit::telemetry::set_parent_from(&span, &carrier);
    tracing::Instrument::instrument(enqueue(&fixture.pool, "traced"), span).await;
    OutboxRelay::new(fixture.pool.clone(), fixture.jetstream.clone(), SCHEMA, &fixture.events.settings)
        .publish_pending()
        .await
        .expect("published");

    let consumer = EventConsumer::new(
        fixture.pool.clone(),
        fixture.jetstream.clone(),
        &fixture.events.settings,
        ConsumerSettings::new("tracing_consumer", "testing.>"),
    );
    let handler = Arc::new(TraceRecordingHandler { seen: std::sync::Mutex::default() });
    let shutdown = Shutdown::new();
    let task = tokio::spawn(consumer.run(handler.clone(), shutdown.wait()));
    assert!(wait_until(async || handler.seen.lock().map(|seen| !seen.is_empty()).unwrap_or(false)).await);
    shutdown.trigger();
    task.await.expect("stops");
    let seen = handler.seen.lock().expect("lock").clone();
    assert!(seen[0].starts_with(&format!("00-{trace_id}-")), "the handler runs in the change's trace: {seen:?}");
}

#[tokio::test]
async fn two_relay_replicas_publish_every_event_once_in_outbox_order() {
    let fixture = fixture().await;
    let mut ids = Vec::new();
    for index in 0..60 {
        ids.push(enqueue(&fixture.pool, &format!("event {index:02}")).await);
    }
    let relay = || OutboxRelay::new(fixture.pool.clone(), fixture.jetstream.clone(), SCHEMA, &fixture.events.settings);
    let (first, second) = (relay(), relay());
    let drain = async |relay: OutboxRelay| {
        let mut published = 0;
        for _ in 0..200 {
            published += relay.publish_pending().await.expect("publishes");
            let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&fixture.pool)
                .await
                .expect("count");
            if pending == 0 {
                break;
            }
        }
        published
    };
    let (by_first, by_second) = tokio::join!(drain(first), drain(second));
    assert_eq!(by_first + by_second, 60, "every event published once between them");

    let mut stream = fixture.jetstream.get_stream(&fixture.events.settings.stream_name).await.expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 60);
    for (sequence, id) in (1u64..).zip(&ids) {
        let message = stream.get_raw_message(sequence).await.expect("message");
        assert_eq!(
            message.headers.get("ce-id").map(|value| value.as_str().to_owned()),
            Some(id.to_string()),
            "sequence {sequence}"
        );
    }
}
