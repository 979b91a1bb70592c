//! The door: every call to the gateway passes here first.
//!
//! Calls of the gateway's own methods go on to its routes (behind the
//! service kit's auth layer); every other call is forwarded, at the HTTP/2
//! level and without decoding its messages, to the service that serves its
//! proto package: unary and streaming alike, so a new method of a service
//! needs no change here. For a forwarded call the gateway authenticates the
//! member, applies its rate limit, checks its access right, replaces the
//! internal metadata, and relays bodies and status unchanged. Every call
//! (refused ones too) gets a message log entry with the SHA-256 digests and
//! sizes of both bodies, computed as the bytes pass.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use esocial_auth::TokenVerifier;
use esocial_kit::ApiError;
use esocial_kit::server::{BoxGrpcService, GrpcRequest, GrpcResponse, RequestId};
use http::{HeaderName, HeaderValue};
use http_body::Frame;
use sha2::{Digest as _, Sha256};
use tonic::Status;
use tonic::transport::{Channel, Endpoint};
use tower::ServiceExt as _;

use crate::directory::{Directory, MemberEntry};
use crate::domain::MethodPath;
use crate::message_log::{Direction, LogEntry, MessageLog, Reservation};

/// Metadata only the gateway sets; a caller's values are removed.
pub const INTERNAL_METADATA_PREFIX: &str = "x-esocial-";
/// The member a forwarded call comes from (`UA/GOV/…/…`).
pub const MEMBER_HEADER: &str = "x-esocial-member";
/// The gateway node that forwarded the call.
pub const GATEWAY_NODE_HEADER: &str = "x-esocial-gateway-node";
const REQUEST_ID_HEADER: &str = "x-request-id";
/// The gateway's own proto package: served here, not forwarded.
pub const OWN_PACKAGE: &str = "esocial.gateway.v1";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where each proto package is served.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub channel: Channel,
    pub url: String,
    pub direction: Direction,
}

#[derive(Debug, Clone, Default)]
pub struct Upstreams {
    by_package: HashMap<String, Upstream>,
}

impl Upstreams {
    /// Channels (connected lazily) for `(package, url)` routes; inbound
    /// routes lead to esocial's services, outbound ones to other systems.
    pub fn new(inbound: &[(String, String)], outbound: &[(String, String)]) -> Result<Self, tonic::transport::Error> {
        let mut by_package = HashMap::new();
        let mut channels: HashMap<String, Channel> = HashMap::new();
        for (routes, direction) in [(inbound, Direction::Inbound), (outbound, Direction::Outbound)] {
            for (package, url) in routes {
                let channel = match channels.get(url) {
                    Some(channel) => channel.clone(),
                    None => {
                        let channel = Endpoint::from_shared(url.clone())?
                            .connect_timeout(CONNECT_TIMEOUT)
                            .tcp_nodelay(true)
                            .http2_keep_alive_interval(Duration::from_secs(30))
                            .keep_alive_timeout(Duration::from_secs(10))
                            .keep_alive_while_idle(true)
                            .connect_lazy();
                        channels.insert(url.clone(), channel.clone());
                        channel
                    }
                };
                by_package.insert(package.clone(), Upstream { channel, url: url.clone(), direction });
            }
        }
        Ok(Self { by_package })
    }

    pub fn get(&self, package: &str) -> Option<&Upstream> {
        self.by_package.get(package)
    }

    /// The packages forwarded, sorted.
    pub fn packages(&self) -> Vec<String> {
        let mut packages: Vec<String> = self.by_package.keys().cloned().collect();
        packages.sort();
        packages
    }
}

/// What the door needs, shared by every call.
#[derive(Debug)]
pub struct Door {
    pub verifier: Arc<TokenVerifier>,
    pub directory: Arc<Directory>,
    pub upstreams: Upstreams,
    pub log: MessageLog,
    pub node: HeaderValue,
}

/// Builds the [`esocial_kit::server::Front`] of the gateway's server.
pub fn front(door: Arc<Door>) -> esocial_kit::server::Front {
    Arc::new(move |own_routes: BoxGrpcService| BoxGrpcService::new(DoorService { own_routes, door: door.clone() }))
}

#[derive(Debug, Clone)]
struct DoorService {
    own_routes: BoxGrpcService,
    door: Arc<Door>,
}

fn is_infrastructure(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|token| !token.is_empty())
}

/// Who is calling, as far as the token tells.
struct Identified {
    /// The token subject; empty without a valid token.
    caller: String,
    member: Option<Arc<MemberEntry>>,
    refusal: Option<Status>,
}

impl Door {
    async fn identify(&self, headers: &http::HeaderMap) -> Identified {
        let Some(token) = bearer_token(headers) else {
            return Identified {
                caller: String::new(),
                member: None,
                refusal: Some(Status::unauthenticated("a bearer token of a member system is required")),
            };
        };
        let claims = match self.verifier.verify(token).await {
            Ok(claims) => claims,
            Err(error) => {
                tracing::info!(reason = %error, "refused token at the gateway");
                return Identified {
                    caller: String::new(),
                    member: None,
                    refusal: Some(Status::unauthenticated("invalid token")),
                };
            }
        };
        let member = claims.sub.strip_prefix("client:").and_then(|client_id| self.directory.by_client(client_id));
        let refusal = match &member {
            None => Some(Status::unauthenticated(format!("{} is not a registered member system", claims.sub))),
            Some(entry) if !entry.is_active() => {
                Some(Status::unauthenticated(format!("member {} is suspended", entry.member.member_id)))
            }
            Some(_) => None,
        };
        Identified { caller: claims.sub, member, refusal }
    }
}

impl tower_service::Service<GrpcRequest> for DoorService {
    type Response = GrpcResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<GrpcResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The routes are called through `oneshot`, which waits for them.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: GrpcRequest) -> Self::Future {
        let own_routes = self.own_routes.clone();
        let door = self.door.clone();
        Box::pin(async move { Ok(pass(door, own_routes, request).await) })
    }
}

async fn pass(door: Arc<Door>, own_routes: BoxGrpcService, request: GrpcRequest) -> GrpcResponse {
    let path = request.uri().path().to_owned();
    if is_infrastructure(&path) {
        return own_routes.oneshot(request).await.unwrap_or_else(|never| match never {});
    }
    let started = Instant::now();
    let reservation = match door.log.reserve() {
        Ok(reservation) => reservation,
        Err(unavailable) => return Status::unavailable(unavailable.to_string()).into_http(),
    };
    let request_id = request.extensions().get::<RequestId>().map(|id| id.0.clone()).unwrap_or_default();
    let identified = door.identify(request.headers()).await;
    let parsed = MethodPath::parse(&path);
    let package = parsed.map(|method| method.package).unwrap_or_default();
    let direction = door.upstreams.get(package).map_or(Direction::Inbound, |upstream| upstream.direction);
    let mut exchange = Exchange {
        reservation,
        started,
        started_at: Utc::now(),
        request_id,
        member_id: identified.member.as_ref().map(|entry| entry.member.member_id.to_string()).unwrap_or_default(),
        caller: identified.caller.clone(),
        method: path.clone(),
        direction,
        log_bodies: identified.member.as_ref().is_some_and(|entry| entry.logs_bodies()),
        request: None,
    };

    if package == OWN_PACKAGE {
        // The gateway's own methods: the auth layer and handlers decide.
        let request = exchange.meter_request(request, u64::MAX);
        let response = own_routes.oneshot(request).await.unwrap_or_else(|never| match never {});
        return exchange.watch_response(response);
    }
    match admit(&door, &identified, parsed, &path) {
        Ok((member, upstream)) => {
            let limit = u64::from(member.message_bytes_max);
            let mut request = exchange.meter_request(request, limit);
            prepare_headers(&door, &member, upstream.direction, &exchange.request_id, request.headers_mut());
            match upstream.channel.clone().oneshot(request).await {
                Ok(response) => exchange.watch_response(response),
                Err(error) => {
                    let status = if exchange.request_too_large() {
                        Status::resource_exhausted(format!("the request is larger than {limit} bytes"))
                    } else {
                        tracing::warn!(%error, upstream = %upstream.url, method = %path, "upstream unavailable");
                        Status::unavailable(format!("the service behind the gateway for {package} is unavailable"))
                    };
                    exchange.refuse(status)
                }
            }
        }
        Err(status) => exchange.refuse(status),
    }
}

/// The checks before a call is forwarded, in order: a member, within its
/// rate, with a right to the method, and a service that serves it.
fn admit(
    door: &Door,
    identified: &Identified,
    parsed: Option<MethodPath<'_>>,
    path: &str,
) -> Result<(Arc<MemberEntry>, Upstream), Status> {
    if let Some(refusal) = &identified.refusal {
        return Err(refusal.clone());
    }
    let Some(member) = identified.member.clone() else {
        return Err(Status::unauthenticated("a bearer token of a member system is required"));
    };
    if let Err(retry_after) = member.take_token() {
        return Err(ApiError::ResourceExhausted {
            message: format!(
                "member {} is over its limit of {} requests a second (burst {})",
                member.member.member_id, member.requests_per_second, member.burst
            ),
            retry_after,
        }
        .into());
    }
    let Some(method) = parsed else {
        return Err(Status::unimplemented(format!("{path} is not a gRPC method path")));
    };
    if !member.may_call(&method, path) {
        return Err(Status::permission_denied(format!("member {} may not call {path}", member.member.member_id)));
    }
    let Some(upstream) = door.upstreams.get(method.package) else {
        return Err(Status::unimplemented(format!("no service behind the gateway serves {}", method.package)));
    };
    Ok((member, upstream.clone()))
}

/// Removes what only the gateway may set, then sets it: the member, the
/// request id, this node, and the trace context of the gateway's span.
/// Calls to other systems do not carry esocial's bearer tokens.
fn prepare_headers(
    door: &Door,
    member: &MemberEntry,
    direction: Direction,
    request_id: &str,
    headers: &mut http::HeaderMap,
) {
    let internal: Vec<HeaderName> =
        headers.keys().filter(|name| name.as_str().starts_with(INTERNAL_METADATA_PREFIX)).cloned().collect();
    for name in internal {
        headers.remove(name);
    }
    if direction == Direction::Outbound {
        headers.remove(http::header::AUTHORIZATION);
    }
    if let Ok(value) = HeaderValue::from_str(member.member.member_id.as_str()) {
        headers.insert(MEMBER_HEADER, value);
    }
    headers.insert(GATEWAY_NODE_HEADER, door.node.clone());
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    headers.remove("traceparent");
    headers.remove("tracestate");
    for (key, value) in esocial_kit::telemetry::current_trace_context() {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
            headers.insert(name, value);
        }
    }
}

/// Digest, size and (in full mode) the bytes of one direction of a call.
#[derive(Debug)]
struct BodyMeter {
    digest: Sha256,
    bytes: u64,
    captured: Option<Vec<u8>>,
}

impl BodyMeter {
    fn new(capture: bool) -> Self {
        Self { digest: Sha256::new(), bytes: 0, captured: capture.then(Vec::new) }
    }

    fn add(&mut self, data: &Bytes) {
        self.digest.update(data);
        self.bytes += u64::try_from(data.len()).unwrap_or(u64::MAX);
        if let Some(captured) = &mut self.captured {
            captured.extend_from_slice(data);
        }
    }

    fn finish(self) -> (u64, Vec<u8>, Option<Vec<u8>>) {
        (self.bytes, self.digest.finalize().to_vec(), self.captured)
    }
}

#[derive(Debug)]
struct RequestMeter {
    body: BodyMeter,
    limit: u64,
    exceeded: bool,
}

/// One call on its way through: what its log entry will say.
struct Exchange {
    reservation: Option<Reservation>,
    started: Instant,
    started_at: chrono::DateTime<Utc>,
    request_id: String,
    member_id: String,
    caller: String,
    method: String,
    direction: Direction,
    log_bodies: bool,
    request: Option<Arc<Mutex<RequestMeter>>>,
}

impl Exchange {
    /// Wraps the request body so its bytes are counted and digested as the
    /// service reads them, and cut off past `limit`.
    fn meter_request(&mut self, request: GrpcRequest, limit: u64) -> GrpcRequest {
        let meter =
            Arc::new(Mutex::new(RequestMeter { body: BodyMeter::new(self.log_bodies), limit, exceeded: false }));
        self.request = Some(meter.clone());
        request.map(|body| tonic::body::Body::new(MeteredRequestBody { inner: body, meter }))
    }

    fn request_too_large(&self) -> bool {
        self.request.as_ref().is_some_and(|meter| meter.lock().is_ok_and(|meter| meter.exceeded))
    }

    /// A refusal: the entry is written now.
    fn refuse(mut self, status: Status) -> GrpcResponse {
        let code = status.code() as i32;
        self.record(code, BodyMeter::new(false), false);
        status.into_http()
    }

    /// The response goes back through a body that records the entry when
    /// the exchange ends: at the trailers, or when the client goes away.
    fn watch_response(self, response: GrpcResponse) -> GrpcResponse {
        let header_status = grpc_status(response.headers());
        let capture = self.log_bodies;
        response.map(|body| {
            tonic::body::Body::new(WatchedResponseBody {
                inner: body,
                meter: Some(BodyMeter::new(capture)),
                status: header_status,
                exchange: Some(self),
            })
        })
    }

    fn record(&mut self, status_code: i32, response: BodyMeter, response_read: bool) {
        let Some(reservation) = self.reservation.take() else { return };
        // What the request body gave so far: all of it, unless the client
        // was still streaming when the response ended.
        let (request_bytes, request_sha256, request_body, exceeded) = match self.request.take() {
            Some(meter) => match meter.lock() {
                Ok(mut meter) => {
                    let (bytes, digest, body) = std::mem::replace(&mut meter.body, BodyMeter::new(false)).finish();
                    (bytes, digest, body, meter.exceeded)
                }
                Err(_) => (0, Vec::new(), None, false),
            },
            None => (0, Vec::new(), None, false),
        };
        let (response_bytes, response_sha256, response_body) =
            if response_read { response.finish() } else { (0, Vec::new(), None) };
        let status_code = if exceeded { tonic::Code::ResourceExhausted as i32 } else { status_code };
        reservation.send(LogEntry {
            request_id: std::mem::take(&mut self.request_id),
            member_id: std::mem::take(&mut self.member_id),
            caller: std::mem::take(&mut self.caller),
            method: std::mem::take(&mut self.method),
            direction: self.direction,
            started_at: self.started_at,
            duration_us: u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            status_code,
            request_bytes,
            response_bytes,
            request_sha256,
            response_sha256,
            request_body,
            response_body,
        });
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

struct MeteredRequestBody {
    inner: tonic::body::Body,
    meter: Arc<Mutex<RequestMeter>>,
}

impl http_body::Body for MeteredRequestBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(context);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && let Ok(mut meter) = self.meter.lock()
        {
            meter.body.add(data);
            if meter.body.bytes > meter.limit {
                meter.exceeded = true;
                let limit = meter.limit;
                return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                    "the request is larger than {limit} bytes"
                )))));
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

struct WatchedResponseBody {
    inner: tonic::body::Body,
    meter: Option<BodyMeter>,
    /// The gRPC status, once seen (headers of a trailers-only response, or
    /// the trailers).
    status: Option<i32>,
    exchange: Option<Exchange>,
}

impl WatchedResponseBody {
    fn finish(&mut self, default_status: i32) {
        if let (Some(mut exchange), Some(meter)) = (self.exchange.take(), self.meter.take()) {
            exchange.record(self.status.unwrap_or(default_status), meter, true);
        }
    }
}

impl http_body::Body for WatchedResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(context);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && let Some(meter) = &mut self.meter
                {
                    meter.add(data);
                }
                if let Some(trailers) = frame.trailers_ref() {
                    self.status = grpc_status(trailers).or(self.status);
                }
            }
            Poll::Ready(Some(Err(_))) => self.finish(tonic::Code::Unavailable as i32),
            Poll::Ready(None) => self.finish(tonic::Code::Unknown as i32),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for WatchedResponseBody {
    fn drop(&mut self) {
        // The client went away before the end (or the body ended without our
        // seeing it end): the call was cancelled unless a status was seen.
        self.finish(tonic::Code::Cancelled as i32);
    }
}
