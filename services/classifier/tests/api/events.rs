use std::time::Duration;

use esocial_auth::Role;
use esocial_classifier::AUDIENCE;
use esocial_proto::classifier::v1 as pb;
use esocial_testkit::{NatsServer, TestEvents};
use prost::Message as _;

use crate::harness::{Options, TestApp, new_request_id, open_from};

fn new_version(code: &str) -> pb::CreateSupportTypeVersionRequest {
    pb::CreateSupportTypeVersionRequest {
        request_id: new_request_id(),
        code: code.to_owned(),
        validity: Some(open_from("2026-01-01")),
        content: Some(pb::SupportTypeContent {
            name_uk: format!("Послуга {code}"),
            name_en: format!("Service {code}"),
            category: pb::SupportCategory::SocialService.into(),
            legal_basis: "test".to_owned(),
            payment_rule: None,
            decisive_date: pb::DecisiveDate::ApplicationDate.into(),
            thresholds: vec![],
            eligibility_notes: String::new(),
        }),
        change_reason: "test".to_owned(),
        expected_latest_version: 0,
    }
}

/// Every message on the test's stream under `classifier.support_type.>`,
/// read until the stream has been quiet for a while.
async fn received_messages(events: &TestEvents, quiet_for: Duration) -> Vec<async_nats::jetstream::Message> {
    events.messages("classifier.support_type.>", quiet_for).await.expect("messages")
}

fn header<'a>(message: &'a async_nats::jetstream::Message, name: &str) -> &'a str {
    message.headers.as_ref().and_then(|headers| headers.get(name)).map_or("", |value| value.as_str())
}

#[tokio::test]
async fn a_change_arrives_on_jetstream_exactly_once_as_a_cloudevent() {
    let app = TestApp::spawn_with(Options::default()).await;
    let mut admin = app.admin().await;
    admin.create_support_type_version(new_version("EVENTFUL_SERVICE")).await.expect("created");

    let received = received_messages(&app.events, Duration::from_secs(3)).await;
    assert_eq!(received.len(), 1, "exactly one event");
    let message = &received[0];
    assert_eq!(
        message.subject.as_str(),
        format!("{}.classifier.support_type.version_created", app.events.settings.subject_prefix)
    );
    assert_eq!(header(message, "ce-specversion"), "1.0");
    assert_eq!(header(message, "ce-type"), "ua.gov.esocial.classifier.support_type.version_created.v1");
    assert_eq!(header(message, "ce-source"), "/esocial/classifier");
    assert_eq!(header(message, "ce-subject"), "EVENTFUL_SERVICE");
    assert_eq!(header(message, "Nats-Msg-Id"), header(message, "ce-id"), "de-duplication key is the event id");
    assert_eq!(header(message, "content-type"), "application/protobuf");
    let payload = pb::SupportTypeVersionCreated::decode(message.payload.as_ref()).expect("protobuf payload");
    assert_eq!(payload.version.map(|version| version.code), Some("EVENTFUL_SERVICE".to_owned()));

    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM classifier.outbox WHERE published_at IS NULL")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(pending, 0, "the outbox row is marked published after the ack");
}

#[tokio::test]
async fn the_callers_trace_context_travels_with_the_event() {
    let app = TestApp::spawn_with(Options::default()).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(new_version("TRACED_SERVICE"));
    request.metadata_mut().insert("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01").parse().expect("ascii"));
    let token = app.tokens.token(AUDIENCE, &[Role::ClassifierAdmin]);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    let mut client =
        esocial_proto::classifier::v1::classifier_service_client::ClassifierServiceClient::new(app.channel().await);
    client.create_support_type_version(request).await.expect("created");

    let received = received_messages(&app.events, Duration::from_secs(3)).await;
    assert_eq!(received.len(), 1);
    let traceparent = header(&received[0], "traceparent");
    assert!(traceparent.starts_with(&format!("00-{trace_id}-")), "event carries the caller's trace: {traceparent:?}");
}

#[tokio::test]
async fn the_relay_keeps_events_through_a_nats_outage_and_delivers_each_once() {
    let mut nats = NatsServer::start().await.expect("own nats-server");
    let events = TestEvents::on(&nats.url());
    let app = TestApp::spawn_with(Options { events: Some(events), ..Options::default() }).await;
    let mut admin = app.admin().await;
    admin.create_support_type_version(new_version("BEFORE_OUTAGE")).await.expect("created");
    let published_before = async || -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM classifier.outbox WHERE published_at IS NOT NULL")
            .fetch_one(&app.pool)
            .await
            .expect("count")
    };
    for _ in 0..50 {
        if published_before().await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(published_before().await, 1);

    nats.stop().await.expect("nats stops");
    // Changes keep working while NATS is down: the events wait in the outbox.
    for code in ["DURING_OUTAGE_A", "DURING_OUTAGE_B", "DURING_OUTAGE_C"] {
        admin.create_support_type_version(new_version(code)).await.expect("created while NATS is down");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM classifier.outbox WHERE published_at IS NULL")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(pending, 3, "nothing is marked published without an ack");

    nats.resume().await.expect("nats restarts");
    let mut remaining = pending;
    for _ in 0..300 {
        remaining = sqlx::query_scalar("SELECT count(*) FROM classifier.outbox WHERE published_at IS NULL")
            .fetch_one(&app.pool)
            .await
            .expect("count");
        if remaining == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(remaining, 0, "the relay caught up after NATS came back");

    let received = received_messages(&app.events, Duration::from_secs(3)).await;
    let mut subjects: Vec<String> = received.iter().map(|message| header(message, "ce-subject").to_owned()).collect();
    subjects.sort();
    assert_eq!(subjects, ["BEFORE_OUTAGE", "DURING_OUTAGE_A", "DURING_OUTAGE_B", "DURING_OUTAGE_C"], "each event once");
}
