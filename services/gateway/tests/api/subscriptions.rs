use std::time::Duration;

use esocial_proto::gateway::v1 as pb;
use esocial_proto::registry::v1 as registry_pb;
use prost::Message as _;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::harness::*;

pub const REGISTERED: &str = "registry.provider.registered";

async fn next_events(stream: &mut tonic::Streaming<pb::SubscribedEvent>, count: usize) -> Vec<pb::SubscribedEvent> {
    next_events_within(stream, count, Duration::from_secs(15)).await
}

/// The next `count` events, each within `limit` of the one before.
async fn next_events_within(
    stream: &mut tonic::Streaming<pb::SubscribedEvent>,
    count: usize,
    limit: Duration,
) -> Vec<pb::SubscribedEvent> {
    let mut events = Vec::new();
    while events.len() < count {
        let event = tokio::time::timeout(limit, stream.message())
            .await
            .unwrap_or_else(|_| {
                let names: Vec<String> = events.iter().map(provider_name).collect();
                panic!("only {} of {count} events arrived: {names:?}", events.len())
            })
            .expect("stream")
            .expect("an event");
        events.push(event);
    }
    events
}

fn provider_name(event: &pb::SubscribedEvent) -> String {
    registry_pb::ProviderChanged::decode(event.data.as_slice())
        .expect("payload")
        .provider
        .and_then(|provider| provider.data)
        .map(|data| data.name)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_subscription_resumes_after_a_disconnect_without_loss_or_repeats_of_what_was_acknowledged() {
    let gateway = TestGateway::spawn().await;
    gateway.register_member(DIIA, "diia", None, &[]).await;
    gateway.register_member(BANK, "bank", None, &[]).await;
    let mut admin = gateway.admin().await;
    admin
        .set_event_entitlements(pb::SetEventEntitlementsRequest {
            request_id: new_request_id(),
            member_id: DIIA.to_owned(),
            event_types: vec![REGISTERED.to_owned(), "registry.idp.certificate.revoked".to_owned()],
        })
        .await
        .expect("entitled");
    let token = gateway.system_token("diia").await;
    let mut subscriptions = gateway.subscriptions(Some(token.clone())).await;

    let not_entitled = subscriptions
        .create_subscription(pb::CreateSubscriptionRequest {
            request_id: new_request_id(),
            event_types: vec![REGISTERED.to_owned(), "registry.provider.updated".to_owned()],
        })
        .await
        .expect_err("not entitled");
    assert_eq!(not_entitled.code(), Code::PermissionDenied);
    assert!(not_entitled.message().contains("registry.provider.updated"), "{}", not_entitled.message());
    let malformed = subscriptions
        .create_subscription(pb::CreateSubscriptionRequest {
            request_id: new_request_id(),
            event_types: vec!["registry.>".to_owned()],
        })
        .await
        .expect_err("malformed");
    assert_eq!(violated_fields(&malformed), ["event_types[0]"]);

    let subscription = subscribe_to_registrations(&mut subscriptions).await;
    let id = subscription.subscription_id.clone();

    // Events published after the subscription, before the member connects.
    let mut registry = gateway.providers_directly(Some(gateway.service_token("registry-writer").await)).await;
    let mut first_ids = Vec::new();
    for (index, name) in ["Орган 1", "Орган 2", "Орган 3"].iter().enumerate() {
        let created = registry
            .register_provider(provider(name, 3_285_590 + u32::try_from(index).expect("index")))
            .await
            .expect("provider")
            .into_inner()
            .provider
            .expect("provider");
        first_ids.push(created.id);
    }
    // An update: an event type the member is not entitled to.
    registry
        .update_provider(registry_pb::UpdateProviderRequest {
            request_id: new_request_id(),
            provider_id: first_ids[0].clone(),
            data: provider("Орган 1 (перейменований)", 3_285_590).data,
            valid_from: None,
            reason: "renamed".to_owned(),
            expected_version: 1,
        })
        .await
        .expect("updated");

    let mut stream = subscriptions
        .subscribe(pb::SubscribeRequest { subscription_id: id.clone(), window: 10 })
        .await
        .expect("stream")
        .into_inner();
    let first = next_events(&mut stream, 3).await;
    let names: Vec<String> = first.iter().map(provider_name).collect();
    assert_eq!(names, ["Орган 1", "Орган 2", "Орган 3"]);
    assert!(first.iter().all(|event| event.event_type == REGISTERED
        && event.ce_type == "ua.gov.esocial.registry.provider.registered.v1"
        && event.delivery_count == 1));
    assert!(first.windows(2).all(|pair| pair[0].position < pair[1].position));
    let acknowledged = subscriptions
        .acknowledge_events(pb::AcknowledgeEventsRequest {
            subscription_id: id.clone(),
            ack_tokens: first[..2].iter().map(|event| event.ack_token.clone()).collect(),
        })
        .await
        .expect("acknowledged")
        .into_inner();
    assert_eq!(acknowledged.acknowledged, 2);
    drop(stream);
    // While disconnected, two more.
    for (index, name) in ["Орган 4", "Орган 5"].iter().enumerate() {
        registry
            .register_provider(provider(name, 3_285_600 + u32::try_from(index).expect("index")))
            .await
            .expect("provider");
    }
    let mut stream = subscriptions
        .subscribe(pb::SubscribeRequest { subscription_id: id.clone(), window: 10 })
        .await
        .expect("stream again")
        .into_inner();
    let second = next_events(&mut stream, 3).await;
    let mut names: Vec<String> = second.iter().map(provider_name).collect();
    names.sort();
    assert_eq!(names, ["Орган 3", "Орган 4", "Орган 5"], "the unacknowledged one again, and the new ones");
    let third = second.iter().find(|event| provider_name(event) == "Орган 3").expect("third");
    assert_eq!(third.event_id, first[2].event_id);
    assert_eq!(third.delivery_count, 2);
    subscriptions
        .acknowledge_events(pb::AcknowledgeEventsRequest {
            subscription_id: id.clone(),
            ack_tokens: second.iter().map(|event| event.ack_token.clone()).collect(),
        })
        .await
        .expect("acknowledged");
    drop(stream);

    // Everything acknowledged: a new connection gets nothing old.
    let mut stream = subscriptions
        .subscribe(pb::SubscribeRequest { subscription_id: id.clone(), window: 10 })
        .await
        .expect("stream once more")
        .into_inner();
    let nothing = tokio::time::timeout(Duration::from_secs(2), stream.message()).await;
    assert!(nothing.is_err(), "nothing left to deliver: {nothing:?}");

    // Acknowledgement tokens are checked: a token the gateway gave, with its
    // subject changed (another event's sequence), is refused.
    let (subject, signature) = second[0].ack_token.rsplit_once('~').expect("signed token");
    let mut parts: Vec<String> = subject.split('.').map(str::to_owned).collect();
    let sequence_index = parts.len() - 4;
    parts[sequence_index] = (parts[sequence_index].parse::<u64>().expect("sequence") + 1000).to_string();
    let altered = format!("{}~{signature}", parts.join("."));
    let refused = subscriptions
        .acknowledge_events(pb::AcknowledgeEventsRequest { subscription_id: id.clone(), ack_tokens: vec![altered] })
        .await
        .expect_err("altered token");
    assert_eq!(violated_fields(&refused), ["ack_tokens[0]"]);
    // Other members see nothing of it.
    let forged = subscriptions
        .acknowledge_events(pb::AcknowledgeEventsRequest {
            subscription_id: id.clone(),
            ack_tokens: vec!["$JS.API.STREAM.DELETE.ESOCIAL".to_owned()],
        })
        .await
        .expect_err("not an ack token");
    assert_eq!(violated_fields(&forged), ["ack_tokens[0]"]);
    let mut bank = gateway.subscriptions(Some(gateway.system_token("bank").await)).await;
    let foreign = bank
        .subscribe(pb::SubscribeRequest { subscription_id: id.clone(), window: 0 })
        .await
        .expect_err("someone else's subscription");
    assert_eq!(foreign.code(), Code::NotFound);
    let listed = subscriptions.list_subscriptions(pb::ListSubscriptionsRequest {}).await.expect("list").into_inner();
    assert_eq!(listed.subscriptions.len(), 1);
    subscriptions
        .delete_subscription(pb::DeleteSubscriptionRequest { subscription_id: id.clone() })
        .await
        .expect("deleted");
    let gone =
        subscriptions.subscribe(pb::SubscribeRequest { subscription_id: id, window: 0 }).await.expect_err("deleted");
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn a_stream_ends_when_the_member_is_no_longer_entitled() {
    let gateway = TestGateway::spawn().await;
    gateway.register_member(DIIA, "diia", None, &[]).await;
    let mut admin = gateway.admin().await;
    let entitle = |event_types: Vec<String>| pb::SetEventEntitlementsRequest {
        request_id: new_request_id(),
        member_id: DIIA.to_owned(),
        event_types,
    };
    admin.set_event_entitlements(entitle(vec![REGISTERED.to_owned()])).await.expect("entitled");
    let mut subscriptions = gateway.subscriptions(Some(gateway.system_token("diia").await)).await;
    let id = subscribe_to_registrations(&mut subscriptions).await.subscription_id;
    let mut registry = gateway.providers_directly(Some(gateway.service_token("registry-writer").await)).await;
    registry.register_provider(provider("Орган 1", 3_285_590)).await.expect("provider");
    let mut stream = subscriptions
        .subscribe(pb::SubscribeRequest { subscription_id: id.clone(), window: 10 })
        .await
        .expect("stream")
        .into_inner();
    assert_eq!(provider_name(&next_events(&mut stream, 1).await[0]), "Орган 1");

    admin.set_event_entitlements(entitle(Vec::new())).await.expect("entitlement withdrawn");
    registry.register_provider(provider("Орган 2", 3_285_591)).await.expect("provider");
    let ended = tokio::time::timeout(Duration::from_secs(15), stream.message())
        .await
        .expect("the stream ends")
        .expect_err("refused");
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
    let refused = subscriptions
        .subscribe(pb::SubscribeRequest { subscription_id: id.clone(), window: 10 })
        .await
        .expect_err("no longer entitled");
    assert_eq!(refused.code(), Code::PermissionDenied);

    // Entitled again: what occurred in between (more than the 5 s the
    // gateway allows for clocks apart before) does not come, what occurs
    // from now on does.
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    admin.set_event_entitlements(entitle(vec![REGISTERED.to_owned()])).await.expect("entitled again");
    registry.register_provider(provider("Орган 3", 3_285_592)).await.expect("provider");
    let mut stream = eventually(Duration::from_secs(10), || {
        let mut subscriptions = subscriptions.clone();
        let id = id.clone();
        async move {
            let opened = subscriptions.subscribe(pb::SubscribeRequest { subscription_id: id, window: 10 }).await;
            opened.map(tonic::Response::into_inner).map_err(|status| format!("{status:?}"))
        }
    })
    .await;
    assert_eq!(provider_name(&next_events(&mut stream, 1).await[0]), "Орган 3");
    let more = tokio::time::timeout(Duration::from_secs(3), stream.message()).await;
    assert!(more.is_err(), "nothing else comes: {more:?}");
}

/// How the Diia portal's open stream, with nothing to deliver, ends once
/// `shut_out` has turned its member away.
async fn silent_stream_ended_by(shut_out: impl AsyncFnOnce(&TestGateway)) -> tonic::Status {
    let (gateway, mut subscriptions) = diia_entitled_to_registrations().await;
    let mut stream = stream_of_registrations(&mut subscriptions).await;
    shut_out(&gateway).await;
    tokio::time::timeout(Duration::from_secs(15), stream.message())
        .await
        .expect("the stream ends without an event to deliver")
        .expect_err("refused")
}

#[tokio::test]
async fn a_stream_with_nothing_to_deliver_ends_when_its_member_is_suspended() {
    let ended = Box::pin(silent_stream_ended_by(async |gateway| gateway.suspend(DIIA).await)).await;
    assert_eq!(ended.code(), Code::Unauthenticated, "as a new call is refused: {ended:?}");
    assert!(ended.message().contains("suspended"), "{}", ended.message());
}

#[tokio::test]
async fn a_stream_with_nothing_to_deliver_ends_when_identity_deactivates_its_member_s_client() {
    let ended = Box::pin(silent_stream_ended_by(async |gateway| gateway.set_client_active("diia", false).await)).await;
    assert_eq!(ended.code(), Code::Unauthenticated, "as a new call is refused: {ended:?}");
    assert!(ended.message().contains("diia is deactivated at identity"), "{}", ended.message());
}

#[tokio::test]
async fn a_stream_ends_when_the_token_it_was_opened_with_expires_and_a_new_one_resumes_it() {
    // An ack wait far beyond what the test waits: an event that comes again
    // within it was handed back, not redelivered for want of an
    // acknowledgement. (The hand-back takes seconds: a loaded machine, as
    // under the whole suite, may stretch them.)
    let gateway = TestGateway::spawn_with_gateway(&[], &[("ESOCIAL_GATEWAY_ACK_WAIT_SECONDS", "300")]).await;
    let mut subscriptions = entitle_diia(&gateway).await;
    let id = subscribe_to_registrations(&mut subscriptions).await.subscription_id;
    let mut registry = gateway.providers_directly(Some(gateway.service_token("registry-writer").await)).await;
    registry.register_provider(provider("Орган 1", 3_285_590)).await.expect("provider");

    let short_lived = gateway.system_token_for("diia", 4).await;
    let opened = std::time::Instant::now();
    let mut stream = gateway
        .subscriptions(Some(short_lived))
        .await
        .subscribe(pb::SubscribeRequest { subscription_id: id.clone(), window: 10 })
        .await
        .expect("stream")
        .into_inner();
    let first = next_events(&mut stream, 1).await;
    assert_eq!(provider_name(&first[0]), "Орган 1");
    // Not acknowledged. The stream stays open until the token expires,
    // then ends as a call with that token would.
    let ended = tokio::time::timeout(Duration::from_secs(15), stream.message())
        .await
        .expect("the stream ends when its token expires")
        .expect_err("refused");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert!(ended.message().contains("expired"), "{}", ended.message());
    assert!(opened.elapsed() >= Duration::from_secs(2), "not before its token expired: {:?}", opened.elapsed());

    // With a new token the member goes on where it was: the event it did
    // not acknowledge comes again (handed back a moment after the stream
    // ended), and what came since.
    registry.register_provider(provider("Орган 2", 3_285_591)).await.expect("provider");
    let mut stream = subscriptions
        .subscribe(pb::SubscribeRequest { subscription_id: id, window: 10 })
        .await
        .expect("stream")
        .into_inner();
    let again = next_events_within(&mut stream, 2, Duration::from_secs(60)).await;
    let mut names: Vec<String> = again.iter().map(provider_name).collect();
    names.sort();
    assert_eq!(names, ["Орган 1", "Орган 2"]);
    let first = again.iter().find(|event| provider_name(event) == "Орган 1").expect("the first");
    assert!(first.delivery_count >= 2, "the first once more: {first:?}");
    let more = tokio::time::timeout(Duration::from_secs(2), stream.message()).await;
    assert!(more.is_err(), "nothing else comes: {more:?}");
}

#[tokio::test]
async fn a_stream_still_open_when_the_gateway_stops_ends_at_once_with_unavailable_and_gets_its_log_entry() {
    // A grace period far longer than the test waits: the open stream must
    // not hold the gateway's stop to it.
    let mut gateway = TestGateway::spawn_with_gateway(&[], &[("ESOCIAL_SHUTDOWN_GRACE_MS", "30000")]).await;
    let mut subscriptions = entitle_diia(&gateway).await;
    let mut stream = stream_of_registrations(&mut subscriptions).await;

    // The stream ends as the gateway starts to stop, with a status the
    // member calls again on; its entry is written all the same.
    let (stopped, ended) = tokio::join!(gateway.stop_gateway(Duration::from_secs(10)), async {
        tokio::time::timeout(Duration::from_secs(10), stream.message()).await
    });
    let ended = ended.expect("the stream ended with the gateway").expect_err("with a status");
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    assert!(ended.message().contains("gateway is stopping"), "{}", ended.message());
    stopped.expect("the gateway stopped within 10 s, not at the end of its 30 s grace").expect("stopped cleanly");
    let logged: Vec<i32> =
        sqlx::query_scalar("SELECT status_code FROM gateway.message_log WHERE method = $1 AND member_id = $2")
            .bind("/esocial.gateway.v1.SubscriptionService/Subscribe")
            .bind(DIIA)
            .fetch_all(&gateway.pool)
            .await
            .expect("entries");
    assert_eq!(logged, [Code::Unavailable as i32], "the stream's entry");
}

/// The stream of a new subscription to provider registrations.
pub async fn stream_of_registrations(subscriptions: &mut Subscriptions) -> tonic::Streaming<pb::SubscribedEvent> {
    let id = subscribe_to_registrations(subscriptions).await.subscription_id;
    subscriptions
        .subscribe(pb::SubscribeRequest { subscription_id: id, window: 10 })
        .await
        .expect("stream")
        .into_inner()
}

/// A new subscription to provider registrations.
async fn subscribe_to_registrations(subscriptions: &mut Subscriptions) -> pb::Subscription {
    subscriptions
        .create_subscription(pb::CreateSubscriptionRequest {
            request_id: new_request_id(),
            event_types: vec![REGISTERED.to_owned()],
        })
        .await
        .expect("subscribed")
        .into_inner()
        .subscription
        .expect("subscription")
}

/// A gateway with the Diia portal entitled to provider registrations, and
/// its subscription client.
async fn diia_entitled_to_registrations() -> (TestGateway, Subscriptions) {
    let gateway = TestGateway::spawn().await;
    let subscriptions = entitle_diia(&gateway).await;
    (gateway, subscriptions)
}

/// The Diia portal, a member entitled to provider registrations: its
/// subscription client.
async fn entitle_diia(gateway: &TestGateway) -> Subscriptions {
    register_diia_entitled_to_registrations(gateway).await;
    gateway.subscriptions(Some(gateway.system_token("diia").await)).await
}

/// Registers the Diia portal, entitled to provider registrations.
pub async fn register_diia_entitled_to_registrations(gateway: &TestGateway) {
    gateway.register_member(DIIA, "diia", None, &[]).await;
    gateway
        .admin()
        .await
        .set_event_entitlements(pb::SetEventEntitlementsRequest {
            request_id: new_request_id(),
            member_id: DIIA.to_owned(),
            event_types: vec![REGISTERED.to_owned()],
        })
        .await
        .expect("entitled");
}

/// While a subscription's consumer holds as many waiting pull requests as
/// the server takes (512 by default), the server refuses the stream's with
/// 409 "Exceeded MaxWaiting": the stream asks again after a backoff instead
/// of ending, and an event comes on it once the others have expired.
#[tokio::test]
async fn a_pull_request_the_server_refuses_for_now_is_asked_again() {
    use futures_util::StreamExt as _;

    let (gateway, mut subscriptions) = diia_entitled_to_registrations().await;
    let created = subscribe_to_registrations(&mut subscriptions).await;
    let id: uuid::Uuid = created.subscription_id.parse().expect("id");
    let consumer = esocial_gateway::subscriptions::consumer_name(id, 0);
    let api = format!("$JS.API.CONSUMER.MSG.NEXT.{}.{consumer}", gateway.events.settings.stream_name);
    let nats = async_nats::connect(&gateway.events.nats_url).await.expect("NATS");
    let inbox = nats.new_inbox();
    let mut answers = nats.subscribe(format!("{inbox}.>")).await.expect("inbox");
    let ask = |reply: String| {
        let (nats, api) = (nats.clone(), api.clone());
        async move {
            let request = bytes::Bytes::from_static(br#"{"batch":1,"expires":3000000000}"#);
            nats.publish_with_reply(api, reply, request).await.expect("pull request");
        }
    };
    for index in 0..512 {
        ask(format!("{inbox}.waiting.{index}")).await;
    }
    nats.flush().await.expect("flush");
    // The server may take requests in after it has answered the flush:
    // the stream's request must come after all 512 (on a loaded machine it
    // once came first, and the 512th got the 409).
    let stream = async_nats::jetstream::new(nats.clone())
        .get_stream(&gateway.events.settings.stream_name)
        .await
        .expect("the event stream");
    eventually(Duration::from_secs(10), || async {
        let info = stream.consumer_info(&consumer).await.map_err(|error| error.to_string())?;
        (info.num_waiting >= 512).then_some(()).ok_or(format!("{} requests waiting", info.num_waiting))
    })
    .await;

    let request = pb::SubscribeRequest { subscription_id: created.subscription_id.clone(), window: 10 };
    let mut stream = subscriptions.subscribe(request).await.expect("stream").into_inner();
    // The consumer is full: a request now is refused, as the stream's were.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ask(format!("{inbox}.probe")).await;
    let mut expired = 0;
    let mut probe = None;
    while expired < 512 || probe.is_none() {
        let answer = tokio::time::timeout(Duration::from_secs(10), answers.next())
            .await
            .expect("the server answers every request")
            .expect("inbox open");
        if answer.subject.ends_with(".probe") {
            probe = Some((answer.status, answer.description));
        } else {
            assert_eq!(answer.status, Some(async_nats::StatusCode::TIMEOUT), "nothing was there to take");
            expired += 1;
        }
    }
    let (status, description) = probe.expect("the probe's answer");
    assert_eq!(status, Some(async_nats::StatusCode::REQUEST_TERMINATED), "{description:?}");
    assert!(description.as_deref().is_some_and(|text| text.contains("MaxWaiting")), "{description:?}");

    // The others expired (3 s): an event published now reaches the stream
    // that was refused all that time.
    let mut registry = gateway.providers_directly(Some(gateway.service_token("registry-writer").await)).await;
    registry.register_provider(provider("Після відмови", 3_285_630)).await.expect("provider");
    let arrived = next_events(&mut stream, 1).await;
    assert_eq!(arrived.iter().map(provider_name).collect::<Vec<_>>(), ["Після відмови"]);
}

/// NATS crashes and comes back while a member's stream is open: what is
/// published after it came back reaches the member, each event once (the
/// member acknowledges each), on that stream or, should the gateway end
/// it, on the next. This checks that the stream recovers, not how soon:
/// how long it took is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_carries_on_after_nats_restarts() {
    let mut nats = esocial_testkit::NatsServer::start().await.expect("own nats-server");
    let gateway = TestGateway::spawn_on(esocial_testkit::TestEvents::on(&nats.url()), &[]).await;
    let mut subscriptions = entitle_diia(&gateway).await;
    let created = subscribe_to_registrations(&mut subscriptions).await;
    let request = || pb::SubscribeRequest { subscription_id: created.subscription_id.clone(), window: 10 };
    let mut stream = subscriptions.subscribe(request()).await.expect("stream").into_inner();
    let mut registry = gateway.providers_directly(Some(gateway.service_token("registry-writer").await)).await;
    registry.register_provider(provider("До збою", 3_285_610)).await.expect("provider");
    let before = next_events(&mut stream, 1).await;
    assert_eq!(before.iter().map(provider_name).collect::<Vec<_>>(), ["До збою"]);
    let acknowledge = |event: &pb::SubscribedEvent| pb::AcknowledgeEventsRequest {
        subscription_id: created.subscription_id.clone(),
        ack_tokens: vec![event.ack_token.clone()],
    };
    subscriptions.acknowledge_events(acknowledge(&before[0])).await.expect("acknowledged");

    nats.stop().await.expect("NATS stops");
    tokio::time::sleep(Duration::from_secs(1)).await;
    nats.resume().await.expect("NATS starts again");
    let back = std::time::Instant::now();
    for (index, name) in ["Після збою 1", "Після збою 2"].into_iter().enumerate() {
        let base = 3_285_620 + u32::try_from(index).expect("index");
        registry.register_provider(provider(name, base)).await.expect("provider");
    }

    // Within the ack wait (30 s), after which JetStream would send again
    // what an event stream lost.
    let mut names = Vec::new();
    let mut streams = 1;
    while names.iter().filter(|name: &&String| name.starts_with("Після")).count() < 2 {
        let left = Duration::from_secs(25).saturating_sub(back.elapsed());
        assert!(!left.is_zero(), "after NATS came back, only these arrived: {names:?}");
        match tokio::time::timeout(left, stream.message()).await {
            Ok(Ok(Some(event))) => {
                subscriptions.acknowledge_events(acknowledge(&event)).await.expect("acknowledged");
                names.push(provider_name(&event));
            }
            Ok(Ok(None) | Err(_)) => {
                // The gateway ended the stream: the member comes again.
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Ok(again) = subscriptions.subscribe(request()).await {
                    stream = again.into_inner();
                    streams += 1;
                }
            }
            Err(_) => panic!("after NATS came back, only these arrived: {names:?}"),
        }
    }
    let after: Vec<&String> = names.iter().filter(|name| name.starts_with("Після")).collect();
    assert_eq!(after, ["Після збою 1", "Після збою 2"], "each once, in order");
    tracing::info!(after = ?back.elapsed(), stream = streams, "the events published after NATS came back arrived");
}

#[tokio::test]
async fn a_member_holds_at_most_twenty_subscriptions_even_when_it_asks_for_more_at_once() {
    let (gateway, subscriptions) = diia_entitled_to_registrations().await;
    let create = || {
        let mut subscriptions = subscriptions.clone();
        async move {
            subscriptions
                .create_subscription(pb::CreateSubscriptionRequest {
                    request_id: new_request_id(),
                    event_types: vec![REGISTERED.to_owned()],
                })
                .await
                .map(|response| response.into_inner().subscription.expect("subscription").subscription_id)
        }
    };
    let answers = futures_util::future::join_all((0..24).map(|_| create())).await;
    let created: Vec<String> = answers.iter().filter_map(|answer| answer.as_ref().ok().cloned()).collect();
    let refused: Vec<&tonic::Status> = answers.iter().filter_map(|answer| answer.as_ref().err()).collect();
    assert_eq!(created.len(), 20, "{refused:?}");
    assert!(refused.iter().all(|status| status.code() == Code::FailedPrecondition), "{refused:?}");
    assert!(refused[0].message().contains("20 subscriptions"), "{}", refused[0].message());
    assert_eq!(gateway.count("gateway.subscriptions").await, 20, "nothing written for the refused ones");

    let mut one = subscriptions.clone();
    one.delete_subscription(pb::DeleteSubscriptionRequest { subscription_id: created[0].clone() })
        .await
        .expect("deleted");
    create().await.expect("room for one again");
    assert_eq!(create().await.expect_err("full again").code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn a_member_holds_at_most_twenty_event_streams_open_and_gets_a_place_again_when_one_closes() {
    let (_gateway, mut subscriptions) = diia_entitled_to_registrations().await;
    let id = subscribe_to_registrations(&mut subscriptions).await.subscription_id;
    let request = || pb::SubscribeRequest { subscription_id: id.clone(), window: 10 };
    let mut open = Vec::new();
    for _ in 0..20 {
        open.push(subscriptions.subscribe(request()).await.expect("a place").into_inner());
    }
    let refused = subscriptions.subscribe(request()).await.expect_err("twenty open");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("20 event streams"), "{}", refused.message());
    assert!(refused.get_details_retry_info().is_some(), "says when to try again");

    // One closes: its place comes free once the gateway sees it gone.
    drop(open.pop());
    eventually(Duration::from_secs(10), || {
        let mut subscriptions = subscriptions.clone();
        let request = request();
        async move {
            match subscriptions.subscribe(request).await {
                Ok(stream) => Ok(stream),
                Err(status) if status.code() == Code::ResourceExhausted => Err("no place yet".to_owned()),
                Err(status) => panic!("{status:?}"),
            }
        }
    })
    .await;
}

/// On a runtime of several threads, as the gateway runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_pulled_but_not_yet_sent_when_a_stream_ends_come_back_at_once() {
    let (gateway, mut subscriptions) = diia_entitled_to_registrations().await;
    let created = subscribe_to_registrations(&mut subscriptions).await;
    let mut registry = gateway.providers_directly(Some(gateway.service_token("registry-writer").await)).await;
    for index in 0..EVENTS {
        registry.register_provider(provider(&format!("Орган {index}"), 3_285_610 + index)).await.expect("provider");
    }
    // The gateway's streaming of the subscription, below gRPC: a receiver
    // that takes one event and no more, as a member whose connection
    // stalls and then breaks.
    let nats = async_nats::connect(&gateway.events.nats_url).await.expect("NATS");
    let (streams, subscription) = streaming_below_grpc(&gateway, nats, &created, Duration::from_secs(30)).await;
    let consumers = streams.ensure_consumers(&subscription).await.expect("consumers");
    let place = streams.stream_place(&subscription.member_id).expect("a place");
    let mut receiver = streams.stream(&subscription, consumers, WINDOW, place, None, u64::MAX);
    receiver.recv().await.expect("an event").expect("not an error");
    // The stream fills the window and pulls a batch more than it can send,
    // and holds it for longer than the pull request lives (2 s) and a
    // client's patience with it (7 s).
    tokio::time::sleep(Duration::from_secs(8)).await;
    drop(receiver);

    // Nothing was acknowledged: every event again through the gateway,
    // once the ended stream's last pull request ended (2 s at most), well
    // within the ack wait (30 s) after which JetStream itself would send
    // what that stream held.
    let mut stream = subscriptions
        .subscribe(pb::SubscribeRequest { subscription_id: created.subscription_id, window: 500 })
        .await
        .expect("stream")
        .into_inner();
    let count = usize::try_from(EVENTS).expect("count");
    let again = tokio::time::timeout(Duration::from_secs(6), next_events(&mut stream, count))
        .await
        .expect("every event within 6 s of reconnecting");
    let mut names: Vec<String> = again.iter().map(provider_name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), count, "each event once");
}

/// More than the window the stream sends and the batch it pulls beyond it.
const EVENTS: u32 = 120;
const WINDOW: usize = 50;

/// The gateway's streaming of `created` below gRPC, over `nats`, with
/// consumers that wait `ack_wait` for an acknowledgement.
async fn streaming_below_grpc(
    gateway: &TestGateway,
    nats: async_nats::Client,
    created: &pb::Subscription,
    ack_wait: Duration,
) -> (esocial_gateway::subscriptions::Subscriptions, esocial_gateway::subscriptions::Subscription) {
    use esocial_gateway::directory::{DefaultLimits, Directory};

    let pool = gateway.gateway_pool().await;
    let subscription_id: uuid::Uuid = created.subscription_id.parse().expect("id");
    let subscription = esocial_gateway::subscriptions::subscription(&pool, subscription_id)
        .await
        .expect("subscription row")
        .expect("a live subscription");
    let limits = DefaultLimits { requests_per_second: 10, burst: 10, message_bytes_max: 1 << 20 };
    let directory = std::sync::Arc::new(Directory::new(pool, limits, 1));
    directory.reload().await.expect("directory");
    let key = ack_key(7);
    let streams = esocial_gateway::subscriptions::Subscriptions::new(
        nats,
        gateway.events.settings.clone(),
        ack_wait,
        key,
        directory,
    );
    (streams, subscription)
}

/// Warnings logged on this thread, as text.
#[derive(Clone, Default)]
struct Warnings(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Warnings {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("warnings")).into_owned()
    }
}

impl std::io::Write for Warnings {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("warnings").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// NATS goes away while a stream that ended still has a pull request out:
/// the stream does not wait for it past its 8 s drain limit (it says so in
/// a warning), and hands back what it sent, which comes again once NATS is
/// back, long before the consumer's ack wait would bring it.
/// On this thread alone, so that the stream's task logs to this test.
#[tokio::test(flavor = "current_thread")]
async fn an_ended_stream_stops_waiting_for_its_pull_requests_while_nats_is_away_and_loses_nothing() {
    let mut nats = esocial_testkit::NatsServer::start().await.expect("own nats-server");
    let gateway = TestGateway::spawn_on(esocial_testkit::TestEvents::on(&nats.url()), &[]).await;
    let mut subscriptions = entitle_diia(&gateway).await;
    let created = subscribe_to_registrations(&mut subscriptions).await;
    let mut registry = gateway.providers_directly(Some(gateway.service_token("registry-writer").await)).await;
    let names = ["Перший", "Другий", "Третій"];
    for (index, name) in (0..).zip(names) {
        registry.register_provider(provider(name, 3_285_810 + index)).await.expect("provider");
    }
    let warnings = Warnings::default();
    let capture = warnings.clone();
    let logging = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || capture.clone())
            .finish(),
    );
    let client = async_nats::connect(nats.url()).await.expect("NATS");
    let ack_wait = Duration::from_secs(60);
    let (streams, subscription) = streaming_below_grpc(&gateway, client.clone(), &created, ack_wait).await;
    let consumers = streams.ensure_consumers(&subscription).await.expect("consumers");
    let place = streams.stream_place(&subscription.member_id).expect("a place");
    // A window larger than what there is: the pull request that brought
    // the three events is still out for the rest.
    let mut receiver = streams.stream(&subscription, consumers, 10, place, None, u64::MAX);
    let mut sent = Vec::new();
    for _ in names {
        let event = tokio::time::timeout(Duration::from_secs(15), receiver.recv()).await.expect("in time");
        sent.push(provider_name(&event.expect("an event").expect("not an error")));
    }
    let delivered = std::time::Instant::now();

    nats.stop().await.expect("NATS stops");
    drop(receiver);
    let ended = std::time::Instant::now();
    eventually(Duration::from_secs(15), || {
        let text = warnings.text();
        async move { if text.contains("did not end in time") { Ok(()) } else { Err(format!("no warning yet: {text}")) } }
    })
    .await;
    let waited = ended.elapsed();
    assert!(waited >= Duration::from_secs(7), "gave up after {waited:?}, before the drain limit");
    nats.resume().await.expect("NATS starts again");
    eventually(Duration::from_secs(15), || {
        let state = client.connection_state();
        async move {
            if state == async_nats::connection::State::Connected {
                Ok(())
            } else {
                Err(format!("the client is {state:?}"))
            }
        }
    })
    .await;

    // Nothing was acknowledged: the three again, before the ack wait.
    let consumers = streams.ensure_consumers(&subscription).await.expect("consumers");
    let place = streams.stream_place(&subscription.member_id).expect("a place");
    let mut receiver = streams.stream(&subscription, consumers, 10, place, None, u64::MAX);
    let mut again = Vec::new();
    while again.len() < names.len() {
        let left = (ack_wait / 2).saturating_sub(delivered.elapsed());
        let event = tokio::time::timeout(left, receiver.recv())
            .await
            .unwrap_or_else(|_| panic!("within half the ack wait only these came again: {again:?}"));
        again.push(provider_name(&event.expect("an event").expect("not an error")));
    }
    again.sort();
    sent.sort();
    assert_eq!(again, sent, "each sent event once more");
    drop(logging);
    tracing::info!(waited = ?waited, again = ?delivered.elapsed(), "drain limit and hand-back");
}

/// The gateway's subscriptions, as a second gateway node would hold them
/// (same events, same database, same key).
async fn second_node(gateway: &TestGateway) -> esocial_gateway::subscriptions::Subscriptions {
    node_with_key(gateway, 7).await
}

/// The acknowledgement token key of the signing key made of `seed`.
fn ack_key(seed: u8) -> esocial_gateway::message_log::MacKey {
    esocial_gateway::message_log::MacKey::derive(&ed25519_dalek::SigningKey::from_bytes(&[seed; 32]), "test")
}

/// The gateway's subscriptions, as a node with the signing key made of
/// `seed` would hold them.
async fn node_with_key(gateway: &TestGateway, seed: u8) -> esocial_gateway::subscriptions::Subscriptions {
    node_with_ack_key(gateway, ack_key(seed)).await
}

/// The gateway's subscriptions, as a node with the acknowledgement token
/// key `key` would hold them.
async fn node_with_ack_key(
    gateway: &TestGateway,
    key: esocial_gateway::message_log::MacKey,
) -> esocial_gateway::subscriptions::Subscriptions {
    let nats = async_nats::connect(&gateway.events.nats_url).await.expect("NATS");
    let limits =
        esocial_gateway::directory::DefaultLimits { requests_per_second: 10, burst: 10, message_bytes_max: 1 << 20 };
    let directory = esocial_gateway::directory::Directory::new(gateway.gateway_pool().await, limits, 1);
    directory.reload().await.expect("directory");
    esocial_gateway::subscriptions::Subscriptions::new(
        nats,
        gateway.events.settings.clone(),
        Duration::from_secs(30),
        key,
        std::sync::Arc::new(directory),
    )
}

/// The first event a node gives out on `created`, below gRPC: its token,
/// and the stream, to keep open (its event neither acknowledged nor handed
/// back) while the test goes on.
async fn token_from(
    node: &esocial_gateway::subscriptions::Subscriptions,
    gateway: &TestGateway,
    created: &pb::Subscription,
) -> (String, tokio::sync::mpsc::Receiver<Result<pb::SubscribedEvent, tonic::Status>>) {
    let id: uuid::Uuid = created.subscription_id.parse().expect("id");
    let subscription = esocial_gateway::subscriptions::subscription(&gateway.gateway_pool().await, id)
        .await
        .expect("subscription row")
        .expect("a live subscription");
    let consumers = node.ensure_consumers(&subscription).await.expect("consumers");
    let place = node.stream_place(&subscription.member_id).expect("a place");
    let mut receiver = node.stream(&subscription, consumers, 10, place, None, u64::MAX);
    let token = receiver.recv().await.expect("an event").expect("not an error").ack_token;
    (token, receiver)
}

/// `ESOCIAL_GATEWAY_EARLIER_SIGNING_KEY_FILES`, read at start, reaches the
/// acknowledgements: a token signed with a key listed there acknowledges
/// through the gateway's API, one signed with a key not listed does not.
#[tokio::test]
async fn the_gateway_started_with_earlier_key_files_takes_the_tokens_of_those_keys_and_no_others() {
    use esocial_gateway::subscriptions::ACK_TOKEN_KEY_PURPOSE;

    let files = esocial_testkit::TempDir::new("earlier-keys").expect("temporary directory");
    let (listed, unlisted) = (files.path().join("listed.pem"), files.path().join("unlisted.pem"));
    for path in [&listed, &unlisted] {
        esocial_gateway::ensure_signing_key(path).expect("key file");
    }
    let ack_key_of =
        |path: &std::path::Path| esocial_gateway::read_signing_key(path).expect("key").derive(ACK_TOKEN_KEY_PURPOSE);
    let listed_setting = listed.display().to_string();
    let gateway =
        TestGateway::spawn_with_gateway(&[], &[("ESOCIAL_GATEWAY_EARLIER_SIGNING_KEY_FILES", &listed_setting)]).await;
    let mut subscriptions = entitle_diia(&gateway).await;
    let (first, second) =
        (subscribe_to_registrations(&mut subscriptions).await, subscribe_to_registrations(&mut subscriptions).await);
    let mut registry = gateway.providers_directly(Some(gateway.service_token("registry-writer").await)).await;
    registry.register_provider(provider("Орган 1", 3_285_710)).await.expect("provider");

    // Nodes with each key give out the event of one subscription each.
    let (listed_token, _open) =
        token_from(&node_with_ack_key(&gateway, ack_key_of(&listed)).await, &gateway, &first).await;
    let (unlisted_token, _also_open) =
        token_from(&node_with_ack_key(&gateway, ack_key_of(&unlisted)).await, &gateway, &second).await;

    let refused = subscriptions
        .acknowledge_events(pb::AcknowledgeEventsRequest {
            subscription_id: second.subscription_id.clone(),
            ack_tokens: vec![unlisted_token],
        })
        .await
        .expect_err("a key not listed");
    assert_eq!(violated_fields(&refused), ["ack_tokens[0]"]);
    let acknowledged = subscriptions
        .acknowledge_events(pb::AcknowledgeEventsRequest {
            subscription_id: first.subscription_id.clone(),
            ack_tokens: vec![listed_token],
        })
        .await
        .expect("a key listed")
        .into_inner();
    assert_eq!(acknowledged.acknowledged, 1);
}

#[tokio::test]
async fn an_acknowledgement_token_given_before_a_key_rotation_still_acknowledges() {
    let (gateway, mut subscriptions) = diia_entitled_to_registrations().await;
    let created = subscribe_to_registrations(&mut subscriptions).await;
    let mut registry = gateway.providers_directly(Some(gateway.service_token("registry-writer").await)).await;
    registry.register_provider(provider("Орган 1", 3_285_700)).await.expect("provider");
    // The gateway with the key [7; 32] gives out the event and its token.
    let nats = async_nats::connect(&gateway.events.nats_url).await.expect("NATS");
    let (before, subscription) = streaming_below_grpc(&gateway, nats, &created, Duration::from_secs(30)).await;
    let consumers = before.ensure_consumers(&subscription).await.expect("consumers");
    let place = before.stream_place(&subscription.member_id).expect("a place");
    let mut receiver = before.stream(&subscription, consumers, 10, place, None, u64::MAX);
    let token = receiver.recv().await.expect("an event").expect("not an error").ack_token;

    // Started again with a new key, and the one it replaced as earlier, the
    // gateway takes the token; without the earlier key it would not.
    let unaware = node_with_key(&gateway, 8).await;
    assert_eq!(unaware.ack_subject(&subscription, &token), None, "a token of another key");
    let rotated = node_with_key(&gateway, 8).await.accepting(ack_key(7));
    let subject = rotated.ack_subject(&subscription, &token).expect("a token of the key the new one replaced");
    rotated.acknowledge(&[subject]).await.expect("acknowledged");

    // Acknowledged, the event does not come again once the stream ends.
    drop(receiver);
    let consumers = rotated.ensure_consumers(&subscription).await.expect("consumers");
    let place = rotated.stream_place(&subscription.member_id).expect("a place");
    let mut again = rotated.stream(&subscription, consumers, 10, place, None, u64::MAX);
    let more = tokio::time::timeout(Duration::from_secs(4), again.recv()).await;
    assert!(more.is_err(), "nothing comes again: {more:?}");
}

/// The event stream's consumers: the gateway's subscriptions' (`gw-…`),
/// then the others (the services' own).
async fn consumers(gateway: &TestGateway) -> (Vec<String>, Vec<String>) {
    use futures_util::TryStreamExt as _;
    let nats = async_nats::connect(&gateway.events.nats_url).await.expect("NATS");
    let stream =
        async_nats::jetstream::new(nats).get_stream(&gateway.events.settings.stream_name).await.expect("the stream");
    let mut names: Vec<String> = stream.consumer_names().try_collect().await.expect("consumer names");
    names.sort();
    names.into_iter().partition(|name| name.starts_with("gw-"))
}

async fn consumer_names(gateway: &TestGateway) -> Vec<String> {
    consumers(gateway).await.0
}

/// A Subscribe that read its subscription just before a delete removed it
/// makes the consumers again after the delete removed them: they are
/// removed again at once, and the member is told the subscription is gone.
/// Consumers left behind otherwise (a delete that could not reach NATS) are
/// removed by the gateway's sweep; a live subscription's stay.
#[tokio::test]
async fn consumers_of_a_deleted_subscription_are_not_left_behind() {
    let (gateway, mut subscriptions) = diia_entitled_to_registrations().await;
    let kept = subscribe_to_registrations(&mut subscriptions).await;
    let deleted = subscribe_to_registrations(&mut subscriptions).await;
    let kept_id: uuid::Uuid = kept.subscription_id.parse().expect("id");
    let deleted_id: uuid::Uuid = deleted.subscription_id.parse().expect("id");
    let kept_consumer = esocial_gateway::subscriptions::consumer_name(kept_id, 0);
    let deleted_consumer = esocial_gateway::subscriptions::consumer_name(deleted_id, 0);
    assert_eq!(consumer_names(&gateway).await, sorted([kept_consumer.clone(), deleted_consumer.clone()]));

    // Read before the delete, as the racing Subscribe read it.
    let node = second_node(&gateway).await;
    let pool = gateway.gateway_pool().await;
    let read = |id| {
        let pool = pool.clone();
        async move { esocial_gateway::subscriptions::subscription(&pool, id).await.expect("read").expect("live") }
    };
    let stale = read(deleted_id).await;
    subscriptions
        .delete_subscription(pb::DeleteSubscriptionRequest { subscription_id: deleted.subscription_id.clone() })
        .await
        .expect("deleted");
    assert_eq!(consumer_names(&gateway).await, std::slice::from_ref(&kept_consumer));

    // Making them without looking again leaves them behind (the race)...
    node.ensure_consumers(&stale).await.expect("consumers made");
    assert_eq!(consumer_names(&gateway).await, sorted([kept_consumer.clone(), deleted_consumer.clone()]));
    // ...which the sweep finds and removes, and only those: the live
    // subscription's and the services' own consumers stay.
    let (_, services_own) = consumers(&gateway).await;
    assert!(!services_own.is_empty(), "the registry follows the classifier on this stream");
    assert_eq!(node.remove_orphaned_consumers(&pool).await.expect("swept"), 1);
    assert_eq!(consumers(&gateway).await, (vec![kept_consumer.clone()], services_own));
    assert_eq!(node.remove_orphaned_consumers(&pool).await.expect("swept"), 0);

    // What Subscribe does: it looks again after making them.
    let opened = node.ensure_live_consumers(&pool, &stale).await.expect("looked");
    assert!(opened.is_none(), "a deleted subscription's consumers are not handed out");
    assert_eq!(consumer_names(&gateway).await, std::slice::from_ref(&kept_consumer));
    let kept_stored = read(kept_id).await;
    assert_eq!(
        node.ensure_live_consumers(&pool, &kept_stored).await.expect("looked").map(|found| found.len()),
        Some(1)
    );

    // Through the API, a deleted subscription is gone for Subscribe too.
    let refused = subscriptions
        .subscribe(pb::SubscribeRequest { subscription_id: deleted.subscription_id.clone(), window: 10 })
        .await
        .expect_err("deleted");
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    assert_eq!(consumer_names(&gateway).await, [kept_consumer]);
}

fn sorted<const N: usize>(mut names: [String; N]) -> [String; N] {
    names.sort();
    names
}
