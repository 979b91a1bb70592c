use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use esocial_auth::Role;
use esocial_proto::gateway::v1 as pb;
use esocial_proto::registry::v1 as registry_pb;
use futures_util::StreamExt as _;
use tonic::Code;
use tonic_types::StatusExt as _;

use crate::harness::*;

const REGISTER_PROVIDER: &str = "/esocial.registry.v1.ProviderService/RegisterProvider";
const VERIFY_CERTIFICATE: &str = "/esocial.registry.v1.IdpService/VerifyIdpCertificate";

#[tokio::test]
async fn a_member_without_the_right_is_denied_and_the_service_is_not_called() {
    let gateway = TestGateway::spawn().await;
    gateway.register_member(DIIA, "diia", None, &[REGISTER_PROVIDER]).await;
    gateway.register_member(BANK, "bank", None, &[VERIFY_CERTIFICATE]).await;

    let mut diia = gateway.providers(Some(gateway.system_token("diia").await)).await;
    let registered = diia.register_provider(provider("УСЗН Звенигородської РДА", 3_285_596)).await.expect("forwarded");
    let registered = registered.into_inner().provider.expect("provider");
    assert_eq!(registered.data.expect("data").name, "УСЗН Звенигородської РДА");
    assert_eq!(gateway.count("registry.providers").await, 1);

    // The bank's token carries the same role; only the gateway's right differs.
    let mut bank = gateway.providers(Some(gateway.system_token("bank").await)).await;
    let denied = bank.register_provider(provider("Інший орган", 1_436_050)).await.expect_err("no right");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains(REGISTER_PROVIDER), "names the method: {}", denied.message());
    assert!(denied.message().contains(BANK), "names the member: {}", denied.message());
    assert_eq!(gateway.count("registry.providers").await, 1, "the registry was not called");

    // The bank's own token is good at the gateway only: straight to the
    // registry it is refused, so the gateway cannot be bypassed.
    let mut bypass = gateway.providers_directly(Some(gateway.system_token("bank").await)).await;
    let refused = bypass.register_provider(provider("Інший орган", 1_436_050)).await.expect_err("not for the registry");
    assert_eq!(refused.code(), Code::Unauthenticated);

    // A system with the same role and a token for the registry may make the
    // call there: the gateway's right decided.
    let mut direct = gateway.providers_directly(Some(gateway.service_token("registry-writer").await)).await;
    direct.register_provider(provider("Інший орган", 1_436_050)).await.expect("the registry allows the role");
    assert_eq!(gateway.count("registry.providers").await, 2);
}

/// A service takes the token a forwarded call carries in `x-esocial-token`
/// as it takes one in `authorization`, and refuses a call that carries both.
#[tokio::test]
async fn a_service_takes_the_forwarded_token_header_and_refuses_two_tokens() {
    let gateway = TestGateway::spawn().await;
    let token = gateway.service_token("registry-writer").await;
    let with_headers = |pairs: Vec<(&'static str, String)>| {
        move |mut request: tonic::Request<()>| {
            for (name, value) in &pairs {
                request.metadata_mut().insert(*name, value.parse().expect("ascii"));
            }
            Ok(request)
        }
    };
    let channel = TestGateway::channel_to(gateway.registry_address).await;
    let mut forwarded = registry_pb::provider_service_client::ProviderServiceClient::with_interceptor(
        channel.clone(),
        with_headers(vec![("x-esocial-token", token.clone())]),
    );
    forwarded.register_provider(provider("УСЗН 1", 3_285_596)).await.expect("the forwarded token is verified");
    assert_eq!(gateway.count("registry.providers").await, 1);

    let mut both = registry_pb::provider_service_client::ProviderServiceClient::with_interceptor(
        channel,
        with_headers(vec![("authorization", format!("Bearer {token}")), ("x-esocial-token", token)]),
    );
    let refused = both.register_provider(provider("УСЗН 2", 3_285_597)).await.expect_err("two tokens");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("not both"), "{}", refused.message());
    assert_eq!(gateway.count("registry.providers").await, 1, "nothing written");
}

/// The gateway's own methods do not take a token from `x-esocial-token`:
/// the door identifies callers by `authorization` alone, and the message log
/// names the caller it identified.
#[tokio::test]
async fn the_gateways_own_methods_take_no_token_from_the_forwarded_token_header() {
    let gateway = TestGateway::spawn().await;
    let token = gateway.person_token(&[Role::SecurityAdmin]).await;
    let mut admin = pb::gateway_admin_service_client::GatewayAdminServiceClient::with_interceptor(
        gateway.channel().await,
        move |mut request: tonic::Request<()>| {
            request.metadata_mut().insert("x-esocial-token", token.parse().expect("ascii"));
            Ok(request)
        },
    );
    let refused = admin.list_members(pb::ListMembersRequest::default()).await.expect_err("no bearer token");
    assert_eq!(refused.code(), Code::Unauthenticated);
    gateway.admin().await.list_members(pb::ListMembersRequest::default()).await.expect("with authorization");
}

#[tokio::test]
async fn callers_that_are_not_active_members_are_unauthenticated() {
    let gateway = TestGateway::spawn().await;
    gateway.register_member(DIIA, "diia", None, &[VERIFY_CERTIFICATE]).await;
    let verify = registry_pb::VerifyIdpCertificateRequest { code: "1234567890123452".to_owned() };

    let mut unknown_client = gateway.idp(Some(gateway.system_token("stranger").await)).await;
    let status = unknown_client.verify_idp_certificate(verify.clone()).await.expect_err("not a member");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("client:stranger"), "{}", status.message());

    let mut no_token = gateway.idp(None).await;
    assert_eq!(
        no_token.verify_idp_certificate(verify.clone()).await.expect_err("no token").code(),
        Code::Unauthenticated
    );

    let mut forged = gateway.idp(Some("eyJhbGciOiJub25lIn0.eyJzdWIiOiJjbGllbnQ6ZGlpYSJ9.".to_owned())).await;
    assert_eq!(
        forged.verify_idp_certificate(verify.clone()).await.expect_err("alg none").code(),
        Code::Unauthenticated
    );

    // A person is not a member system, whatever their roles.
    let mut person = gateway.idp(Some(gateway.person_token(&[Role::SecurityAdmin]).await)).await;
    assert_eq!(person.verify_idp_certificate(verify.clone()).await.expect_err("person").code(), Code::Unauthenticated);

    let mut diia = gateway.idp(Some(gateway.system_token("diia").await)).await;
    let answer = diia.verify_idp_certificate(verify.clone()).await.expect("member with the right").into_inner();
    assert!(!answer.valid, "an unknown code is not valid");

    gateway.suspend(DIIA).await;
    let suspended = diia.verify_idp_certificate(verify).await.expect_err("suspended member");
    assert_eq!(suspended.code(), Code::Unauthenticated);
    assert!(suspended.message().contains("suspended"), "{}", suspended.message());
    // The same at the gateway's own methods for members: its metaservices
    // and its subscriptions.
    let token = gateway.system_token("diia").await;
    let listed = gateway
        .meta(Some(token.clone()))
        .await
        .list_allowed_methods(pb::ListAllowedMethodsRequest::default())
        .await
        .expect_err("suspended member");
    let subscriptions = gateway
        .subscriptions(Some(token))
        .await
        .list_subscriptions(pb::ListSubscriptionsRequest::default())
        .await
        .expect_err("suspended member");
    for refused in [listed, subscriptions] {
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        assert!(refused.message().contains("suspended"), "{}", refused.message());
    }
}

/// `verify` made `calls` times through `idp`, 16 at a time: the code of
/// each (`Ok` for an answer).
async fn many_calls(idp: &Idp, verify: &registry_pb::VerifyIdpCertificateRequest, calls: usize) -> Vec<Code> {
    futures_util::stream::iter(0..calls)
        .map(|_| {
            let mut idp = idp.clone();
            let verify = verify.clone();
            async move { idp.verify_idp_certificate(verify).await.map_or_else(|status| status.code(), |_| Code::Ok) }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

#[tokio::test]
async fn refusals_of_callers_that_are_not_members_are_logged_within_one_allowance() {
    let gateway = TestGateway::spawn().await;
    gateway.register_member(DIIA, "diia", None, &[VERIFY_CERTIFICATE]).await;
    let verify = registry_pb::VerifyIdpCertificateRequest { code: "1234567890123452".to_owned() };
    // A valid token of a system that is not a member, many times at once.
    let stranger = gateway.idp(Some(gateway.system_token("stranger").await)).await;
    let calls = 600;
    let started = Instant::now();
    let codes = many_calls(&stranger, &verify, calls).await;
    let elapsed = started.elapsed();
    assert!(codes.iter().all(|code| *code == Code::Unauthenticated), "{codes:?}");

    // A member's call after the flood is served and logged: the log was not
    // filled, and its entry comes after every refusal that was logged.
    let mut diia = gateway.idp(Some(gateway.system_token("diia").await)).await;
    diia.verify_idp_certificate(verify).await.expect("a member is served");
    let pool = gateway.pool.clone();
    let logged = eventually(Duration::from_secs(20), || {
        let pool = pool.clone();
        async move {
            let (strangers, members): (i64, i64) = sqlx::query_as(
                "SELECT count(*) FILTER (WHERE caller = 'client:stranger'), count(*) FILTER (WHERE member_id = $1)
                 FROM gateway.message_log",
            )
            .bind(DIIA)
            .fetch_one(&pool)
            .await
            .expect("log");
            (members == 1)
                .then_some(strangers)
                .ok_or(format!("the member's call is not logged yet ({strangers} refusals)"))
        }
    })
    .await;
    // The burst of 200, then 50 a second.
    let allowed = 200 + i64::try_from((50 * elapsed.as_millis()).div_ceil(1000)).expect("a short run");
    assert!(logged >= 200, "the burst is logged: {logged}");
    assert!(logged <= allowed, "{logged} refusals logged in {elapsed:?}, at most {allowed} allowed");
    assert!(logged < i64::try_from(calls).expect("count"), "{logged} of {calls} refusals logged in {elapsed:?}");
}

#[tokio::test]
async fn the_service_gets_a_token_exchanged_for_it_and_a_client_deactivated_at_identity_is_refused() {
    let gateway = TestGateway::spawn().await;
    gateway.register_member(DIIA, "diia", None, &[REGISTER_PROVIDER]).await;
    gateway.register_member(BANK, "bank", None, &[REGISTER_PROVIDER]).await;
    let diia_token = gateway.system_token("diia").await;
    let bank_token = gateway.system_token("bank").await;

    // The member's token is refused by the registry itself; through the
    // gateway the same call works, with a token exchanged for the registry.
    let mut direct = gateway.providers_directly(Some(diia_token.clone())).await;
    let refused =
        direct.register_provider(provider("УСЗН", 3_285_596)).await.expect_err("a token for the gateway only");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let mut diia = gateway.providers(Some(diia_token)).await;
    for (name, edrpou) in [("УСЗН 1", 3_285_596), ("УСЗН 2", 3_285_597), ("УСЗН 3", 3_285_598)] {
        diia.register_provider(provider(name, edrpou)).await.expect("through the gateway");
    }
    assert_eq!(gateway.count("registry.providers").await, 3);

    // The bank's client is deactivated at identity after its token was
    // issued: the gateway still accepts the token's signature, but identity
    // exchanges it no more, so nothing reaches the registry for it.
    sqlx::query("UPDATE identity.system_clients SET active = false WHERE client_id = 'bank'")
        .execute(&gateway.pool)
        .await
        .expect("deactivated");
    let mut bank = gateway.providers(Some(bank_token)).await;
    let refused = bank.register_provider(provider("Інший орган", 1_436_050)).await.expect_err("no internal token");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("not accepted for the services behind the gateway"), "{}", refused.message());
    assert!(refused.message().contains("bank"), "names the client: {}", refused.message());
    assert_eq!(gateway.count("registry.providers").await, 3, "the registry was not called");
    eventually(Duration::from_secs(20), || async {
        let logged: Vec<(String, i32)> =
            sqlx::query_as("SELECT member_id, status_code FROM gateway.message_log WHERE member_id IN ($1, $2)")
                .bind(DIIA)
                .bind(BANK)
                .fetch_all(&gateway.pool)
                .await
                .expect("log");
        let served = logged.iter().filter(|(member, status)| member == DIIA && *status == 0).count();
        let refusal = logged.contains(&(BANK.to_owned(), Code::Unauthenticated as i32));
        (served == 3 && refusal).then_some(()).ok_or(format!("not logged: {logged:?}"))
    })
    .await;
}

/// The Diia portal's client with `limits`, after `calls` calls that must
/// all pass; and the call it makes. Another member calls first, so the
/// connection to the registry and its token keys are ready and the calls
/// take milliseconds (no token refills between them).
async fn limited_member_after(
    gateway: &TestGateway,
    limits: pb::Limits,
    calls: usize,
) -> (Idp, registry_pb::VerifyIdpCertificateRequest) {
    gateway.register_member(DIIA, "diia", Some(limits), &[VERIFY_CERTIFICATE]).await;
    gateway.register_member(BANK, "bank", None, &[VERIFY_CERTIFICATE]).await;
    let verify = registry_pb::VerifyIdpCertificateRequest { code: "1234567890123452".to_owned() };
    let mut bank = gateway.idp(Some(gateway.system_token("bank").await)).await;
    bank.verify_idp_certificate(verify.clone()).await.expect("warm-up");
    let mut diia = gateway.idp(Some(gateway.system_token("diia").await)).await;
    for call in 0..calls {
        diia.verify_idp_certificate(verify.clone()).await.unwrap_or_else(|status| panic!("call {call}: {status:?}"));
    }
    (diia, verify)
}

#[tokio::test]
async fn a_member_over_its_rate_gets_resource_exhausted_with_retry_information() {
    let gateway = TestGateway::spawn().await;
    let limits = pb::Limits { requests_per_second: 1, burst: 3, message_bytes_max: 0 };
    let (mut diia, verify) = limited_member_after(&gateway, limits, 3).await;
    let refused = diia.verify_idp_certificate(verify.clone()).await.expect_err("over the burst");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let retry = refused.get_details_retry_info().expect("retry info").retry_delay.expect("delay");
    assert!(retry > Duration::ZERO && retry <= Duration::from_secs(1), "{retry:?}");
    tokio::time::sleep(retry).await;
    diia.verify_idp_certificate(verify).await.expect("a token refilled");
}

#[tokio::test]
async fn a_member_s_refusals_for_its_rate_are_logged_within_as_many_again_as_its_limits() {
    let gateway = TestGateway::spawn().await;
    let limits = pb::Limits { requests_per_second: 2, burst: 5, message_bytes_max: 0 };
    let (diia, verify) = limited_member_after(&gateway, limits, 0).await;
    // A flood far over the member's rate.
    let calls = 400;
    let started = Instant::now();
    let codes = many_calls(&diia, &verify, calls).await;
    let elapsed = started.elapsed();
    let served = codes.iter().filter(|code| **code == Code::Ok).count();
    let refused = codes.iter().filter(|code| **code == Code::ResourceExhausted).count();
    assert_eq!(served + refused, calls, "{codes:?}");
    // Another member's call after the flood is served and logged after
    // every entry of the flood.
    let mut bank = gateway.idp(Some(gateway.system_token("bank").await)).await;
    bank.verify_idp_certificate(verify).await.expect("another member is served");
    let (ok, exhausted): (i64, i64) = eventually(Duration::from_secs(20), || async {
        let (ok, exhausted, bank): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE member_id = $1 AND status_code = 0),
                    count(*) FILTER (WHERE member_id = $1 AND status_code = 8),
                    count(*) FILTER (WHERE member_id = $2)
             FROM gateway.message_log",
        )
        .bind(DIIA)
        .bind(BANK)
        .fetch_one(&gateway.pool)
        .await
        .expect("log");
        // The warm-up call and the one after the flood.
        (bank == 2).then_some((ok, exhausted)).ok_or(format!("the other member's call is not logged yet ({bank})"))
    })
    .await;
    assert_eq!(ok, i64::try_from(served).expect("count"), "every served call is logged");
    // The burst of 5, then 2 a second, for the refusals logged as for the
    // calls served.
    let allowed = 5 + i64::try_from((2 * elapsed.as_millis()).div_ceil(1000)).expect("a short run");
    assert!(exhausted >= 5, "the allowance's burst is logged: {exhausted}");
    assert!(exhausted <= allowed, "{exhausted} refusals logged in {elapsed:?}, at most {allowed} allowed");
    assert!(exhausted < i64::try_from(refused).expect("count"), "{exhausted} of {refused} refusals logged");
}

#[tokio::test]
async fn each_of_several_replicas_holds_a_member_to_its_share_of_the_limits() {
    // Four replicas share the calls: this one lets through a quarter of the
    // burst of 8, and refills at a quarter of 4 a second (alone it would
    // wait at most a quarter of a second for the next token).
    let gateway = TestGateway::spawn_with(&[("ESOCIAL_GATEWAY_REPLICAS", "4")]).await;
    let limits = pb::Limits { requests_per_second: 4, burst: 8, message_bytes_max: 0 };
    let (mut diia, verify) = limited_member_after(&gateway, limits, 2).await;
    let refused = diia.verify_idp_certificate(verify).await.expect_err("over this replica's share of the burst");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("limit of 4 requests a second (burst 8)"), "{}", refused.message());
    let retry = refused.get_details_retry_info().expect("retry info").retry_delay.expect("delay");
    assert!(retry > Duration::from_millis(250) && retry <= Duration::from_secs(1), "one a second here: {retry:?}");
}

/// A request body that never yields and never ends.
struct NeverEnds;

impl http_body::Body for NeverEnds {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

/// A call as a client in another language may make it, over a plain
/// HTTP/2 connection: `method` with the member's `token` and `headers`,
/// and a request body that never ends. The gateway must answer within 5 s.
async fn call_without_end(
    gateway: &TestGateway,
    method: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> http::Response<hyper::body::Incoming> {
    let stream = tokio::net::TcpStream::connect(gateway.address).await.expect("connects");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("HTTP/2");
    tokio::spawn(connection);
    let mut request = http::Request::post(format!("http://{}{method}", gateway.address))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    tokio::time::timeout(Duration::from_secs(5), sender.send_request(request.body(NeverEnds).expect("request")))
        .await
        .expect("the gateway answers, not the client's patience")
        .expect("a response")
}

#[tokio::test]
async fn a_service_that_does_not_answer_within_the_deadline_gives_deadline_exceeded() {
    let gateway = TestGateway::spawn().await;
    gateway.register_member(DIIA, "diia", None, &["/esocial.registry.v1.RegistryService/*"]).await;
    let token = gateway.system_token("diia").await;
    // An import whose stream never ends: the registry cannot answer. The
    // client only states its deadline (`grpc-timeout`, as a client in
    // another language may) and does not keep it itself; the gateway does.
    let started = Instant::now();
    let response = call_without_end(
        &gateway,
        "/esocial.registry.v1.RegistryService/ImportPersons",
        &token,
        &[("grpc-timeout", "300m")],
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let code = response.headers().get("grpc-status").and_then(|value| value.to_str().ok()).unwrap_or_default();
    assert_eq!(code, (Code::DeadlineExceeded as i32).to_string(), "{:?}", response.headers());
    let codes: Vec<i32> = eventually(Duration::from_secs(20), || async {
        let codes: Vec<i32> = sqlx::query_scalar(
            "SELECT status_code FROM gateway.message_log WHERE method = '/esocial.registry.v1.RegistryService/ImportPersons'",
        )
        .fetch_all(&gateway.pool)
        .await
        .expect("log");
        if codes.is_empty() { Err("no entry".to_owned()) } else { Ok(codes) }
    })
    .await;
    assert_eq!(codes, [Code::DeadlineExceeded as i32]);
}

#[tokio::test]
async fn a_call_given_up_while_the_door_waits_for_token_keys_still_gets_its_entry() {
    // The identity service the gateway asks for its token keys takes the
    // connection and never answers; the other services reach it as usual.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let silent_url = format!("http://{}", silent.local_addr().expect("address"));
    let gateway = TestGateway::spawn_with_gateway(&[], &[("ESOCIAL_IDENTITY_URL", &silent_url)]).await;
    let token = gateway.system_token("diia").await;
    // The gateway has no keys yet: the door waits for them until the
    // call's deadline passes.
    let started = Instant::now();
    let response = call_without_end(&gateway, VERIFY_CERTIFICATE, &token, &[("grpc-timeout", "300m")]).await;
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let code = response.headers().get("grpc-status").and_then(|value| value.to_str().ok()).unwrap_or_default();
    assert_eq!(code, (Code::DeadlineExceeded as i32).to_string(), "{:?}", response.headers());
    let entries: Vec<(String, String, i32)> = eventually(Duration::from_secs(20), || async {
        let entries: Vec<(String, String, i32)> =
            sqlx::query_as("SELECT member_id, caller, status_code FROM gateway.message_log WHERE method = $1")
                .bind(VERIFY_CERTIFICATE)
                .fetch_all(&gateway.pool)
                .await
                .expect("log");
        if entries.is_empty() { Err("no entry".to_owned()) } else { Ok(entries) }
    })
    .await;
    // Not identified: no member and no caller.
    assert_eq!(entries, [(String::new(), String::new(), Code::DeadlineExceeded as i32)]);
    drop(silent);
}

/// The path and the headers of each call a test's own service got.
type Recorded = Arc<Mutex<Vec<(String, http::HeaderMap)>>>;

/// A service of the test's own on `listener`: it records the path and the
/// headers of every call it gets, and answers each with `NOT_FOUND`
/// and `answer` at once (trailers only, so no message is needed). Aborting
/// its task closes the listener and every connection.
fn answering_upstream(
    listener: tokio::net::TcpListener,
    answer: &'static str,
) -> (tokio::task::JoinHandle<()>, Recorded) {
    let calls: Recorded = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&calls);
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let calls = Arc::clone(&calls);
            let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                calls.lock().expect("calls").push((request.uri().path().to_owned(), request.headers().clone()));
                let response = http::Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", (Code::NotFound as i32).to_string())
                    .header("grpc-message", answer)
                    .body(String::new());
                async move { response }
            });
            connections.spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (task, recorded)
}

/// A service of the test's own on `listener` that takes every call and
/// never answers it: `arrived` gets each call's path as it comes, and
/// `reset` the same path once the call is taken back (reset by the
/// gateway: hyper drops the call's future). Aborting its task closes the
/// listener and every connection.
fn silent_upstream(
    listener: tokio::net::TcpListener,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    /// Says which call was taken back when the call's future is dropped.
    struct Reset(String, tokio::sync::mpsc::UnboundedSender<String>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let _ = self.1.send(std::mem::take(&mut self.0));
        }
    }
    let (arrived, arrivals) = tokio::sync::mpsc::unbounded_channel();
    let (reset, resets) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let (arrived, reset) = (arrived.clone(), reset.clone());
            let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let path = request.uri().path().to_owned();
                let _ = arrived.send(path.clone());
                let taken_back = Reset(path, reset.clone());
                async move {
                    // Holds the request (its stream stays open) and never answers.
                    let _held = (request, taken_back);
                    std::future::pending::<Result<http::Response<String>, std::convert::Infallible>>().await
                }
            });
            connections.spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (task, arrivals, resets)
}

/// Waits at most 10 s for `path` among the paths `calls` gives (the
/// gateway also asks the service for its reflection).
async fn arrived(calls: &mut tokio::sync::mpsc::UnboundedReceiver<String>, path: &str) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while calls.recv().await.expect("the service runs") != path {}
    })
    .await
    .unwrap_or_else(|_| panic!("{path} within 10 s"));
}

/// A client stream (its service answers with one message).
const IMPORT: &str = "/esocial.registry.v1.RegistryService/ImportPersons";

/// A gateway (given `gateway_only` settings) whose registry package goes to
/// a [`silent_upstream`], and the Diia portal's member with a right to
/// [`IMPORT`]: the gateway, the service's task, its arrivals and resets.
async fn gateway_before_a_silent_registry(
    gateway_only: &[(&str, &str)],
) -> (
    TestGateway,
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let routes = format!("esocial.registry.v1=http://{}", listener.local_addr().expect("address"));
    let (service, arrivals, resets) = silent_upstream(listener);
    let gateway = TestGateway::spawn_with_gateway(&[("ESOCIAL_GATEWAY_ROUTES", &routes)], gateway_only).await;
    gateway.register_member(DIIA, "diia", None, &[IMPORT]).await;
    (gateway, service, arrivals, resets)
}

#[tokio::test]
async fn a_silent_client_stream_the_service_has_not_answered_yet_ends_once_its_member_is_suspended() {
    let (gateway, service, mut arrivals, mut resets) = gateway_before_a_silent_registry(&[]).await;
    let token = gateway.system_token("diia").await;

    // A client stream that sends nothing, to a service that answers only
    // at the stream's end: neither side has anything to pass. Once the
    // service has the call, the member is suspended; the gateway answers
    // at once (within the 5 s the call is given), not at the deadline.
    let calling = call_without_end(&gateway, IMPORT, &token, &[]);
    let suspending = async {
        arrived(&mut arrivals, IMPORT).await;
        gateway.suspend(DIIA).await;
    };
    let (response, ()) = tokio::join!(calling, suspending);
    let header = |name: &str| response.headers().get(name).and_then(|value| value.to_str().ok()).unwrap_or_default();
    assert_eq!(header("grpc-status"), (Code::Unauthenticated as i32).to_string(), "{:?}", response.headers());
    assert!(header("grpc-message").contains("suspended"), "{:?}", response.headers());

    // The service's side is taken back, and the entry says how the call ended.
    arrived(&mut resets, IMPORT).await;
    assert_eq!(logged_codes(&gateway, IMPORT, 1).await, [Code::Unauthenticated as i32]);
    service.abort();
}

/// A client stream answered with one message: while the client sends, the
/// service may take its time; once the client has ended its stream, the
/// service has the time a unary call has (`ESOCIAL_GRPC_TIMEOUT_MS`, 1 s
/// here) to answer, and one that does not is given up, not waited for
/// until the stream's deadline.
#[tokio::test]
async fn a_service_that_does_not_answer_a_client_stream_once_it_has_ended_gives_deadline_exceeded() {
    let (gateway, service, mut arrivals, mut resets) =
        gateway_before_a_silent_registry(&[("ESOCIAL_GRPC_TIMEOUT_MS", "1000")]).await;
    let mut persons = gateway.persons(Some(gateway.system_token("diia").await)).await;
    let (chunks, requests) = tokio::sync::mpsc::channel::<registry_pb::ImportPersonsChunk>(4);
    chunks.send(registry_pb::ImportPersonsChunk::default()).await.expect("a chunk");
    let calling = tokio::spawn(async move {
        let answer = persons.import_persons(tokio_stream::wrappers::ReceiverStream::new(requests)).await;
        (answer, Instant::now())
    });
    arrived(&mut arrivals, IMPORT).await;

    // Still sending (its stream open) for longer than a unary call may take:
    // not given up.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(!calling.is_finished(), "a stream the client still sends on is not given up");
    let ended = Instant::now();
    drop(chunks);
    let (answer, answered) = tokio::time::timeout(Duration::from_secs(10), calling)
        .await
        .expect("answered within 10 s")
        .expect("the call's task");
    let status = answer.expect_err("the service never answers");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("end of the request stream"), "{}", status.message());
    let waited = answered - ended;
    assert!(waited >= Duration::from_millis(1_000), "not before the service's second: {waited:?}");
    // The service's side is taken back, and the entry says how it ended.
    arrived(&mut resets, IMPORT).await;
    assert_eq!(logged_codes(&gateway, IMPORT, 1).await, [Code::DeadlineExceeded as i32]);
    service.abort();
}

#[tokio::test]
async fn a_service_that_restarts_is_reached_again() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let address = listener.local_addr().expect("address");
    let (first, _) = answering_upstream(listener, "first");
    let routes = format!("esocial.registry.v1=http://{address}");
    let gateway = TestGateway::spawn_with(&[("ESOCIAL_GATEWAY_ROUTES", &routes)]).await;
    gateway.register_member(DIIA, "diia", None, &[VERIFY_CERTIFICATE]).await;
    let verify = registry_pb::VerifyIdpCertificateRequest { code: "1234567890123452".to_owned() };
    let mut idp = gateway.idp(Some(gateway.system_token("diia").await)).await;
    let status = idp.verify_idp_certificate(verify.clone()).await.expect_err("the test's service answers NOT_FOUND");
    assert_eq!((status.code(), status.message()), (Code::NotFound, "first"));

    // The service stops, and its connections with it: a call finds no one.
    first.abort();
    let _ = first.await;
    let status = idp.verify_idp_certificate(verify.clone()).await.expect_err("no service");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    // It starts again on the same port; the gateway connects again.
    let listener = tokio::net::TcpListener::bind(address).await.expect("the same port again");
    let (second, _) = answering_upstream(listener, "second");
    for _ in 0..3 {
        let status =
            idp.verify_idp_certificate(verify.clone()).await.expect_err("the test's service answers NOT_FOUND");
        assert_eq!((status.code(), status.message()), (Code::NotFound, "second"));
    }
    second.abort();
}

#[tokio::test]
async fn the_deadline_passed_on_is_what_is_left_after_the_token_exchange() {
    // The gateway reaches identity through a way that holds every chunk
    // for 300 ms, so a token exchange takes at least that; the registry's
    // package goes to a service that records the deadline it was given.
    let delay = Duration::from_millis(300);
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let upstream_url = format!("http://{}", upstream.local_addr().expect("address"));
    let (_upstream, calls) = answering_upstream(upstream, "recorded");
    let identity = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let slow_identity = esocial_testkit::TcpProxy::start_slow(identity.local_addr().expect("address"), delay)
        .await
        .expect("a slow way to identity");
    let slow_identity_url = format!("http://{}", slow_identity.address());
    let routes = format!("esocial.registry.v1={upstream_url}");
    let gateway = TestGateway::spawn_with_identity_on(
        identity,
        &[("ESOCIAL_IDENTITY_URL", &slow_identity_url), ("ESOCIAL_GATEWAY_ROUTES", &routes)],
    )
    .await;
    gateway.register_member(DIIA, "diia", None, &[VERIFY_CERTIFICATE]).await;
    let verify = registry_pb::VerifyIdpCertificateRequest { code: "1234567890123452".to_owned() };

    // The first call brings the gateway identity's keys, so that the
    // second waits only for its own token's exchange.
    let mut idp = gateway.idp(Some(gateway.system_token("diia").await)).await;
    let status = idp.verify_idp_certificate(verify.clone()).await.expect_err("the test's service answers NOT_FOUND");
    assert_eq!((status.code(), status.message()), (Code::NotFound, "recorded"));

    // A new token (a new id) is exchanged afresh.
    let mut idp = gateway.idp(Some(gateway.system_token("diia").await)).await;
    let mut request = tonic::Request::new(verify);
    request.set_timeout(Duration::from_secs(10));
    let started = Instant::now();
    let status = idp.verify_idp_certificate(request).await.expect_err("the test's service answers NOT_FOUND");
    let took = started.elapsed();
    assert_eq!((status.code(), status.message()), (Code::NotFound, "recorded"), "passed on unchanged");

    let calls = calls.lock().expect("calls").clone();
    let verifies: Vec<&http::HeaderMap> =
        calls.iter().filter(|(path, _)| path == VERIFY_CERTIFICATE).map(|(_, headers)| headers).collect();
    assert_eq!(verifies.len(), 2, "{calls:?}");
    let given = verifies[1].get("grpc-timeout").and_then(|value| value.to_str().ok()).expect("a grpc-timeout");
    let milliseconds: u64 = given.strip_suffix('m').and_then(|number| number.parse().ok()).expect("milliseconds");
    // At least the exchange's wait was taken off the caller's 10 s…
    let at_most = 10_000 - u64::try_from(delay.as_millis()).expect("ms");
    assert!(milliseconds <= at_most, "{given} passed on after an exchange of at least {delay:?}");
    // …and no more than the whole call took (rounded down to the millisecond).
    let took = u64::try_from(took.as_millis()).expect("ms");
    assert!(milliseconds + took + 1 >= 10_000, "{given} passed on, the call took {took} ms");
}

/// A member that sends metadata only the gateway may set gets none of it to
/// the service: the service sees the member the gateway identified, the
/// token exchanged for it, the gateway's node, and neither the caller's
/// other `x-esocial-*` values nor its bearer token.
#[tokio::test]
async fn metadata_only_the_gateway_sets_is_replaced_on_the_way_to_the_service() {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let routes = format!("esocial.registry.v1=http://{}", upstream.local_addr().expect("address"));
    let (_upstream, calls) = answering_upstream(upstream, "recorded");
    let gateway = TestGateway::spawn_with(&[("ESOCIAL_GATEWAY_ROUTES", &routes)]).await;
    gateway.register_member(DIIA, "diia", None, &[VERIFY_CERTIFICATE]).await;
    let member_token = gateway.system_token("diia").await;
    // A real internal token (a service's), which the caller should never
    // be able to hand a service through the gateway.
    let forged_token = gateway.service_token("registry-writer").await;
    let bearer = format!("Bearer {member_token}");
    let forged = [
        ("x-esocial-token", forged_token.clone()),
        ("x-esocial-member", "UA/GOV/00000000/forged".to_owned()),
        ("x-esocial-gateway-node", "elsewhere".to_owned()),
        ("x-esocial-roles", "security_admin".to_owned()),
    ];
    let mut idp = registry_pb::idp_service_client::IdpServiceClient::with_interceptor(
        gateway.channel().await,
        move |mut request: tonic::Request<()>| {
            request.metadata_mut().insert("authorization", bearer.parse().expect("ascii"));
            for (name, value) in &forged {
                request.metadata_mut().insert(*name, value.parse().expect("ascii"));
            }
            Ok(request)
        },
    );
    let verify = registry_pb::VerifyIdpCertificateRequest { code: "1234567890123452".to_owned() };
    let status = idp.verify_idp_certificate(verify).await.expect_err("the test's service answers NOT_FOUND");
    assert_eq!((status.code(), status.message()), (Code::NotFound, "recorded"), "forwarded, answered unchanged");

    let calls = calls.lock().expect("calls").clone();
    // (The gateway also asks the service's reflection about the method.)
    let forwarded: Vec<&http::HeaderMap> =
        calls.iter().filter(|(path, _)| path == VERIFY_CERTIFICATE).map(|(_, headers)| headers).collect();
    let [headers] = forwarded.as_slice() else { panic!("one call forwarded: {calls:?}") };
    let value =
        |name: &str| headers.get_all(name).iter().map(|value| value.to_str().expect("ascii")).collect::<Vec<_>>();
    assert_eq!(value("x-esocial-member"), [DIIA], "the member the gateway identified, once");
    let node = value("x-esocial-gateway-node");
    assert!(node.len() == 1 && node[0] != "elsewhere", "the gateway's own node: {node:?}");
    let token = value("x-esocial-token");
    assert_eq!(token.len(), 1, "one token: {token:?}");
    assert_ne!(token[0], forged_token, "not the caller's");
    assert_ne!(token[0], member_token, "nor the member's own: one exchanged for it");
    let claims = token[0].split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).expect("base64url"),
    )
    .expect("JSON claims");
    assert_eq!(claims["sub"], "client:diia", "for the member's client");
    assert_eq!(claims["aud"], "esocial.registry", "for the registry");
    assert_eq!(claims["act"]["sub"], "client:esocial-gateway", "obtained by the gateway");
    assert!(value("x-esocial-roles").is_empty(), "the caller's other internal metadata is gone");
    assert!(value("authorization").is_empty(), "the member's bearer token stays at the gateway");
}

#[tokio::test]
async fn a_compressed_request_is_refused_so_that_the_size_limit_holds() {
    let gateway = TestGateway::spawn().await;
    gateway.register_member(DIIA, "diia", None, &[VERIFY_CERTIFICATE]).await;
    let token = gateway.system_token("diia").await;
    let response = call_without_end(&gateway, VERIFY_CERTIFICATE, &token, &[("grpc-encoding", "gzip")]).await;
    let code = response.headers().get("grpc-status").and_then(|value| value.to_str().ok()).unwrap_or_default();
    assert_eq!(code, (Code::Unimplemented as i32).to_string(), "{:?}", response.headers());
    let message = response.headers().get("grpc-message").and_then(|value| value.to_str().ok()).unwrap_or_default();
    assert!(message.contains("uncompressed"), "{message}");

    // A second encoding after `identity` is seen too: some services take
    // the last of two.
    let response = call_without_end(
        &gateway,
        VERIFY_CERTIFICATE,
        &token,
        &[("grpc-encoding", "identity"), ("grpc-encoding", "gzip")],
    )
    .await;
    let code = response.headers().get("grpc-status").and_then(|value| value.to_str().ok()).unwrap_or_default();
    assert_eq!(code, (Code::Unimplemented as i32).to_string(), "{:?}", response.headers());
}

#[tokio::test]
async fn a_call_to_a_very_long_path_is_refused_and_logged_cut_and_the_log_goes_on() {
    let gateway = TestGateway::spawn().await;
    gateway.register_member(DIIA, "diia", None, &[VERIFY_CERTIFICATE]).await;
    let token = gateway.system_token("diia").await;
    // Letters that do not repeat (xorshift), so that PostgreSQL could not
    // compress them into an index entry of the log.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let name: String = (0..10_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + u8::try_from(state % 26).expect("a letter"))
        })
        .collect();
    let path = format!("/esocial.registry.v1.IdpService/{name}");
    let shown = format!("{}… ({} bytes)", &path[..esocial_gateway::domain::METHOD_SHOWN_MAX], path.len());

    let response = call_without_end(&gateway, &path, &token, &[]).await;
    let status = tonic::Status::from_header_map(response.headers()).expect("a trailers-only refusal");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().ends_with(&shown), "{}", status.message());

    // The refusal's entry is written, with the path cut: the whole path would
    // not fit the log's index, and the writer would stop at it.
    let members_entries = async || {
        let entries: Vec<(String, i32)> = sqlx::query_as(
            "SELECT method, status_code FROM gateway.message_log WHERE member_id = $1 ORDER BY sequence",
        )
        .bind(DIIA)
        .fetch_all(&gateway.pool)
        .await
        .expect("the log");
        entries
    };
    let logged = eventually(Duration::from_secs(20), || async {
        let entries = members_entries().await;
        (!entries.is_empty()).then_some(entries).ok_or_else(|| "the refusal is not logged".to_owned())
    })
    .await;
    assert_eq!(logged, [(shown.clone(), Code::PermissionDenied as i32)]);

    // The log goes on: a call after it is served and logged.
    let mut diia = gateway.idp(Some(token)).await;
    let verify = registry_pb::VerifyIdpCertificateRequest { code: "1234567890123452".to_owned() };
    diia.verify_idp_certificate(verify).await.expect("served after it");
    let logged = eventually(Duration::from_secs(20), || async {
        let entries = members_entries().await;
        (entries.len() == 2).then_some(entries).ok_or_else(|| "the call after it is not logged".to_owned())
    })
    .await;
    assert_eq!(logged[1], (VERIFY_CERTIFICATE.to_owned(), Code::Ok as i32));
    let pool = gateway.gateway_pool().await;
    let reports =
        esocial_gateway::verify::verify(&pool, &gateway.log_keys, None, None).await.expect("verification runs");
    assert!(!reports.is_empty() && reports.iter().all(esocial_gateway::verify::ChainReport::is_intact), "{reports:?}");
}

#[tokio::test]
async fn the_callers_trace_continues_through_the_gateway_into_the_service() {
    let gateway = TestGateway::spawn().await;
    gateway.register_member(DIIA, "diia", None, &[REGISTER_PROVIDER]).await;
    let mut diia = gateway.providers(Some(gateway.system_token("diia").await)).await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let callers_span = "b7ad6b7169203331";
    let mut request = tonic::Request::new(provider("УСЗН Уманської РДА", 3_285_596));
    request.metadata_mut().insert("traceparent", format!("00-{trace_id}-{callers_span}-01").parse().expect("ascii"));
    let registered = diia.register_provider(request).await.expect("forwarded").into_inner();
    let provider_id = registered.provider.expect("provider").id;

    // The registry's event carries the trace context of the registry's own
    // span: in the caller's trace, not the caller's span.
    let traceparent: Option<String> =
        sqlx::query_scalar("SELECT traceparent FROM registry.outbox WHERE subject_id = $1")
            .bind(&provider_id)
            .fetch_one(&gateway.pool)
            .await
            .expect("the event");
    let traceparent = traceparent.expect("the event has trace context");
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    assert_eq!(fields[1], trace_id, "the caller's trace goes on: {traceparent}");
    assert_ne!(fields[2], callers_span, "the service's span is not the caller's: {traceparent}");
    assert_eq!(fields[3], "01", "sampled, as the caller asked: {traceparent}");
}

#[tokio::test]
async fn a_client_stream_passes_through_and_an_oversized_request_is_cut_off() {
    let gateway = TestGateway::spawn().await;
    let limits = pb::Limits { requests_per_second: 0, burst: 0, message_bytes_max: 4096 };
    gateway
        .register_member(DIIA, "diia", Some(limits), &["/esocial.registry.v1.RegistryService/*", REGISTER_PROVIDER])
        .await;
    let mut persons = gateway.persons(Some(gateway.system_token("diia").await)).await;
    let csv = format!(
        "last_name,first_name,patronymic,birth_date,sex,rnokpp,citizenship,registered_territory\n\
         Петренко,Олена,Іванівна,1990-05-17,female,3300912347,UA,{BUZHANKA}\n\
         Сидоренко,Іван,,1991-13-40,male,1234567890,UA,{BUZHANKA}\n"
    );
    // Chunks of 40 bytes: a real client stream of several messages.
    let chunks: Vec<registry_pb::ImportPersonsChunk> = csv
        .as_bytes()
        .chunks(40)
        .enumerate()
        .map(|(index, data)| registry_pb::ImportPersonsChunk {
            request_id: if index == 0 { new_request_id() } else { String::new() },
            format: registry_pb::ImportFormat::Csv.into(),
            source_document: String::new(),
            data: data.to_vec(),
        })
        .collect();
    assert!(chunks.len() > 3);
    let report =
        persons.import_persons(futures_util::stream::iter(chunks)).await.expect("the stream passes").into_inner();
    assert_eq!((report.rows, report.accepted, report.rejected), (2, 1, 1), "{report:?}");
    assert_eq!(gateway.count("registry.persons").await, 1);

    // 4096 bytes at most: a name of 3000 Cyrillic letters (6000 bytes) is cut off.
    let mut providers = gateway.providers(Some(gateway.system_token("diia").await)).await;
    let long_name = "Ж".repeat(3000);
    let refused = providers.register_provider(provider(&long_name, 3_285_596)).await.expect_err("too large");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(gateway.count("registry.providers").await, 0);
}

#[tokio::test]
async fn an_upstream_that_is_down_gives_unavailable_at_once() {
    let gateway = TestGateway::spawn().await;
    // The harness routes identity's package (as if an outbound system) to a closed port.
    gateway.register_member(DIIA, "diia", None, &["/esocial.identity.v1.IdentityService/GetJwks"]).await;
    let mut identity = esocial_proto::identity::v1::identity_service_client::IdentityServiceClient::with_interceptor(
        gateway.channel().await,
        BearerToken(Some(gateway.system_token("diia").await)),
    );
    let started = Instant::now();
    let status = identity.get_jwks(esocial_proto::identity::v1::GetJwksRequest {}).await.expect_err("down");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(status.message().contains("esocial.identity.v1"), "{}", status.message());
}

#[tokio::test]
async fn a_method_no_service_serves_is_unimplemented_and_the_gateway_answers_health() {
    let gateway =
        TestGateway::spawn_with(&[("ESOCIAL_GATEWAY_OUTBOUND_ROUTES", "esocial.external.diia.v1=http://127.0.0.1:1")])
            .await;
    gateway
        .register_member(
            DIIA,
            "diia",
            None,
            &["/esocial.registry.v1.IdpService/*", "/esocial.external.tax.v1.TaxRegisterService/*"],
        )
        .await;
    // A right, but no route: the tax register is not behind this gateway.
    let mut tax =
        esocial_proto::external::tax::v1::tax_register_service_client::TaxRegisterServiceClient::with_interceptor(
            gateway.channel().await,
            BearerToken(Some(gateway.system_token("diia").await)),
        );
    let unrouted =
        tax.get_taxpayer(esocial_proto::external::tax::v1::GetTaxpayerRequest::default()).await.expect_err("no route");
    assert_eq!(unrouted.code(), Code::Unimplemented, "{unrouted:?}");
    assert!(unrouted.message().contains("esocial.external.tax.v1"), "{}", unrouted.message());
    let mut health = tonic_health::pb::health_client::HealthClient::new(gateway.channel().await);
    let started = Instant::now();
    loop {
        let status = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
        if status.is_ok_and(|response| response.into_inner().status == 1) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the gateway never became healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Classifier methods exist, but the member has no right to them.
    let mut classifier =
        esocial_proto::classifier::v1::classifier_service_client::ClassifierServiceClient::with_interceptor(
            gateway.channel().await,
            BearerToken(Some(gateway.system_token("diia").await)),
        );
    let denied = classifier
        .get_support_type(esocial_proto::classifier::v1::GetSupportTypeRequest {
            code: "BIRTH_ASSISTANCE".to_owned(),
            as_of: None,
        })
        .await
        .expect_err("no right");
    assert_eq!(denied.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn esocial_calls_other_systems_through_the_gateway_with_typed_adapters_and_each_call_is_logged_outbound() {
    use esocial_external::diia::{Diia as _, NotificationRequest};
    use esocial_external::tax::TaxRegister as _;

    let gateway = TestGateway::spawn().await;
    gateway
        .register_member(
            DIIA,
            "esocial-process",
            None,
            &[
                "/esocial.external.tax.v1.TaxRegisterService/GetTaxpayer",
                "/esocial.external.diia.v1.DiiaNotificationService/*",
            ],
        )
        .await;
    let clients = esocial_external::GatewayClients::new(
        gateway.channel().await,
        esocial_external::FixedToken::new(gateway.system_token("esocial-process").await),
    );
    let adult = &esocial_external::sandbox_adults()[0];
    let taxpayer = clients.tax.taxpayer(adult.rnokpp).await.expect("taxpayer through the gateway");
    assert_eq!(taxpayer.rnokpp, adult.rnokpp);
    assert_eq!(taxpayer.birth_date, adult.birth_date);
    let sent = clients
        .diia
        .send_notification(&NotificationRequest {
            request_id: new_request_id(),
            rnokpp: adult.rnokpp,
            template_code: "birth_registered".to_owned(),
            parameters: std::collections::BTreeMap::from([("child".to_owned(), "Марія".to_owned())]),
        })
        .await
        .expect("notification through the gateway");
    let page = clients.diia.notifications(adult.rnokpp, 10, "").await.expect("list");
    assert!(page.notifications.iter().any(|notification| notification.notification_id == sent), "{page:?}");
    // No right to the tax register's income: refused at the gateway.
    let refused = clients
        .tax
        .monthly_income(
            adult.rnokpp,
            esocial_external::tax::YearMonth::new(2026, 1).expect("month"),
            esocial_external::tax::YearMonth::new(2026, 2).expect("month"),
        )
        .await
        .expect_err("no right");
    assert!(matches!(refused, esocial_external::Error::AccessDenied { .. }), "{refused:?}");

    let mut log = gateway.auditor().await;
    let started = Instant::now();
    let entries = loop {
        let entries = log
            .search_message_log(pb::SearchMessageLogRequest { member_id: DIIA.to_owned(), ..Default::default() })
            .await
            .expect("search")
            .into_inner()
            .entries;
        if entries.len() >= 4 {
            break entries;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{entries:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let outbound: Vec<(&str, i32)> = entries.iter().map(|entry| (entry.method.as_str(), entry.status_code)).collect();
    assert_eq!(
        outbound,
        [
            ("/esocial.external.tax.v1.TaxRegisterService/GetTaxpayer", 0),
            ("/esocial.external.diia.v1.DiiaNotificationService/SendNotification", 0),
            ("/esocial.external.diia.v1.DiiaNotificationService/ListNotifications", 0),
            ("/esocial.external.tax.v1.TaxRegisterService/GetMonthlyIncome", Code::PermissionDenied as i32),
        ]
    );
    assert!(entries.iter().all(|entry| entry.direction == "outbound"), "{entries:?}");
}

#[tokio::test]
async fn a_call_the_client_abandons_is_logged_as_cancelled() {
    let gateway = TestGateway::spawn().await;
    gateway.register_member(DIIA, "diia", None, &["/esocial.registry.v1.RegistryService/ImportPersons"]).await;
    let mut persons = gateway.persons(Some(gateway.system_token("diia").await)).await;
    // A client stream that sends a first chunk and then nothing: the
    // registry waits for the rest, the client gives up.
    let first = registry_pb::ImportPersonsChunk {
        request_id: new_request_id(),
        format: registry_pb::ImportFormat::Csv.into(),
        source_document: String::new(),
        data: b"last_name,first_name,birth_date,sex,rnokpp,citizenship,registered_territory\n".to_vec(),
    };
    let chunks = futures_util::stream::iter([first]).chain(futures_util::stream::pending());
    let abandoned = tokio::time::timeout(Duration::from_millis(500), persons.import_persons(chunks)).await;
    assert!(abandoned.is_err(), "the import cannot finish without the rest of its stream");
    let entry = eventually(Duration::from_secs(10), || async {
        let entries: Vec<(String, i32)> =
            sqlx::query_as("SELECT method, status_code FROM gateway.message_log WHERE member_id = $1")
                .bind(DIIA)
                .fetch_all(&gateway.pool)
                .await
                .expect("entries");
        entries.into_iter().next().ok_or_else(|| "the abandoned call has no entry".to_owned())
    })
    .await;
    assert_eq!(entry, ("/esocial.registry.v1.RegistryService/ImportPersons".to_owned(), Code::Cancelled as i32));
}

#[tokio::test]
async fn a_server_stream_passes_through_message_by_message() {
    use esocial_proto::external::bank::v1 as bank;

    let gateway = TestGateway::spawn().await;
    let (mut client, open, closed) = bank_through_gateway(&gateway, None).await;
    let payment = |id: &str, adult: &esocial_external::SandboxAdult| bank::Payment {
        payment_id: id.to_owned(),
        iban: adult.iban.to_string(),
        rnokpp: adult.rnokpp.to_string(),
        amount: Some(esocial_proto::common::v1::Money { kopiykas: 200_000 }),
        purpose: "допомога ВПО за січень 2026".to_owned(),
    };
    client
        .submit_payment_register(bank::SubmitPaymentRegisterRequest {
            register_id: "2026-01-idp".to_owned(),
            payments: vec![payment("p-1", open), payment("p-2", closed), payment("p-3", open)],
        })
        .await
        .expect("submitted through the gateway");
    let mut stream = client
        .stream_payment_outcomes(bank::StreamPaymentOutcomesRequest { register_id: "2026-01-idp".to_owned() })
        .await
        .expect("stream opened")
        .into_inner();
    let mut outcomes = Vec::new();
    while let Some(outcome) = stream.message().await.expect("message") {
        outcomes.push((outcome.payment_id, outcome.status));
    }
    let credited = i32::from(bank::PaymentStatus::Credited);
    let rejected = i32::from(bank::PaymentStatus::Rejected);
    assert_eq!(outcomes, [("p-1".to_owned(), credited), ("p-2".to_owned(), rejected), ("p-3".to_owned(), credited)]);
    let entry: (i32, i64, String) = eventually(Duration::from_secs(10), || async {
        let found: Option<(i32, i64, String)> = sqlx::query_as(
            "SELECT status_code, response_bytes, direction FROM gateway.message_log
             WHERE method = '/esocial.external.bank.v1.BankService/StreamPaymentOutcomes'",
        )
        .fetch_optional(&gateway.pool)
        .await
        .expect("entry");
        found.ok_or_else(|| "no entry for the stream".to_owned())
    })
    .await;
    assert_eq!(entry.0, 0);
    assert!(entry.1 > 3 * 5, "three messages with their frame headers: {entry:?}");
    assert_eq!(entry.2, "outbound");
}

#[tokio::test]
async fn a_two_way_stream_passes_through_each_answer_before_the_next_request_is_sent() {
    use esocial_proto::external::bank::v1 as bank;

    let gateway = TestGateway::spawn().await;
    let (mut client, open, closed) = bank_through_gateway(&gateway, None).await;
    let ask = account_request;

    // Each request goes only after the answer to the one before came back:
    // the call is open both ways at once, nothing waits for the end of a side.
    let (requests, outgoing) = request_stream();
    let mut answers = client.verify_accounts(outgoing).await.expect("call opened").into_inner();
    let mut statuses = Vec::new();
    for adult in [open, closed, open] {
        statuses.push(answer_to(&requests, &mut answers, ask(adult)).await.status);
    }
    drop(requests);
    assert!(answers.message().await.expect("end").is_none(), "the bank ends when the requests end");
    let (open_status, closed_status) = (i32::from(bank::AccountStatus::Open), i32::from(bank::AccountStatus::Closed));
    assert_eq!(statuses, [open_status, closed_status, open_status]);

    // A malformed request ends the call with the bank's own status, unchanged.
    let (requests, outgoing) = request_stream();
    let mut answers = client.verify_accounts(outgoing).await.expect("call opened").into_inner();
    requests.send(ask(open)).expect("request sent");
    requests
        .send(bank::VerifyAccountRequest { iban: "UA00".to_owned(), holder_rnokpp: String::new() })
        .expect("request sent");
    assert!(answers.message().await.expect("first answer").is_some());
    let refused = answers.message().await.expect_err("the malformed request ends the call");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let fields: Vec<String> = refused
        .get_details_bad_request()
        .expect("field violations")
        .field_violations
        .into_iter()
        .map(|violation| violation.field)
        .collect();
    assert_eq!(fields, ["requests[1].iban", "requests[1].holder_rnokpp"]);

    // Both calls are in the message log, with the bytes that went each way.
    let entries: Vec<(i32, i64, i64)> = eventually(Duration::from_secs(10), || async {
        let entries: Vec<(i32, i64, i64)> = sqlx::query_as(
            "SELECT status_code, request_bytes, response_bytes FROM gateway.message_log
             WHERE method = '/esocial.external.bank.v1.BankService/VerifyAccounts' ORDER BY sequence",
        )
        .fetch_all(&gateway.pool)
        .await
        .expect("entries");
        if entries.len() == 2 { Ok(entries) } else { Err(format!("entries: {entries:?}")) }
    })
    .await;
    let one_request = i64::try_from(prost::Message::encoded_len(&ask(open))).expect("size") + 5;
    assert_eq!(entries[0], (0, 3 * one_request, 3 * (2 + 5)), "three requests, three answers of 2 bytes");
    assert_eq!(entries[1].0, Code::InvalidArgument as i32);
    assert_eq!(entries[1].2, 2 + 5, "one answer before the refusal");
}

#[tokio::test]
async fn a_request_message_over_the_limit_in_an_open_two_way_stream_ends_it_with_resource_exhausted() {
    use esocial_proto::external::bank::v1 as bank;

    let gateway = TestGateway::spawn().await;
    let limits = pb::Limits { requests_per_second: 0, burst: 0, message_bytes_max: 1024 };
    let (mut client, open, _) = bank_through_gateway(&gateway, Some(limits)).await;
    let (requests, outgoing) = request_stream();
    let mut answers = client.verify_accounts(outgoing).await.expect("call opened").into_inner();
    requests.send(account_request(open)).expect("request sent");
    assert!(answers.message().await.expect("first answer").is_some());
    // The service has answered with its headers already: the limit ends
    // the call in its trailers, not with a reset stream.
    requests
        .send(bank::VerifyAccountRequest { iban: "U".repeat(2000), holder_rnokpp: open.rnokpp.to_string() })
        .expect("request sent");
    let refused = tokio::time::timeout(Duration::from_secs(10), answers.message())
        .await
        .expect("the call ends")
        .expect_err("over the limit");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("1024 bytes"), "{}", refused.message());
    let logged = logged_codes(&gateway, VERIFY_ACCOUNTS, 1).await;
    assert_eq!(logged, [Code::ResourceExhausted as i32], "the entry says what the client got");
}

/// All of the bank simulator's methods.
pub const BANK_SERVICE: &str = "/esocial.external.bank.v1.BankService/*";
pub const VERIFY_ACCOUNTS: &str = "/esocial.external.bank.v1.BankService/VerifyAccounts";

/// The status codes of the first `count` entries of `method`, in the order
/// the calls started, waited for at most 10 s.
pub async fn logged_codes(gateway: &TestGateway, method: &str, count: usize) -> Vec<i32> {
    eventually(Duration::from_secs(10), || async {
        let codes: Vec<i32> =
            sqlx::query_scalar("SELECT status_code FROM gateway.message_log WHERE method = $1 ORDER BY started_at")
                .bind(method)
                .fetch_all(&gateway.pool)
                .await
                .expect("entries");
        if codes.len() >= count { Ok(codes) } else { Err(format!("entries: {codes:?}")) }
    })
    .await
}

pub type Bank = esocial_proto::external::bank::v1::bank_service_client::BankServiceClient<Intercepted>;

/// A two-way `VerifyAccounts` stream that has carried one answer: its
/// request side, still open, and its answers.
pub async fn open_account_stream(
    bank: &mut Bank,
    adult: &esocial_external::SandboxAdult,
) -> (
    tokio::sync::mpsc::UnboundedSender<esocial_proto::external::bank::v1::VerifyAccountRequest>,
    tonic::Streaming<esocial_proto::external::bank::v1::VerifyAccountResponse>,
) {
    let (requests, outgoing) = request_stream();
    let mut answers = bank.verify_accounts(outgoing).await.expect("call opened").into_inner();
    answered(&requests, &mut answers, adult).await;
    (requests, answers)
}

pub fn account_request(
    adult: &esocial_external::SandboxAdult,
) -> esocial_proto::external::bank::v1::VerifyAccountRequest {
    esocial_proto::external::bank::v1::VerifyAccountRequest {
        iban: adult.iban.to_string(),
        holder_rnokpp: adult.rnokpp.to_string(),
    }
}

/// How an open stream ended, waited for at most 10 s.
pub async fn ended<Message: std::fmt::Debug>(answers: &mut tonic::Streaming<Message>) -> tonic::Status {
    tokio::time::timeout(Duration::from_secs(10), answers.message())
        .await
        .expect("the stream ends")
        .expect_err("with a refusal")
}

/// The next answer on an open stream, to `adult`'s request.
pub async fn answered(
    requests: &tokio::sync::mpsc::UnboundedSender<esocial_proto::external::bank::v1::VerifyAccountRequest>,
    answers: &mut tonic::Streaming<esocial_proto::external::bank::v1::VerifyAccountResponse>,
    adult: &esocial_external::SandboxAdult,
) {
    let answer = answer_to(requests, answers, account_request(adult)).await;
    assert_eq!(answer.status, i32::from(esocial_proto::external::bank::v1::AccountStatus::Open));
}

/// The answer to `request` on an open stream, waited for at most 10 s
/// while the request stream is still open.
pub async fn answer_to(
    requests: &tokio::sync::mpsc::UnboundedSender<esocial_proto::external::bank::v1::VerifyAccountRequest>,
    answers: &mut tonic::Streaming<esocial_proto::external::bank::v1::VerifyAccountResponse>,
    request: esocial_proto::external::bank::v1::VerifyAccountRequest,
) -> esocial_proto::external::bank::v1::VerifyAccountResponse {
    requests.send(request).expect("request sent");
    tokio::time::timeout(Duration::from_secs(10), answers.message())
        .await
        .expect("an answer while the request stream is still open")
        .expect("still open")
        .expect("not the end")
}

#[tokio::test]
async fn an_open_stream_ends_once_its_member_loses_the_method_or_is_suspended_and_others_go_on() {
    let gateway = TestGateway::spawn().await;
    let (mut diia, open, _) = bank_through_gateway(&gateway, None).await;
    gateway.register_member(BANK, "bank", None, &[BANK_SERVICE]).await;
    let mut bank: Bank = esocial_proto::external::bank::v1::bank_service_client::BankServiceClient::with_interceptor(
        gateway.channel().await,
        BearerToken(Some(gateway.system_token("bank").await)),
    );
    let (_diia_requests, mut diia_answers) = open_account_stream(&mut diia, open).await;
    let (bank_requests, mut bank_answers) = open_account_stream(&mut bank, open).await;
    let mut admin = gateway.admin().await;

    // The right taken away, the member's stream ends, silent as it is, with
    // what a new call would get; the other member's stream goes on.
    admin
        .revoke_access(pb::RevokeAccessRequest {
            request_id: new_request_id(),
            member_id: DIIA.to_owned(),
            method: BANK_SERVICE.to_owned(),
            reason: "contract ended".to_owned(),
        })
        .await
        .expect("revoked");
    let refused = ended(&mut diia_answers).await;
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains(VERIFY_ACCOUNTS), "names the method: {}", refused.message());
    answered(&bank_requests, &mut bank_answers, open).await;
    let new_call = diia.verify_accounts(tokio_stream::iter([account_request(open)])).await;
    let new_call = match new_call {
        Ok(answers) => ended(&mut answers.into_inner()).await,
        Err(status) => status,
    };
    assert_eq!(new_call.code(), Code::PermissionDenied, "a new call is refused alike");

    // Given the right again, the member opens a stream; suspended, the
    // stream ends as a new call would be refused.
    grant(&mut admin, DIIA, BANK_SERVICE).await;
    let (_diia_requests, mut diia_answers) = open_account_stream(&mut diia, open).await;
    gateway.suspend(DIIA).await;
    let refused = ended(&mut diia_answers).await;
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("suspended"), "{}", refused.message());
    answered(&bank_requests, &mut bank_answers, open).await;

    // The entries of the member's streams say how they ended (the other
    // member's stream is still open).
    let codes = logged_codes(&gateway, VERIFY_ACCOUNTS, 3).await;
    assert_eq!(
        codes,
        [Code::PermissionDenied as i32, Code::PermissionDenied as i32, Code::Unauthenticated as i32],
        "the two streams and the new call refused between them"
    );
}

#[tokio::test]
async fn an_open_stream_ends_when_the_member_s_token_expires() {
    let gateway = TestGateway::spawn().await;
    let (_, open, _) = bank_through_gateway(&gateway, None).await;
    let mut bank: Bank = esocial_proto::external::bank::v1::bank_service_client::BankServiceClient::with_interceptor(
        gateway.channel().await,
        BearerToken(Some(gateway.system_token_for("esocial-process", 4).await)),
    );
    let opened = std::time::Instant::now();
    let (requests, mut answers) = open_account_stream(&mut bank, open).await;
    // Silent, it ends when the token expires, as a new call with it would
    // be refused; the entry says so.
    let refused = ended(&mut answers).await;
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("expired"), "{}", refused.message());
    assert!(opened.elapsed() >= Duration::from_secs(2), "not before the token expired: {:?}", opened.elapsed());
    drop(requests);
    assert_eq!(logged_codes(&gateway, VERIFY_ACCOUNTS, 1).await, [Code::Unauthenticated as i32]);
}

#[tokio::test]
async fn an_open_stream_ends_with_unavailable_as_soon_as_the_gateway_starts_to_stop() {
    // A grace period far longer than the test waits: an open stream must
    // not hold the gateway's stop to it.
    let mut gateway = TestGateway::spawn_with_gateway(&[], &[("ESOCIAL_SHUTDOWN_GRACE_MS", "30000")]).await;
    let (mut bank, open, _) = bank_through_gateway(&gateway, None).await;
    let (requests, mut answers) = open_account_stream(&mut bank, open).await;
    let stopping = std::time::Instant::now();
    let (stopped, refused) =
        tokio::join!(gateway.stop_gateway(Duration::from_secs(10)), async { ended(&mut answers).await });
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("gateway is stopping"), "{}", refused.message());
    stopped.expect("the gateway stopped within 10 s, not at the end of its 30 s grace").expect("stopped cleanly");
    assert!(stopping.elapsed() < Duration::from_secs(10), "{:?}", stopping.elapsed());
    // Nothing more goes on, and the stream has its entry.
    assert!(requests.send(account_request(open)).is_err() || answers.message().await.is_err());
    assert_eq!(logged_codes(&gateway, VERIFY_ACCOUNTS, 1).await, [Code::Unavailable as i32]);
}

#[tokio::test]
async fn a_member_whose_client_identity_deactivates_is_turned_away_at_once_and_its_open_stream_ends() {
    let gateway = TestGateway::spawn().await;
    gateway.register_member(DIIA, "diia", None, &[BANK_SERVICE, REGISTER_PROVIDER]).await;
    let token = gateway.system_token("diia").await;
    let mut bank: Bank = esocial_proto::external::bank::v1::bank_service_client::BankServiceClient::with_interceptor(
        gateway.channel().await,
        BearerToken(Some(token.clone())),
    );
    let open = esocial_external::sandbox_adults().iter().find(|adult| adult.account_open).expect("an open account");
    // A call to the registry: the gateway now holds a token exchanged for
    // it, good for minutes, and the member's own token is good for ten.
    let mut providers = gateway.providers(Some(token)).await;
    providers.register_provider(provider("УСЗН 1", 3_285_596)).await.expect("forwarded");
    let (_requests, mut answers) = open_account_stream(&mut bank, open).await;

    // Identity deactivates the member's client: its open stream ends, and
    // its next call is refused at the door, neither waiting for a token to
    // expire.
    gateway.set_client_active("diia", false).await;
    let refused = ended(&mut answers).await;
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("diia is deactivated at identity"), "{}", refused.message());
    let refused = providers.register_provider(provider("УСЗН 2", 3_285_597)).await.expect_err("turned away");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("deactivated at identity"), "{}", refused.message());
    assert_eq!(gateway.count("registry.providers").await, 1, "the registry was not called");
    // Its administrators see why.
    let admin = gateway.admin().await;
    let shown = |deactivated: bool| {
        let mut admin = admin.clone();
        async move {
            let member = member(&mut admin, DIIA).await;
            let listed = admin.list_members(pb::ListMembersRequest::default()).await.expect("members").into_inner();
            let listed = listed.members.iter().find(|listed| listed.member_id == DIIA).expect("listed");
            assert_eq!((member.client_deactivated, listed.client_deactivated), (deactivated, deactivated));
            assert_eq!(member.status, i32::from(pb::MemberStatus::Active), "the member itself is not suspended");
        }
    };
    shown(true).await;

    // Activated again, the client's member is served again.
    gateway.set_client_active("diia", true).await;
    eventually(Duration::from_secs(10), || {
        let mut providers = providers.clone();
        async move {
            providers
                .register_provider(provider("УСЗН 3", 3_285_598))
                .await
                .map(|_| ())
                .map_err(|status| format!("{status:?}"))
        }
    })
    .await;
    shown(false).await;
    assert_eq!(
        logged_codes(&gateway, VERIFY_ACCOUNTS, 1).await,
        [Code::Unauthenticated as i32],
        "the stream's entry says how it ended"
    );
}

#[tokio::test]
async fn a_deactivation_whose_event_the_gateway_never_had_is_learned_from_identity_s_list_of_clients() {
    let gateway = TestGateway::spawn_with_gateway(&[], &[("ESOCIAL_GATEWAY_CLIENTS_READ_SECONDS", "1")]).await;
    gateway.register_member(DIIA, "diia", None, &[VERIFY_CERTIFICATE]).await;
    let mut idp = gateway.idp(Some(gateway.system_token("diia").await)).await;
    let verify = || registry_pb::VerifyIdpCertificateRequest { code: "1234567890123452".to_owned() };
    idp.verify_idp_certificate(verify()).await.expect("forwarded");

    // Identity deactivates the client, and no event of it ever comes (an
    // event stream rebuilt without it, say): the change alone, in
    // identity's tables.
    sqlx::query("UPDATE identity.system_clients SET active = false, version = version + 1 WHERE client_id = 'diia'")
        .execute(&gateway.pool)
        .await
        .expect("deactivated at identity");
    let refused = eventually(Duration::from_secs(10), || {
        let mut idp = idp.clone();
        async move {
            match idp.verify_idp_certificate(verify()).await {
                Err(status) if status.code() == Code::Unauthenticated => Ok(status),
                other => Err(format!("not refused yet: {other:?}")),
            }
        }
    })
    .await;
    assert!(refused.message().contains("diia is deactivated at identity"), "{}", refused.message());
    let (active, event_id): (bool, Option<uuid::Uuid>) =
        sqlx::query_as("SELECT active, event_id FROM gateway.identity_clients WHERE client_id = 'diia'")
            .fetch_one(&gateway.pool)
            .await
            .expect("the client as the gateway knows it");
    assert_eq!((active, event_id), (false, None), "learned from identity's list, not from an event");

    // Active again, by identity's event this time: the newer version wins.
    gateway.set_client_active("diia", true).await;
    eventually(Duration::from_secs(10), || {
        let mut idp = idp.clone();
        async move { idp.verify_idp_certificate(verify()).await.map(|_| ()).map_err(|status| format!("{status:?}")) }
    })
    .await;
}

#[tokio::test]
async fn of_a_client_s_changes_the_one_identity_committed_last_stands_whatever_their_order_and_times() {
    use esocial_events::EventHandler as _;
    use prost::Message as _;
    let gateway = TestGateway::spawn().await;
    let pool = gateway.gateway_pool().await;
    let started = chrono::Utc::now();
    // One change as identity's event carries it: the client at `version`,
    // the event stamped `seconds` after the start.
    let handled = |version: i64, active: bool, seconds: i64| {
        let pool = pool.clone();
        async move {
            let changed = esocial_proto::identity::v1::SystemClientChanged {
                client: Some(esocial_proto::identity::v1::SystemClient {
                    client_id: "another-system".to_owned(),
                    active,
                    version,
                    ..Default::default()
                }),
                changed_by: None,
                change: "status_changed".to_owned(),
            };
            let event = esocial_events::ReceivedEvent {
                id: uuid::Uuid::now_v7(),
                event_type: "ua.gov.esocial.identity.system_client.status_changed.v1".to_owned(),
                source: "/esocial/identity".to_owned(),
                subject: None,
                time: started + chrono::Duration::seconds(seconds),
                nats_subject: "identity.system_client.status_changed".to_owned(),
                payload: changed.encode_to_vec(),
                traceparent: None,
                tracestate: None,
            };
            let mut transaction = pool.begin().await.expect("transaction");
            esocial_gateway::clients::IdentityClients.handle(&mut transaction, &event).await.expect("handled");
            transaction.commit().await.expect("committed");
            let state: (bool, i64) =
                sqlx::query_as("SELECT active, version FROM identity_clients WHERE client_id = 'another-system'")
                    .fetch_one(&pool)
                    .await
                    .expect("the client's state");
            state
        }
    };
    assert_eq!(handled(3, false, 0).await, (false, 3), "deactivated");
    // An activation whose transaction started later but committed first
    // (a lower version) does not undo the deactivation...
    assert_eq!(handled(2, true, 1).await, (false, 3), "an older change coming late");
    // ...a later change does, whatever its time says.
    assert_eq!(handled(4, true, -1).await, (true, 4), "the newer change");
    // The same change again changes nothing.
    assert_eq!(handled(4, true, -1).await, (true, 4), "again");
}

/// The bank simulator through the gateway, as a member with a right to all
/// of the bank's methods, and an open and a closed sandbox account.
async fn bank_through_gateway(
    gateway: &TestGateway,
    limits: Option<pb::Limits>,
) -> (
    esocial_proto::external::bank::v1::bank_service_client::BankServiceClient<Intercepted>,
    &'static esocial_external::SandboxAdult,
    &'static esocial_external::SandboxAdult,
) {
    gateway.register_member(DIIA, "esocial-process", limits, &["/esocial.external.bank.v1.BankService/*"]).await;
    let client = esocial_proto::external::bank::v1::bank_service_client::BankServiceClient::with_interceptor(
        gateway.channel().await,
        BearerToken(Some(gateway.system_token("esocial-process").await)),
    );
    let adults = esocial_external::sandbox_adults();
    let open = adults.iter().find(|adult| adult.account_open).expect("an open account");
    let closed = adults.iter().find(|adult| !adult.account_open).expect("a closed account");
    (client, open, closed)
}

/// A request stream fed message by message while the call is open.
fn request_stream<Message>()
-> (tokio::sync::mpsc::UnboundedSender<Message>, tokio_stream::wrappers::UnboundedReceiverStream<Message>) {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    (sender, tokio_stream::wrappers::UnboundedReceiverStream::new(receiver))
}

#[tokio::test]
async fn a_response_message_larger_than_the_members_limit_is_cut_off() {
    use esocial_proto::classifier::v1 as classifier;
    use esocial_proto::classifier::v1::classifier_service_client::ClassifierServiceClient;

    const LIST: &str = "/esocial.classifier.v1.ClassifierService/ListSupportTypes";
    let gateway = TestGateway::spawn().await;
    let small = pb::Limits { requests_per_second: 0, burst: 0, message_bytes_max: 1024 };
    gateway.register_member(DIIA, "diia", Some(small), &[LIST]).await;
    gateway.register_member(BANK, "bank", None, &[LIST]).await;
    let list = || classifier::ListSupportTypesRequest { as_of: None, category: 0, page: None };

    // The whole list is larger than 1 KiB: a member with the default limit
    // gets it.
    let mut bank = ClassifierServiceClient::with_interceptor(
        gateway.channel().await,
        BearerToken(Some(gateway.system_token("bank").await)),
    );
    let listed = bank.list_support_types(list()).await.expect("listed").into_inner();
    let size = prost::Message::encoded_len(&listed);
    assert!(size > 1024, "{size} bytes");

    let mut diia = ClassifierServiceClient::with_interceptor(
        gateway.channel().await,
        BearerToken(Some(gateway.system_token("diia").await)),
    );
    let refused = diia.list_support_types(list()).await.expect_err("larger than the member's limit");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains(&format!("response message of {size} bytes")), "{}", refused.message());
    let codes: Vec<(String, i32)> = eventually(Duration::from_secs(10), || async {
        let codes: Vec<(String, i32)> = sqlx::query_as(
            "SELECT member_id, status_code FROM gateway.message_log WHERE method = $1 ORDER BY started_at",
        )
        .bind(LIST)
        .fetch_all(&gateway.pool)
        .await
        .expect("log");
        if codes.len() < 2 { Err(format!("{codes:?}")) } else { Ok(codes) }
    })
    .await;
    assert_eq!(codes, [(BANK.to_owned(), Code::Ok as i32), (DIIA.to_owned(), Code::ResourceExhausted as i32)]);
}

#[tokio::test]
async fn a_member_s_calls_in_flight_are_held_to_a_quarter_of_the_log_queue_and_others_are_still_served() {
    use esocial_proto::external::tax::v1 as tax;
    use esocial_proto::external::tax::v1::tax_register_service_client::TaxRegisterServiceClient;

    // A system that takes calls and never answers; it counts the calls of
    // its service.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
    let route = format!("esocial.external.tax.v1=http://{}", listener.local_addr().expect("address"));
    let arrived = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&arrived);
    let silent = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let counted = Arc::clone(&counted);
            let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                // (The gateway's catalog asks its reflection service too.)
                if request.uri().path().starts_with("/esocial.external.tax.v1.") {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                std::future::pending::<Result<http::Response<String>, std::convert::Infallible>>()
            });
            connections.spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    // A queue of 16 places: a member may have 4 calls in flight.
    let gateway = TestGateway::spawn_with(&[
        ("ESOCIAL_GATEWAY_LOG_QUEUE_MAX", "16"),
        ("ESOCIAL_GATEWAY_OUTBOUND_ROUTES", route.as_str()),
    ])
    .await;
    gateway.register_member(DIIA, "diia", None, &["/esocial.external.tax.v1.TaxRegisterService/*"]).await;
    gateway.register_member(BANK, "bank", None, &[VERIFY_CERTIFICATE]).await;
    let diia = TaxRegisterServiceClient::with_interceptor(
        gateway.channel().await,
        BearerToken(Some(gateway.system_token("diia").await)),
    );
    let hanging: Vec<_> = (0..4)
        .map(|_| {
            let mut diia = diia.clone();
            tokio::spawn(async move { diia.get_taxpayer(tax::GetTaxpayerRequest::default()).await.map(|_| ()) })
        })
        .collect();
    eventually(Duration::from_secs(10), || async {
        let count = arrived.load(std::sync::atomic::Ordering::SeqCst);
        (count == 4).then_some(()).ok_or_else(|| format!("{count} of 4 calls reached the system"))
    })
    .await;

    // A fifth call of the member's is refused before it goes anywhere.
    let refused = diia.clone().get_taxpayer(tax::GetTaxpayerRequest::default()).await.expect_err("a fifth call");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("4 calls in flight"), "{}", refused.message());
    assert!(refused.get_details_retry_info().is_some(), "retry information");
    assert_eq!(arrived.load(std::sync::atomic::Ordering::SeqCst), 4);

    // Another member is served meanwhile.
    let mut bank = gateway.idp(Some(gateway.system_token("bank").await)).await;
    let verify = registry_pb::VerifyIdpCertificateRequest { code: "1234567890123452".to_owned() };
    bank.verify_idp_certificate(verify).await.expect("another member is served");

    // Once the system goes away the calls end, and their places are free
    // again: the member's next call is not refused for calls in flight.
    silent.abort();
    for call in hanging {
        let ended = call.await.expect("joins").expect_err("the system went away");
        assert_ne!(ended.code(), Code::ResourceExhausted, "{ended:?}");
    }
    let after = diia.clone().get_taxpayer(tax::GetTaxpayerRequest::default()).await.expect_err("nothing answers");
    assert_ne!(after.code(), Code::ResourceExhausted, "{after:?}");
}
