//! The door: every call to the gateway passes here first.
//!
//! Calls of the gateway's own methods go on to its routes (behind the
//! service kit's auth layer); every other call is forwarded, at the HTTP/2
//! level and without decoding its messages, to the service that serves its
//! proto package: unary and streaming alike, so a new method of a service
//! needs no change here. For a forwarded call the gateway authenticates the
//! member, applies its rate limit, checks its access right, replaces the
//! internal metadata, passes the time left of the deadline on, and relays
//! bodies and status unchanged. Every call (refused ones too: those of
//! callers that are not active members within one allowance, those over a
//! member's rate within as many again as its limits) gets a message log entry with the
//! SHA-256 digests and sizes of both bodies, computed as the bytes pass; a
//! call that ends early (the client cancels, the deadline passes) gets one
//! too.

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use esocial_auth::{Claims, FORWARDED_TOKEN_HEADER, TokenVerifier, bearer_token};
use esocial_kit::ApiError;
use esocial_kit::rate::Allowance;
use esocial_kit::server::{BoxGrpcService, Deadline, GRPC_STATUS, GRPC_TIMEOUT, GrpcRequest, GrpcResponse, RequestId};
use esocial_kit::shutdown::Shutdown;
use esocial_kit::telemetry::{TRACEPARENT, TRACESTATE};
use futures_util::FutureExt as _;
use http::{HeaderName, HeaderValue};
use http_body::Frame;
use sha2::{Digest as _, Sha256};
use tonic::Status;
use tonic::transport::{Channel, Endpoint};
use tower::ServiceExt as _;

use crate::catalog::{Catalog, Streaming};
use crate::counted::Counted;
use crate::directory::{Directory, MemberEntry};
use crate::domain::{MemberId, MethodPath, method_shown};
use crate::internal_tokens::InternalTokens;
use crate::message_log::{BodyBudget, Direction, LogEntry, LogSlot, MessageLog, Reservation};
use crate::reflection::{Reflection, Viewer};
use crate::standing::Standing;

/// Metadata only the gateway sets; a caller's values are removed.
pub const INTERNAL_METADATA_PREFIX: &str = "x-esocial-";
/// The member a forwarded call comes from (`UA/GOV/…/…`).
pub const MEMBER_HEADER: &str = "x-esocial-member";
/// The gateway node that forwarded the call.
pub const GATEWAY_NODE_HEADER: &str = "x-esocial-gateway-node";
// The names the gateway sets on every forwarded call, made once: a name
// given as a `&str` is copied into a new `HeaderName` at each insert.
const MEMBER_NAME: HeaderName = HeaderName::from_static(MEMBER_HEADER);
const GATEWAY_NODE_NAME: HeaderName = HeaderName::from_static(GATEWAY_NODE_HEADER);
const GRPC_ENCODING_NAME: HeaderName = HeaderName::from_static("grpc-encoding");
/// The gateway's own proto package: served here, not forwarded.
pub const OWN_PACKAGE: &str = "esocial.gateway.v1";
/// The methods through which auditors read the message log.
const LOG_SERVICE_PREFIX: &str = "/esocial.gateway.v1.MessageLogService/";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 pings to an upstream, and how long one may go unanswered.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Refusals of callers that are not active members (no valid token, not a
/// member, suspended, without the member's client certificate) that get
/// their own log entry; beyond this rate they are only counted (a flood
/// must not fill the log).
const DOOR_REFUSALS_PER_SECOND: u32 = 50;
const DOOR_REFUSALS_BURST: u32 = 200;
/// Bodies kept in full-mode log entries are at most this long; a longer
/// body keeps its size and digest only.
pub const BODY_CAPTURE_BYTES_MAX: usize = 1 << 20;

/// Where each proto package is served.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Shared by the calls of a multi-threaded runtime.
    channel: Channel,
    /// The address a single-threaded runtime connects to itself (see
    /// [`Upstream::send`]); none for an upstream that is not plain `http`,
    /// whose calls always take the shared channel.
    origin: Option<http::uri::Authority>,
    pub url: String,
    pub direction: Direction,
    /// The audience of the esocial service behind an inbound route (the
    /// tokens it accepts); none for other systems.
    pub audience: Option<Arc<str>>,
}

thread_local! {
    /// The connections of the single-threaded runtimes on this thread: by
    /// runtime, then by upstream address.
    static RUNTIME_CONNECTIONS: RefCell<HashMap<tokio::runtime::Id, HashMap<String, Arc<ThreadConnection>>>> =
        RefCell::new(HashMap::new());
}

/// The error of a forwarded call that got no answer.
type SendError = Box<dyn std::error::Error + Send + Sync>;

/// A forwarded call waiting for its answer's headers.
pub type Sending = Pin<Box<dyn Future<Output = Result<GrpcResponse, SendError>> + Send>>;

impl Upstream {
    /// Sends a call on and waits for the answer's headers. On a
    /// single-threaded runtime (each of the gateway's serving threads) the
    /// call goes over an HTTP/2 connection of that runtime's own, made on
    /// first use and again once it has closed, and driven by the thread that
    /// makes the calls: handing each call over to another thread and back,
    /// or to a balancing task, costs a proxy more than all it does itself.
    /// Elsewhere it takes the shared channel, balanced over
    /// `ESOCIAL_GATEWAY_UPSTREAM_CONNECTIONS` connections. A runtime's
    /// connections stay with its thread (a thread that runs many runtimes
    /// one after another, as a test runner may, keeps an entry for each).
    ///
    /// In the usual case (the runtime's connection is open) the call is
    /// handed to the connection at once, and the future returned holds the
    /// wait for the answer alone.
    pub fn send(&self, request: GrpcRequest) -> Sending {
        let Some(connection) = self.own_connection() else {
            return Box::pin(self.channel.clone().oneshot(request).map(|answered| Ok(answered?)));
        };
        match connection.open_sender() {
            Some(sender) => match connection.dispatch(sender, request) {
                Ok(answer) => Box::pin(answer.map(|answered| Ok(answered?.map(tonic::body::Body::new)))),
                Err(error) => Box::pin(std::future::ready(Err(error))),
            },
            None => Box::pin(async move { connection.send(request).await }),
        }
    }

    fn own_connection(&self) -> Option<Arc<ThreadConnection>> {
        let origin = self.origin.as_ref()?;
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
            return None;
        }
        Some(RUNTIME_CONNECTIONS.with(|connections| {
            let mut connections = connections.borrow_mut();
            let own = connections.entry(runtime.id()).or_default();
            // Looked up before anything is made: this runs for every call.
            if let Some(connection) = own.get(&self.url) {
                return Arc::clone(connection);
            }
            let connection = Arc::new(ThreadConnection { origin: origin.clone(), held: Default::default() });
            own.insert(self.url.clone(), Arc::clone(&connection));
            connection
        }))
    }
}

/// A single-threaded runtime's HTTP/2 connection to one upstream.
#[derive(Debug)]
struct ThreadConnection {
    origin: http::uri::Authority,
    /// The connection's handle; it is made again, by one call while the
    /// others wait, once the connection has closed.
    held: tokio::sync::Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    sender: Option<hyper::client::conn::http2::SendRequest<tonic::body::Body>>,
    /// When the last attempt to connect failed, and why: the calls that
    /// waited for that attempt fail with it rather than try again one by one.
    failed: Option<(Instant, String)>,
}

impl ThreadConnection {
    /// The connection's handle, when it is open and no call is making it
    /// again.
    fn open_sender(&self) -> Option<hyper::client::conn::http2::SendRequest<tonic::body::Body>> {
        let held = self.held.try_lock().ok()?;
        held.sender.as_ref().filter(|sender| !sender.is_closed()).cloned()
    }

    /// Hands the call to the connection (addressed to the upstream) and
    /// returns the wait for its answer.
    fn dispatch(
        &self,
        mut sender: hyper::client::conn::http2::SendRequest<tonic::body::Body>,
        mut request: GrpcRequest,
    ) -> Result<impl Future<Output = hyper::Result<http::Response<hyper::body::Incoming>>> + use<>, SendError> {
        let path = request.uri().path_and_query().map_or("/", http::uri::PathAndQuery::as_str);
        *request.uri_mut() = http::Uri::builder()
            .scheme(http::uri::Scheme::HTTP)
            .authority(self.origin.clone())
            .path_and_query(path)
            .build()?;
        Ok(sender.send_request(request))
    }

    /// Sends a call once the connection is open: it waits while another
    /// call makes it again, or makes it itself.
    async fn send(&self, request: GrpcRequest) -> Result<GrpcResponse, SendError> {
        let asked = Instant::now();
        let sender = {
            let mut held = self.held.lock().await;
            match (&held.sender, &held.failed) {
                (Some(sender), _) if !sender.is_closed() => sender.clone(),
                (_, Some((at, why))) if *at >= asked => return Err(why.clone().into()),
                _ => {
                    held.sender = None;
                    match self.connect().await {
                        Ok(sender) => {
                            *held = Held { sender: Some(sender.clone()), failed: None };
                            sender
                        }
                        Err(error) => {
                            held.failed = Some((Instant::now(), error.to_string()));
                            return Err(error);
                        }
                    }
                }
            }
        };
        Ok(self.dispatch(sender, request)?.await?.map(tonic::body::Body::new))
    }

    /// Connects within [`CONNECT_TIMEOUT`], with the keepalive the shared
    /// channel has.
    async fn connect(&self) -> Result<hyper::client::conn::http2::SendRequest<tonic::body::Body>, SendError> {
        use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
        let connecting = async {
            let stream = tokio::net::TcpStream::connect(self.origin.as_str()).await?;
            stream.set_nodelay(true)?;
            let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(KEEP_ALIVE_INTERVAL)
                .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
                .keep_alive_while_idle(true)
                .handshake(TokioIo::new(stream))
                .await?;
            let origin = self.origin.clone();
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, %origin, "a serving thread's upstream connection ended");
                }
            });
            Ok::<_, SendError>(sender)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| format!("no connection to {} within {} ms", self.origin, CONNECT_TIMEOUT.as_millis()))?
    }
}

#[derive(Debug, Clone, Default)]
pub struct Upstreams {
    by_package: HashMap<String, Upstream>,
}

impl Upstreams {
    /// Channels (connected lazily) for `(package, url)` routes, each over
    /// `connections` HTTP/2 connections (one connection is served by one
    /// task: several let the work spread over cores); inbound routes lead to
    /// esocial's services, outbound ones to other systems.
    pub fn new(
        inbound: &[(String, String)],
        outbound: &[(String, String)],
        connections: usize,
    ) -> Result<Self, tonic::transport::Error> {
        let mut by_package = HashMap::new();
        let mut channels: HashMap<String, Channel> = HashMap::new();
        for (routes, direction) in [(inbound, Direction::Inbound), (outbound, Direction::Outbound)] {
            for (package, url) in routes {
                let channel = match channels.get(url) {
                    Some(known) => known.clone(),
                    None => {
                        let endpoint = Endpoint::from_shared(url.clone())?
                            .connect_timeout(CONNECT_TIMEOUT)
                            .tcp_nodelay(true)
                            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
                            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
                            .keep_alive_while_idle(true);
                        let channel = if connections <= 1 {
                            endpoint.connect_lazy()
                        } else {
                            Channel::balance_list(std::iter::repeat_n(endpoint.clone(), connections))
                        };
                        channels.insert(url.clone(), channel.clone());
                        channel
                    }
                };
                let audience = (direction == Direction::Inbound)
                    .then(|| Arc::from(crate::internal_tokens::audience_of_package(package)));
                let origin = url
                    .parse::<http::Uri>()
                    .ok()
                    .filter(|uri| uri.scheme() == Some(&http::uri::Scheme::HTTP))
                    .and_then(|uri| uri.authority().cloned());
                by_package.insert(package.clone(), Upstream { channel, origin, url: url.clone(), direction, audience });
            }
        }
        Ok(Self { by_package })
    }

    pub fn get(&self, package: &str) -> Option<&Upstream> {
        self.by_package.get(package)
    }

    /// `(package, url, channel)` of every route, for reading the services'
    /// reflection (the shared channels, not a serving thread's).
    pub fn routes(&self) -> Vec<(String, String, Channel)> {
        self.by_package
            .iter()
            .map(|(package, upstream)| (package.clone(), upstream.url.clone(), upstream.channel.clone()))
            .collect()
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
    pub catalog: Arc<Catalog>,
    /// Describes the gateway's and the forwarded services as the catalog
    /// knows them.
    reflection: Reflection,
    /// How long a unary call may take unless its caller asks for less.
    pub unary_timeout: Duration,
    pub internal_tokens: InternalTokens,
    pub log: MessageLog,
    pub node: HeaderValue,
    /// Refusals of callers that are not active members that get a log entry.
    door_refusals: Allowance,
    /// Set when the gateway starts to stop: open streams end then.
    stopping: Shutdown,
}

impl Door {
    pub fn new(
        verifier: Arc<TokenVerifier>,
        directory: Arc<Directory>,
        (upstreams, catalog): (Upstreams, Arc<Catalog>),
        unary_timeout: Duration,
        internal_tokens: InternalTokens,
        log: MessageLog,
        node: HeaderValue,
    ) -> Self {
        let reflection = Reflection::new(catalog.clone(), &upstreams.packages());
        Self {
            verifier,
            directory,
            upstreams,
            catalog,
            reflection,
            unary_timeout,
            internal_tokens,
            log,
            node,
            door_refusals: Allowance::new(
                "refusals of callers that are not active members logged",
                DOOR_REFUSALS_PER_SECOND,
                DOOR_REFUSALS_BURST,
            ),
            stopping: Shutdown::new(),
        }
    }

    /// Ends the streams open through this door, each at a message's end
    /// with UNAVAILABLE, once `stopping` is triggered (the gateway starts
    /// to stop), instead of letting them run to the end of the grace
    /// period and be cut wherever they are.
    #[must_use]
    pub fn ending_streams_at(mut self, stopping: Shutdown) -> Self {
        self.stopping = stopping;
        self
    }
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

pub fn is_infrastructure(path: &str) -> bool {
    path.starts_with(HEALTH_PREFIX) || path.starts_with(REFLECTION_PREFIX)
}

/// The health service's methods.
const HEALTH_PREFIX: &str = "/grpc.health.v1.";
/// Server reflection's methods (v1 and v1alpha).
const REFLECTION_PREFIX: &str = "/grpc.reflection.";

/// Server reflection, for a caller with a valid token: an active member
/// (with its client certificate if it is bound to one; counted against its
/// rate) is described the methods it may call; a person who administers or
/// audits the gateway (who may call one of its own methods that are not for
/// members) every method. Another person gets `PERMISSION_DENIED`; anyone
/// else (no token, one that does not verify, a system that is not a member,
/// a member turned away) `UNAUTHENTICATED`, as at any method. Not logged, as
/// health is not. (`own_routes`, which describe the compiled files, answer
/// an administrator should no reflection service be built; a member gets
/// `UNAVAILABLE` then.)
async fn describe(door: Arc<Door>, own_routes: BoxGrpcService, request: GrpcRequest) -> GrpcResponse {
    let peer = peer_certificates(&request);
    let claims = match door.verified(bearer_token(request.headers())).await {
        Ok(claims) => claims,
        Err(refusal) => return refusal.into_http(),
    };
    let identified = door.identified(&claims, peer.as_ref());
    // The member described; `None` for an administrator.
    let member = match (identified.member, identified.refusal) {
        (Some(member), None) => {
            if let Err(status) = rate_limited(&member) {
                return status.into_http();
            }
            Some(member)
        }
        // A person (a system's token names its client) who administers or
        // audits the gateway.
        (None, Some(_)) if esocial_auth::system_client_of(&claims.sub).is_none() => {
            let caller = esocial_auth::Caller::from_claims(&claims, identified.token_accepted_until);
            if !crate::policy::administers(&caller) {
                return Status::permission_denied(
                    "the gateway is described to its member systems and to the people who administer or audit it",
                )
                .into_http();
            }
            None
        }
        (_, refusal) => {
            let refusal = refusal.unwrap_or_else(|| Status::unauthenticated("a valid bearer token is required"));
            return refusal.into_http();
        }
    };
    let viewer = member.as_deref().map_or(Viewer::Everything, Viewer::Member);
    // Built (when what the upstreams describe changed) only for a caller let in.
    let reflection = match door.reflection.service_for(request.uri().path(), viewer) {
        Some(reflection) => reflection,
        None if member.is_none() => own_routes,
        None => return Status::unavailable("the gateway cannot describe its methods now").into_http(),
    };
    reflection.oneshot(request).await.unwrap_or_else(|never| match never {})
}

/// Who is calling, as far as the token tells.
struct Identified {
    /// The token subject; empty without a valid token.
    caller: String,
    /// The token's id (`jti`); empty without a valid token.
    token_id: String,
    /// Until when the token is accepted (its `exp` and the verifier's
    /// leeway for clock skew, seconds since 1970-01-01 UTC); 0 without a
    /// valid token.
    token_accepted_until: u64,
    member: Option<Arc<MemberEntry>>,
    /// Why the door turns the caller away: no valid token, not a member, an
    /// inactive member, or one without its client certificate.
    refusal: Option<Status>,
}

impl Door {
    /// Who presents `token` (the member's bearer token, if the call has one).
    async fn identify(&self, token: Option<&str>, peer: Option<&PeerCertificates>) -> Identified {
        match self.verified(token).await {
            Ok(claims) => self.identified(&claims, peer),
            Err(refusal) => Identified {
                caller: String::new(),
                token_id: String::new(),
                token_accepted_until: 0,
                member: None,
                refusal: Some(refusal),
            },
        }
    }

    /// The claims of `token`; `UNAUTHENTICATED` without one, or when it
    /// does not verify.
    async fn verified(&self, token: Option<&str>) -> Result<Arc<Claims>, Status> {
        let Some(token) = token else {
            return Err(Status::unauthenticated("a bearer token of a member system is required"));
        };
        self.verifier.verify(token).await.map_err(|error| {
            tracing::info!(reason = %error, "refused token at the gateway");
            Status::unauthenticated("invalid token")
        })
    }

    /// Who the verified `claims` name: the member, and why the door turns it
    /// away (not a member, inactive, without its client certificate).
    fn identified(&self, claims: &Claims, peer: Option<&PeerCertificates>) -> Identified {
        let member =
            esocial_auth::system_client_of(&claims.sub).and_then(|client_id| self.directory.by_client(client_id));
        let refusal = match &member {
            None => Some(Status::unauthenticated(format!("{} is not a registered member system", claims.sub))),
            Some(entry) => turned_away(entry, || peer.and_then(leaf_fingerprint)),
        };
        Identified {
            caller: claims.sub.clone(),
            token_id: claims.jti.clone(),
            token_accepted_until: self.verifier.accepted_until(claims),
            member,
            refusal,
        }
    }
}

/// The client certificate chain the TLS handshake verified, leaf first.
pub type PeerCertificates = Arc<Vec<tonic::transport::CertificateDer<'static>>>;

fn peer_certificates(request: &GrpcRequest) -> Option<PeerCertificates> {
    request
        .extensions()
        .get::<tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>>()
        .and_then(tonic::transport::server::TlsConnectInfo::peer_certs)
}

/// The SHA-256 of the leaf of a verified client certificate chain: what a
/// member's binding holds.
pub fn leaf_fingerprint(chain: &PeerCertificates) -> Option<[u8; 32]> {
    chain.first().map(|certificate| Sha256::digest(certificate.as_ref()).into())
}

/// The refusal of a member that is not active (suspended, or its system
/// client deactivated at identity).
pub fn inactive(entry: &MemberEntry) -> Status {
    Status::unauthenticated(entry.inactive_reason())
}

/// The refusal of a member without a right to the method at `path`.
pub fn not_permitted(member_id: &MemberId, path: &str) -> Status {
    Status::permission_denied(format!("member {member_id} may not call {}", method_shown(path)))
}

/// The refusal of a member bound to a client certificate that did not
/// present it.
fn certificate_required(member_id: &MemberId) -> Status {
    Status::unauthenticated(format!(
        "member {member_id} must present its registered client certificate (mutual TLS) with its token"
    ))
}

/// Why a known member is turned away whatever it calls (`UNAUTHENTICATED`):
/// it is not active, or it is bound to a client certificate its connection
/// did not present (`presented`, its SHA-256, asked for only then). The door
/// asks it at every call, and an open stream (forwarded, or `Subscribe`)
/// again while it lasts.
pub fn turned_away(entry: &MemberEntry, presented: impl FnOnce() -> Option<[u8; 32]>) -> Option<Status> {
    if !entry.is_active() {
        Some(inactive(entry))
    } else if !entry.admits_certificate(presented) {
        Some(certificate_required(&entry.member.member_id))
    } else {
        None
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
        let path = request.uri().path();
        // Health and reflection: not logged. Health is answered at once, to
        // anyone (a probe has no token); reflection to callers the door
        // lets in.
        if path.starts_with(REFLECTION_PREFIX) {
            return Box::pin(describe(self.door.clone(), self.own_routes.clone(), request).map(Ok));
        }
        if path.starts_with(HEALTH_PREFIX) {
            return Box::pin(self.own_routes.clone().oneshot(request));
        }
        // The gateway's own routes are a stack of boxed services: cloned
        // only for a call to one of its own methods, not for every call
        // forwarded.
        let own_routes = MethodPath::parse(path)
            .is_some_and(|method| method.package == OWN_PACKAGE)
            .then(|| self.own_routes.clone());
        // Not in an `async` block: one would hold the call's future twice,
        // before and while it is awaited.
        Box::pin(pass(self.door.clone(), own_routes, request).map(Ok))
    }
}

fn rate_limited(member: &MemberEntry) -> Result<(), Status> {
    member.take_token().map_err(|retry_after| {
        ApiError::ResourceExhausted {
            message: format!(
                "member {} is over its limit of {} requests a second (burst {})",
                member.member.member_id, member.requests_per_second, member.burst
            ),
            retry_after,
        }
        .into()
    })
}

/// The member's limits on a call: its rate, then its calls in flight (at
/// most `calls_max`, or their entries' places in the message log's queue
/// would be one member's to take). The call counted in flight, or the
/// refusal.
fn within_limits(member: &MemberEntry, calls_max: usize) -> Result<Counted, Status> {
    rate_limited(member)?;
    member.call_in_flight(calls_max).ok_or_else(|| {
        ApiError::ResourceExhausted {
            message: format!(
                "member {} has {calls_max} calls in flight, as many as a member may have at once",
                member.member.member_id
            ),
            retry_after: Duration::from_secs(1),
        }
        .into()
    })
}

/// A logged call's way through the door: to the gateway's own routes
/// (`own_routes`, given for a method of [`OWN_PACKAGE`]) or on to a
/// service. (Not an `async fn`: one keeps its arguments twice in its
/// future, once as passed and once as bound.)
#[expect(clippy::manual_async_fn, reason = "an `async fn` would hold its arguments twice")]
fn pass(
    door: Arc<Door>,
    own_routes: Option<BoxGrpcService>,
    mut request: GrpcRequest,
) -> impl Future<Output = GrpcResponse> + Send + 'static {
    async move {
        let path = request.uri().path().to_owned();
        let started = Instant::now();
        let started_at = Utc::now();
        let request_id = request.extensions().get::<RequestId>().map(|id| id.0.clone()).unwrap_or_default();
        let deadline = request.extensions().get::<Deadline>().map(|deadline| deadline.0);
        let peer = peer_certificates(&request);
        let parsed = MethodPath::parse(&path);
        let package = parsed.map(|method| method.package).unwrap_or_default();
        let upstream = door.upstreams.get(package);
        // Identifying the caller may wait (for the identity service's keys);
        // a call given up meanwhile still gets its entry.
        let arriving = Arriving {
            door: Some(&door),
            call: Call {
                started,
                started_at,
                deadline,
                request_id,
                method: method_shown(&path).into_owned(),
                direction: upstream.map_or(Direction::Inbound, |upstream| upstream.direction),
            },
        };
        // Boxed, as is the wait for the service's answer below: this call's
        // future is allocated, and moved, with room for the largest thing it
        // waits for. Kept near a kilobyte (1,008 bytes in a release build;
        // `-Zprint-type-sizes` shows it, see the benchmark notes), it comes
        // from the allocator's per-thread cache instead of the heap's bins.
        // The member's token, read once: identified now, exchanged below.
        let member_token = bearer_token(request.headers());
        let mut identified = Box::pin(door.identify(member_token, peer.as_ref())).await;
        let call = arriving.identified();
        // Callers the door turns away (without a valid token; with one, but
        // not an active member, or without the member's client certificate)
        // have no rate of their own: their refusals are logged within one
        // allowance, so that a flood of them cannot fill the log. Valid
        // non-member callers of the gateway's own methods (its administrators)
        // go on to the auth layer; members are refused here whatever the
        // method.
        if let Some(refusal) = &identified.refusal
            && (identified.caller.is_empty() || package != OWN_PACKAGE || identified.member.is_some())
            && !door.door_refusals.admit()
        {
            return refusal.clone().into_http();
        }
        let known_streaming = door.catalog.streaming(&path);
        let slot = match door.log.slot(known_streaming.is_some_and(Streaming::any)) {
            Ok(slot) => slot,
            Err(unavailable) => return Status::unavailable(unavailable.to_string()).into_http(),
        };
        let mut exchange = call.exchange(
            slot,
            identified.member.as_ref().map(|entry| entry.member.member_id.to_string()).unwrap_or_default(),
            std::mem::take(&mut identified.caller),
            identified.member.as_ref().is_some_and(|entry| entry.logs_bodies()),
        );

        if let Some(own_routes) = own_routes {
            // The gateway's own methods: the auth layer and handlers decide.
            // A member is turned away here as on a forwarded call (UNAUTHENTICATED)
            // when it is not active or lacks its client certificate, and a
            // member's calls count against its rate like any other.
            if identified.member.is_some()
                && let Some(refusal) = &identified.refusal
            {
                return exchange.refuse(refusal.clone());
            }
            if let Some(member) = &identified.member {
                match within_limits(member, door.log.member_calls_max()) {
                    Ok(call) => exchange.in_flight = Some(call),
                    Err(status) => return exchange.refuse_over_rate(member, status),
                }
            }
            // What only the gateway sets is no caller's to send here either:
            // the auth layer would otherwise take a token from
            // `x-esocial-token`, which the door did not identify the caller by
            // (and the log entry would name no caller).
            remove_internal(request.headers_mut());
            // What an auditor asks of the log (the filters of a search, the
            // node to verify) is kept with the entry of the call, so that the
            // log records what was read; the answer is not copied into it.
            let bodies = exchange.log_bodies.then_some(door.log.body_budget());
            let asked = if path.starts_with(LOG_SERVICE_PREFIX) { Some(door.log.body_budget()) } else { bodies };
            let request = exchange.meter_request(request, u64::MAX, asked);
            let response = own_routes.oneshot(request).await.unwrap_or_else(|never| match never {});
            return exchange.watch_response(response, u64::MAX, None, bodies);
        }
        let member = match identified_member(&identified) {
            Ok(member) => member,
            Err(status) => return exchange.refuse(status),
        };
        match within_limits(&member, door.log.member_calls_max()) {
            Ok(call) => exchange.in_flight = Some(call),
            Err(status) => return exchange.refuse_over_rate(&member, status),
        }
        let upstream = match route(&member, parsed, &path, upstream) {
            Ok(upstream) => upstream,
            Err(status) => return exchange.refuse(status),
        };
        // The member's message size limit holds for what the service receives:
        // a compressed message could pass it and then grow many times over.
        // Every value is looked at: services differ in which of two they
        // take.
        if let Some(encoding) =
            request.headers().get_all(GRPC_ENCODING_NAME).iter().find(|encoding| *encoding != "identity")
        {
            return exchange.refuse(Status::unimplemented(format!(
                "the gateway takes uncompressed messages only (grpc-encoding {encoding:?}), so that the member's size limit holds"
            )));
        }
        // A method the catalog does not know yet (added to its service since
        // the catalog last read it) is looked up now, waited for within the
        // call's deadline; one that stays unknown goes on as unary, and its
        // service answers for it.
        let streaming = match (known_streaming, deadline) {
            (Some(streaming), _) => streaming,
            // (Boxed: rare, and held inline it would grow every call's future.)
            (None, Some(deadline)) => {
                Box::pin(tokio::time::timeout_at(deadline.into(), door.catalog.learn_method(&path)))
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            }
            (None, None) => Box::pin(door.catalog.learn_method(&path)).await.unwrap_or_default(),
        };
        let streams = streaming.any();
        if streams {
            exchange.slot = exchange.slot.take().map(|slot| slot.streaming(&door.log));
            // A stream may last long after the door let it in: its member
            // and its token are checked again while it is open.
            exchange.standing = Some(Arc::new(Standing::new(
                door.directory.clone(),
                member.member.member_id.clone(),
                path.clone(),
                peer.clone(),
                identified.token_accepted_until,
                door.stopping.clone(),
            )));
        }
        // The server's deadline (the caller's, or the longest a call may take)
        // holds a unary call to the configured timeout when the server did
        // not know the method to be unary.
        let server_deadline = deadline.unwrap_or_else(|| started + esocial_kit::server::LONG_CALL_TIMEOUT);
        let deadline = if streams { server_deadline } else { server_deadline.min(started + door.unary_timeout) };
        exchange.deadline = Some(deadline);
        let exchanged = match (&upstream.audience, member_token) {
            (Some(audience), Some(token)) => {
                match door.internal_tokens.token(token, &identified.token_id, audience).await {
                    Ok(exchanged) => Some(exchanged),
                    Err(status) => return exchange.refuse(status),
                }
            }
            _ => None,
        };
        // What is left once the token is at hand (an exchange at identity
        // takes time) goes on to the service.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return exchange.refuse(Status::deadline_exceeded("the deadline passed before the call was forwarded"));
        }
        set_grpc_timeout(request.headers_mut(), left);
        prepare_headers(&door.node, &member, exchanged, &exchange.request_id, request.headers_mut());
        let limit = u64::from(member.message_bytes_max);
        let bodies = exchange.log_bodies.then_some(door.log.body_budget());
        let request = exchange.meter_request(request, limit, bodies);
        let forwarded = upstream.send(request);
        // The server's own timer covers the wait for the headers unless this
        // deadline is shorter (never for a stream, whose member is held to
        // the door's checks meanwhile too). (Boxed: held inline, the wait
        // would grow every call's future.)
        let answered = if let Some(standing) = exchange.standing.clone() {
            // A service that answers a client stream with one message has it
            // all once the client ends its stream: from then on it has the
            // time a unary call has to answer.
            let answer_within = (!streaming.responses).then_some(door.unary_timeout);
            let waited = Box::pin(unless_refused(&standing, forwarded, answer_within)).await;
            match waited {
                Ok(answered) => answered,
                Err(status) => return exchange.refuse(status),
            }
        } else if deadline < server_deadline {
            match tokio::time::timeout_at(deadline.into(), forwarded).await {
                Ok(answered) => answered,
                Err(_) => {
                    return exchange.refuse(Status::deadline_exceeded(
                        "the service behind the gateway did not answer within the deadline",
                    ));
                }
            }
        } else {
            forwarded.await
        };
        match answered {
            Ok(response) => exchange.watch_response(response, limit, Some(deadline), bodies),
            Err(error) => {
                let status = if let Some(refused) = exchange.request_refused() {
                    refused
                } else if is_timeout(error.as_ref()) {
                    Status::deadline_exceeded("the service behind the gateway did not answer within the deadline")
                } else {
                    tracing::warn!(%error, upstream = %upstream.url, method = %path, "upstream unavailable");
                    Status::unavailable(format!("the service behind the gateway for {package} is unavailable"))
                };
                exchange.refuse(status)
            }
        }
    }
}

/// The wait for a stream's service to answer with headers, given up once
/// the stream's member loses its standing: a client stream whose service
/// answers only at its end, with a client that sends nothing more, would
/// otherwise pass neither way to be checked at until its deadline. With
/// `answer_within`, it is given up too when the service has not answered
/// that long after the client ended its request stream (a service that
/// answers with one message then has all it needs to answer; one that
/// streams its answers may keep its client waiting). Dropping the wait
/// resets the service's side. A change that comes with the headers is left
/// to the response body, which checks the standing at its first wait.
async fn unless_refused<Answer>(
    standing: &Standing,
    answer: impl Future<Output = Answer>,
    answer_within: Option<Duration>,
) -> Result<Answer, Status> {
    let unanswered = async {
        let Some(within) = answer_within else { return std::future::pending().await };
        standing.request_finished().await;
        tokio::time::sleep(within).await;
        within
    };
    tokio::select! {
        biased;
        answered = answer => Ok(answered),
        refused = standing.lost() => Err(refused),
        within = unanswered => Err(Status::deadline_exceeded(format!(
            "the service behind the gateway did not answer within {} ms of the end of the request stream",
            within.as_millis()
        ))),
    }
}

/// What the log records of a call before its caller is known.
struct Call {
    started: Instant,
    started_at: chrono::DateTime<Utc>,
    deadline: Option<Instant>,
    request_id: String,
    method: String,
    direction: Direction,
}

impl Call {
    /// Moves the call out, leaving its texts empty.
    fn take(&mut self) -> Self {
        Self { request_id: std::mem::take(&mut self.request_id), method: std::mem::take(&mut self.method), ..*self }
    }

    /// The call's exchange, of `member_id` (empty: none) and `caller` (the
    /// token's subject; empty: none), whose entry is written when it is
    /// refused, when it ends, or when it is dropped.
    fn exchange(self, slot: LogSlot, member_id: String, caller: String, log_bodies: bool) -> Exchange {
        Exchange {
            slot: Some(slot),
            started: self.started,
            started_at: self.started_at,
            deadline: self.deadline,
            request_id: self.request_id,
            member_id,
            caller,
            method: self.method,
            direction: self.direction,
            log_bodies,
            request: None,
            in_flight: None,
            standing: None,
        }
    }
}

/// A call whose caller the door is still identifying. Dropped before it is
/// told the caller (the client gave up, the deadline passed), it writes the
/// call's entry, without a member, within the allowance of callers the
/// door did not identify.
struct Arriving<'door> {
    /// `None` once the caller is identified.
    door: Option<&'door Door>,
    call: Call,
}

impl Arriving<'_> {
    /// The caller is known: the call goes on, and what follows writes its
    /// entry.
    fn identified(mut self) -> Call {
        self.door = None;
        self.call.take()
    }
}

impl Drop for Arriving<'_> {
    fn drop(&mut self) {
        let Some(door) = self.door else { return };
        if !door.door_refusals.admit() {
            return;
        }
        let Ok(slot) = door.log.slot(false) else { return };
        // Recorded as cancelled, or as past its deadline, as it is dropped.
        drop(self.call.take().exchange(slot, String::new(), String::new(), false));
    }
}

fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<tonic::TimeoutExpired>() {
            return true;
        }
        current = error.source();
    }
    false
}

/// `grpc-timeout` in milliseconds (at most 8 digits, as the protocol wants).
fn set_grpc_timeout(headers: &mut http::HeaderMap, left: Duration) {
    use std::io::Write as _;
    // At most eight digits and the unit, written on the stack: no `String`
    // between them and the header value.
    const LENGTH_MAX: usize = 9;
    let milliseconds = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).clamp(1, 99_999_999);
    let mut text = [0_u8; LENGTH_MAX];
    let mut rest = &mut text[..];
    if write!(rest, "{milliseconds}m").is_err() {
        return;
    }
    let written = LENGTH_MAX - rest.len();
    if let Ok(mut value) = HeaderValue::from_bytes(&text[..written]) {
        // New on nearly every call: kept out of the header table, as the
        // request id is (`esocial_kit::server::request_id_value`).
        value.set_sensitive(true);
        headers.insert(GRPC_TIMEOUT, value);
    }
}

/// The first check before a call is forwarded: an active member.
fn identified_member(identified: &Identified) -> Result<Arc<MemberEntry>, Status> {
    if let Some(refusal) = &identified.refusal {
        return Err(refusal.clone());
    }
    identified.member.clone().ok_or_else(|| Status::unauthenticated("a bearer token of a member system is required"))
}

/// The checks after the member's rate: a right to the method, and a
/// service that serves it (`upstream`, the one routed its package).
fn route<'door>(
    member: &MemberEntry,
    parsed: Option<MethodPath<'_>>,
    path: &str,
    upstream: Option<&'door Upstream>,
) -> Result<&'door Upstream, Status> {
    let Some(method) = parsed else {
        return Err(Status::unimplemented(format!("{} is not a gRPC method path", method_shown(path))));
    };
    if !member.may_call(&method, path) {
        return Err(not_permitted(&member.member.member_id, path));
    }
    upstream.ok_or_else(|| {
        Status::unimplemented(format!("no service behind the gateway serves {}", method_shown(method.package)))
    })
}

/// Removes what only the gateway may set, then sets it: the member, the
/// request id, this node, and the trace context of the gateway's span. The
/// member's token never goes on: a call to an esocial service carries the
/// token exchanged for it (in [`FORWARDED_TOKEN_HEADER`], where HTTP/2 sends
/// it once per connection, not on every call as it would `authorization`), a
/// call to another system none.
///
/// The request id goes as a value never indexed
/// ([`esocial_kit::server::request_id_value`]), and so does `grpc-timeout`
/// ([`set_grpc_timeout`]): both are new on every call.
///
/// Trace context goes on when the caller sent some (the caller's trace
/// continues) or when the gateway exports its spans. A call that came
/// without it to a gateway that exports nothing gets none: the service
/// starts the trace, instead of holding as parent a span of the gateway's
/// that no one will ever see (the request id ties the logs together).
fn prepare_headers(
    node: &HeaderValue,
    member: &MemberEntry,
    exchanged_token: Option<HeaderValue>,
    request_id: &str,
    headers: &mut http::HeaderMap,
) {
    remove_internal(headers);
    headers.remove(http::header::AUTHORIZATION);
    if let Some(token) = exchanged_token {
        headers.insert(FORWARDED_TOKEN_HEADER, token);
    }
    headers.insert(MEMBER_NAME, member.member_header.clone());
    headers.insert(GATEWAY_NODE_NAME, node.clone());
    if let Some(value) = esocial_kit::server::request_id_value(request_id) {
        headers.insert(esocial_kit::server::REQUEST_ID_HEADER, value);
    }
    if esocial_kit::telemetry::exporting() || headers.contains_key(TRACEPARENT) {
        esocial_kit::telemetry::inject_trace_context(headers);
    } else {
        headers.remove(TRACESTATE);
    }
}

/// Removes the metadata only the gateway may set.
fn remove_internal(headers: &mut http::HeaderMap) {
    let is_internal = |name: &HeaderName| name.as_str().starts_with(INTERNAL_METADATA_PREFIX);
    if headers.keys().any(is_internal) {
        let internal: Vec<HeaderName> = headers.keys().filter(|name| is_internal(name)).cloned().collect();
        for name in internal {
            headers.remove(name);
        }
    }
}

/// Digest, size and (in full mode, up to [`BODY_CAPTURE_BYTES_MAX`]) the
/// bytes of one direction of a call.
#[derive(Debug)]
struct BodyMeter {
    digest: Sha256,
    bytes: u64,
    captured: Option<Vec<u8>>,
    /// The place the bytes kept hold in the budget.
    kept: Reservation,
}

impl BodyMeter {
    /// A meter that keeps the bytes too when given the budget to count
    /// them against.
    fn new(keep: Option<&Arc<BodyBudget>>) -> Self {
        Self {
            digest: Sha256::new(),
            bytes: 0,
            captured: keep.map(|_| Vec::new()),
            kept: keep.map_or_else(Reservation::default, BodyBudget::reservation),
        }
    }

    fn add(&mut self, data: &Bytes) {
        self.digest.update(data);
        self.bytes += u64::try_from(data.len()).unwrap_or(u64::MAX);
        if let Some(captured) = &mut self.captured {
            let fits = captured.len() + data.len() <= BODY_CAPTURE_BYTES_MAX && self.kept.grow(data.len());
            if fits {
                captured.extend_from_slice(data);
            } else {
                // Too long, or no room left: size and digest only.
                self.captured = None;
                self.kept.release();
            }
        }
    }

    /// Size, digest, the bytes kept, and their place in the budget.
    fn finish(self) -> (u64, Vec<u8>, Option<Vec<u8>>, Reservation) {
        (self.bytes, self.digest.finalize().to_vec(), self.captured, self.kept)
    }
}

/// Reads gRPC message frames (a flag byte, a 4-byte big-endian length, the
/// message) as bytes pass, to hold each message to the size limit.
#[derive(Debug, Default)]
struct FrameReader {
    header: [u8; 5],
    header_filled: usize,
    message_left: u64,
}

/// A message longer than the limit starts.
#[derive(Debug, PartialEq, Eq)]
struct Oversized {
    /// Its length, as its header says.
    length: u64,
    /// Where its header starts in the bytes fed last: what comes before
    /// is whole messages (or the rest of one), 0 if the header started in
    /// earlier bytes.
    starts_at: usize,
}

impl FrameReader {
    /// How many bytes of a message header the bytes fed so far ended in.
    fn partial_header(&self) -> usize {
        self.header_filled
    }

    /// `Err` as soon as the header of a message longer than `limit` is read.
    fn feed(&mut self, data: &[u8], limit: u64) -> Result<(), Oversized> {
        let mut at = 0;
        while at < data.len() {
            if self.message_left > 0 {
                let take = usize::try_from(self.message_left).unwrap_or(usize::MAX).min(data.len() - at);
                self.message_left -= u64::try_from(take).unwrap_or(0);
                at += take;
                continue;
            }
            let header_starts_at = at.saturating_sub(self.header_filled);
            let take = (5 - self.header_filled).min(data.len() - at);
            self.header[self.header_filled..self.header_filled + take].copy_from_slice(&data[at..at + take]);
            self.header_filled += take;
            at += take;
            if self.header_filled == 5 {
                let length =
                    u64::from(u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]));
                if length > limit {
                    return Err(Oversized { length, starts_at: header_starts_at });
                }
                self.message_left = length;
                self.header_filled = 0;
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct RequestMeter {
    body: BodyMeter,
    frames: FrameReader,
    limit: u64,
    exceeded: bool,
    /// The member lost its standing while the client was streaming.
    refused: Option<Status>,
}

/// One call on its way through: what its log entry will say. Dropped
/// before the exchange ended (the client cancelled, the deadline passed),
/// it records that.
struct Exchange {
    slot: Option<LogSlot>,
    started: Instant,
    started_at: chrono::DateTime<Utc>,
    deadline: Option<Instant>,
    request_id: String,
    member_id: String,
    caller: String,
    method: String,
    direction: Direction,
    log_bodies: bool,
    request: Option<Arc<Mutex<RequestMeter>>>,
    /// The member's call counted in flight until the exchange ends.
    in_flight: Option<Counted>,
    /// A stream's member, checked again at each message.
    standing: Option<Arc<Standing>>,
}

impl Exchange {
    /// Wraps the request body so its bytes are counted and digested as the
    /// service reads them, and cut off at a message longer than `limit`.
    /// Given the budget to count them against, it keeps the bytes too.
    fn meter_request(&mut self, request: GrpcRequest, limit: u64, keep: Option<&Arc<BodyBudget>>) -> GrpcRequest {
        let meter = Arc::new(Mutex::new(RequestMeter {
            body: BodyMeter::new(keep),
            frames: FrameReader::default(),
            limit,
            exceeded: false,
            refused: None,
        }));
        self.request = Some(meter.clone());
        let standing = self.standing.clone();
        if let Some(standing) = &standing
            && http_body::Body::is_end_stream(request.body())
        {
            standing.finish_request();
        }
        request.map(|body| tonic::body::Body::new(MeteredRequestBody { inner: body, meter, standing }))
    }

    /// What the client is told when the request body was cut off (the
    /// service's stream was reset for it), if it was: a message passed the
    /// member's limit, or the member lost its standing.
    fn request_refused(&self) -> Option<Status> {
        let meter = self.request.as_ref()?.lock().ok()?;
        if meter.exceeded {
            return Some(Status::resource_exhausted(format!(
                "a request message is larger than the member's limit of {} bytes",
                meter.limit
            )));
        }
        meter.refused.clone()
    }

    /// A refusal: the entry is written now.
    fn refuse(mut self, status: Status) -> GrpcResponse {
        self.record(status.code() as i32, None);
        status.into_http()
    }

    /// A refusal for the member's rate: written within the member's
    /// allowance of such entries, and beyond it only counted.
    fn refuse_over_rate(mut self, member: &MemberEntry, status: Status) -> GrpcResponse {
        if member.refusals_logged.admit() {
            return self.refuse(status);
        }
        self.slot = None;
        status.into_http()
    }

    /// The response goes back through a body that records the entry when
    /// the exchange ends: at the trailers, or when the client goes away. It
    /// holds each message to `limit`, and a forwarded call to its
    /// `deadline` after the service's headers too (the gateway's own
    /// streams last as long as they stream).
    fn watch_response(
        self,
        response: GrpcResponse,
        limit: u64,
        deadline: Option<Instant>,
        keep: Option<&Arc<BodyBudget>>,
    ) -> GrpcResponse {
        let header_status = grpc_status(response.headers());
        let meter = BodyMeter::new(keep);
        let watching = self.standing.clone().map(Watching::new);
        response.map(|body| {
            tonic::body::Body::new(WatchedResponseBody {
                inner: body,
                meter: Some(meter),
                status: header_status,
                exchange: Some(self),
                frames: FrameReader::default(),
                limit,
                deadline,
                timer: None,
                cut_off: false,
                pending: None,
                held: None,
                watching,
                refusing: None,
            })
        })
    }

    fn record(&mut self, status_code: i32, response: Option<BodyMeter>) {
        // The call is over, however it ended: a stream's request side ends
        // too, whether or not its client sends anything more.
        if let Some(standing) = &self.standing {
            standing.end_call();
        }
        let Some(slot) = self.slot.take() else { return };
        // What the request body gave so far: all of it, unless the client
        // was still streaming when the exchange ended.
        let (request_bytes, request_sha256, request_body, mut kept, exceeded) = match self.request.take() {
            Some(meter) => match meter.lock() {
                Ok(mut meter) => {
                    let (bytes, digest, body, kept) = std::mem::replace(&mut meter.body, BodyMeter::new(None)).finish();
                    (bytes, digest, body, kept, meter.exceeded)
                }
                Err(_) => (0, Vec::new(), None, Reservation::default(), false),
            },
            None => (0, Vec::new(), None, Reservation::default(), false),
        };
        let (response_bytes, response_sha256, response_body) = match response.map(BodyMeter::finish) {
            Some((bytes, digest, body, response_kept)) => {
                kept.absorb(response_kept);
                (bytes, digest, body)
            }
            None => (0, Vec::new(), None),
        };
        let status_code = if exceeded { tonic::Code::ResourceExhausted as i32 } else { status_code };
        slot.send(
            LogEntry {
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
            },
            kept,
        );
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if self.slot.is_some() {
            let timed_out = self.deadline.is_some_and(|deadline| Instant::now() >= deadline);
            let code = if timed_out { tonic::Code::DeadlineExceeded } else { tonic::Code::Cancelled };
            self.record(code as i32, None);
        }
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers.get(GRPC_STATUS)?.to_str().ok()?.parse().ok()
}

struct MeteredRequestBody {
    inner: tonic::body::Body,
    meter: Arc<Mutex<RequestMeter>>,
    standing: Option<Arc<Standing>>,
}

impl http_body::Body for MeteredRequestBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        // The call has ended (its entry is recorded): nothing more goes on
        // to the service (whose stream this resets), and the client's side
        // is let go, whether or not it sends anything more.
        if let Some(standing) = &self.standing
            && standing.poll_call_ended(context)
        {
            let status = standing.refusal().unwrap_or_else(|| Status::cancelled("the call has ended"));
            return Poll::Ready(Some(Err(status)));
        }
        let mut polled = Pin::new(&mut self.inner).poll_frame(context);
        // Request trailers are metadata too: what only the gateway sets, and
        // the member's token, do not go on in them either.
        if let Poll::Ready(Some(Ok(frame))) = &mut polled
            && let Some(trailers) = frame.trailers_mut()
        {
            remove_internal(trailers);
            trailers.remove(http::header::AUTHORIZATION);
        }
        // The end of the client's stream: with its last message, in
        // trailers, or on its own.
        if let Some(standing) = &self.standing {
            let ended = match &polled {
                Poll::Ready(None) => true,
                Poll::Ready(Some(Ok(frame))) => frame.is_trailers() || self.inner.is_end_stream(),
                _ => false,
            };
            if ended {
                standing.finish_request();
            }
        }
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && let Ok(mut meter) = self.meter.lock()
        {
            if let Some(standing) = &self.standing
                && let Err(status) = standing.check()
            {
                // The message does not go on; the client gets the status.
                meter.refused = Some(status.clone());
                if standing.watched() {
                    // From the response side, which ends the call once the
                    // response message under way has passed (failing here
                    // would reset the service's side, and cut that message
                    // short); the call's end then ends this body.
                    return Poll::Pending;
                }
                return Poll::Ready(Some(Err(status)));
            }
            meter.body.add(data);
            let limit = meter.limit;
            if let Err(Oversized { length, .. }) = meter.frames.feed(data, limit) {
                meter.exceeded = true;
                return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                    "a request message of {length} bytes is larger than {limit} bytes"
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
    /// Each response message is held to `limit`.
    frames: FrameReader,
    limit: u64,
    /// When the call must have ended: a service that answered with headers
    /// and then stalls is cut off here.
    deadline: Option<Instant>,
    /// Set at the first wait for the service.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The call was cut off: the trailers saying why are `pending` or sent.
    cut_off: bool,
    /// A frame to send at the next poll: the trailers after the bytes
    /// sent with them in mind (the messages before a cut-off, the bytes
    /// `held` when the service ended).
    pending: Option<Frame<Bytes>>,
    /// The first bytes of a message header that a frame of the service
    /// ended in the middle of: they go on with the rest of the header, once
    /// the message is known to be within the limit, so that a message cut
    /// off for its size leaves no piece of itself with the client.
    held: Option<Bytes>,
    /// A stream's member, checked again at each message and whenever the
    /// directory changes.
    watching: Option<Watching>,
    /// The member lost its standing while a message was on its way to the
    /// client: the call ends with this once that message has passed.
    refusing: Option<Status>,
}

/// How long a stream whose member lost its standing waits for the rest of
/// the response message under way before it ends all the same.
const REFUSAL_GRACE: Duration = Duration::from_secs(2);

/// A stream's [`Standing`] and the wait for it to be lost
/// ([`Standing::lost`], which checks at its first poll too: the directory
/// may have changed while the service had not answered yet).
struct Watching {
    standing: Arc<Standing>,
    /// `None` once it has ended.
    lost: Option<Pin<Box<dyn Future<Output = Status> + Send>>>,
}

impl Watching {
    fn new(standing: Arc<Standing>) -> Self {
        standing.watch();
        let waiting = standing.clone();
        Self { standing, lost: Some(Box::pin(async move { waiting.lost().await })) }
    }

    /// Why the stream must end, if the member lost its standing; until
    /// then the directory's next change wakes the task.
    fn lost(&mut self, context: &mut Context<'_>) -> Option<Status> {
        let Poll::Ready(status) = self.lost.as_mut()?.as_mut().poll(context) else { return None };
        self.lost = None;
        Some(status)
    }
}

impl WatchedResponseBody {
    fn finish(&mut self, default_status: i32) {
        if let Some(mut exchange) = self.exchange.take() {
            exchange.record(self.status.unwrap_or(default_status), self.meter.take());
        }
    }

    /// Past the deadline, the service's stream is dropped (reset) and the
    /// client gets trailers with `DEADLINE_EXCEEDED`: checked at every
    /// frame (a stream that always has data ready) and, while the service
    /// keeps the client waiting, by a timer.
    fn expire_if_due(&mut self, context: Option<&mut Context<'_>>) -> Option<Frame<Bytes>> {
        let deadline = self.deadline?;
        let due = match context {
            None => Instant::now() >= deadline,
            Some(context) => {
                let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
                std::future::Future::poll(timer.as_mut(), context).is_ready()
            }
        };
        due.then(|| {
            // Refusing, the deadline is the grace for the message under way.
            let status = self.refusing.clone().unwrap_or_else(|| {
                Status::deadline_exceeded("the service behind the gateway did not finish within the deadline")
            });
            self.cut_off(&status)
        })
    }

    /// Ends the call at a message larger than the member's limit: the
    /// messages before it (`held` and `data` up to its header) go on, then
    /// the trailers. Its header's first bytes, if an earlier frame brought
    /// them, were held back and are dropped with it.
    fn cut_off_at(&mut self, held: Option<Bytes>, data: &Bytes, oversized: &Oversized) -> Frame<Bytes> {
        // A header that starts at 0 may have begun in the held bytes; any
        // later one follows the header those bytes began.
        let before =
            if oversized.starts_at == 0 { Bytes::new() } else { joined(held, data.slice(..oversized.starts_at)) };
        self.forwarded(&before);
        let (length, limit) = (oversized.length, self.limit);
        let trailers = self.cut_off(&Status::resource_exhausted(format!(
            "a response message of {length} bytes is larger than the member's limit of {limit} bytes"
        )));
        if before.is_empty() {
            return trailers;
        }
        self.pending = Some(trailers);
        Frame::data(before)
    }

    /// Ends the call with `status`: the service's stream is dropped (reset),
    /// the entry records `status`, and the client gets it in trailers.
    fn cut_off(&mut self, status: &Status) -> Frame<Bytes> {
        self.cut_off = true;
        self.held = None;
        self.inner = tonic::body::Body::default();
        let code = status.code() as i32;
        self.status = Some(code);
        self.finish(code);
        let mut trailers = http::HeaderMap::new();
        if status.add_header(&mut trailers).is_err() {
            trailers.insert(GRPC_STATUS, HeaderValue::from(code));
        }
        Frame::trailers(trailers)
    }

    /// Counts and digests bytes as they go on to the client.
    fn forwarded(&mut self, data: &Bytes) {
        if let Some(meter) = &mut self.meter {
            meter.add(data);
        }
    }

    /// The bytes of a data frame of the service that go on now: those held
    /// from before and `data`, except the start of a message header that
    /// `data` ends in, which is held until the header is whole. Empty when
    /// all of it is held.
    fn pass_data(&mut self, data: Bytes) -> Bytes {
        let mut passing = joined(self.held.take(), data);
        let partial = self.frames.partial_header();
        if partial > 0 {
            self.held = Some(passing.split_off(passing.len() - partial));
        }
        self.forwarded(&passing);
        passing
    }

    /// Why the call must end now that the member lost its standing, if it
    /// did: found before, or by a check of the stream's standing.
    fn refusal(&self) -> Option<Status> {
        self.refusing.clone().or_else(|| self.watching.as_ref().and_then(|watching| watching.standing.check().err()))
    }

    /// Ends the call with `status` at the end of the message the client is
    /// in the middle of (at once between messages: the start of a header
    /// held back goes nowhere), so that no message is left half-sent. With
    /// `data`, a frame of the service's, the message's last bytes go on and
    /// the trailers after them; without, or when the message goes on past
    /// `data`, the end waits for them (`refusing`).
    fn end_for_standing(&mut self, status: Status, data: Option<&Bytes>) -> Option<Frame<Bytes>> {
        let rest = usize::try_from(self.frames.message_left).unwrap_or(usize::MAX);
        if rest == 0 {
            return Some(self.cut_off(&status));
        }
        match data {
            Some(data) if rest <= data.len() => {
                let last = data.slice(..rest);
                self.forwarded(&last);
                self.pending = Some(self.cut_off(&status));
                Some(Frame::data(last))
            }
            _ => {
                // The rest of the message gets a moment, not the call's
                // whole deadline: past it the call ends all the same.
                let grace = Instant::now() + REFUSAL_GRACE;
                self.deadline = Some(self.deadline.map_or(grace, |deadline| deadline.min(grace)));
                self.timer = None;
                self.refusing = Some(status);
                None
            }
        }
    }

    /// At the service's end (its trailers, or none): bytes still held (a
    /// message it left unfinished) go on first, `end` after them.
    fn end_after_held(&mut self, end: Option<Frame<Bytes>>) -> Option<Frame<Bytes>> {
        let Some(held) = self.held.take() else { return end };
        self.forwarded(&held);
        self.pending = end;
        Some(Frame::data(held))
    }
}

/// `first` followed by `then`, copied only when both have bytes.
fn joined(first: Option<Bytes>, then: Bytes) -> Bytes {
    match first {
        Some(first) if then.is_empty() => first,
        Some(first) => {
            let mut both = bytes::BytesMut::with_capacity(first.len() + then.len());
            both.extend_from_slice(&first);
            both.extend_from_slice(&then);
            both.freeze()
        }
        None => then,
    }
}

impl http_body::Body for WatchedResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Some(frame) = this.pending.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if this.cut_off {
            return Poll::Ready(None);
        }
        loop {
            if let Some(trailers) = this.expire_if_due(None) {
                return Poll::Ready(Some(Ok(trailers)));
            }
            return match Pin::new(&mut this.inner).poll_frame(context) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        if let Some(status) = this.refusal()
                            && let Some(frame) = this.end_for_standing(status, Some(&data))
                        {
                            return Poll::Ready(Some(Ok(frame)));
                        }
                        if let Err(oversized) = this.frames.feed(&data, this.limit) {
                            let held = this.held.take();
                            return Poll::Ready(Some(Ok(this.cut_off_at(held, &data, &oversized))));
                        }
                        let passing = this.pass_data(data);
                        if passing.is_empty() {
                            // All held: the rest of the header is to come.
                            continue;
                        }
                        Poll::Ready(Some(Ok(Frame::data(passing))))
                    }
                    Err(frame) => {
                        if let Some(status) = this.refusing.clone() {
                            // The service ended the message it was in.
                            return Poll::Ready(Some(Ok(this.cut_off(&status))));
                        }
                        if let Some(trailers) = frame.trailers_ref() {
                            this.status = grpc_status(trailers).or(this.status);
                        }
                        Poll::Ready(this.end_after_held(Some(frame)).map(Ok))
                    }
                },
                Poll::Ready(Some(Err(error))) => {
                    // The service's stream broke off after its headers (or
                    // was reset because the request body was cut off: a
                    // message passed the limit, or the member lost its
                    // standing): the client gets the reason in trailers, the
                    // status its entry records, rather than a reset stream.
                    let refused =
                        this.refusing.clone().or_else(|| this.exchange.as_ref().and_then(Exchange::request_refused));
                    let status = refused.unwrap_or_else(|| {
                        tracing::warn!(%error, "the service behind the gateway broke off a call");
                        Status::unavailable("the service behind the gateway broke off the call")
                    });
                    Poll::Ready(Some(Ok(this.cut_off(&status))))
                }
                Poll::Ready(None) => {
                    if let Some(status) = this.refusing.clone() {
                        // The service ended (without trailers) in the
                        // message under way.
                        return Poll::Ready(Some(Ok(this.cut_off(&status))));
                    }
                    let last = this.end_after_held(None);
                    this.finish(tonic::Code::Unknown as i32);
                    // Polled again, the body has ended.
                    this.inner = tonic::body::Body::default();
                    Poll::Ready(last.map(Ok))
                }
                Poll::Pending => {
                    if let Some(status) = this.watching.as_mut().and_then(|watching| watching.lost(context))
                        && let Some(frame) = this.end_for_standing(status, None)
                    {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    match this.expire_if_due(Some(context)) {
                        Some(trailers) => Poll::Ready(Some(Ok(trailers))),
                        None => Poll::Pending,
                    }
                }
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.pending.is_some() || self.held.is_some() || self.refusing.is_some() {
            // (Refusing, the trailers are still to come.)
            false
        } else {
            self.cut_off || self.inner.is_end_stream()
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for WatchedResponseBody {
    fn drop(&mut self) {
        // The client went away before the end: the call was cancelled,
        // unless a status was seen.
        self.finish(tonic::Code::Cancelled as i32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(length: u32) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend(std::iter::repeat_n(7u8, usize::try_from(length).expect("length")));
        bytes
    }

    #[test]
    fn each_message_is_held_to_the_limit_however_the_bytes_are_split() {
        let stream: Vec<u8> = [frame(10), frame(100), frame(0), frame(100)].concat();
        for split in [1, 2, 3, 5, 7, 64, stream.len()] {
            let mut reader = FrameReader::default();
            for chunk in stream.chunks(split) {
                reader.feed(chunk, 100).unwrap_or_else(|oversized| panic!("split {split}: {oversized:?} refused"));
            }
            let mut reader = FrameReader::default();
            let mut fed = 0;
            let refused = stream.chunks(split).try_for_each(|chunk| {
                let fed_before = fed;
                fed += chunk.len();
                reader.feed(chunk, 99).map_err(|oversized| (oversized.length, fed_before + oversized.starts_at))
            });
            // The second message's header starts after the first message
            // (5 + 10 bytes), or at the start of the chunk that holds the
            // header's last byte when the header was split.
            let header_end = 15 + 5;
            let chunk_start = (header_end - 1) / split * split;
            assert_eq!(refused, Err((100, chunk_start.max(15))), "split {split}");
        }
    }

    /// A service's response body: these frames, then its end.
    struct Frames(std::collections::VecDeque<Frame<Bytes>>);

    impl http_body::Body for Frames {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }

    fn trailers(code: i32) -> Frame<Bytes> {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from(code));
        Frame::trailers(trailers)
    }

    /// A service's body fed frame by frame while it is read.
    struct Fed(tokio::sync::mpsc::UnboundedReceiver<Frame<Bytes>>);

    impl http_body::Body for Fed {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            context: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            self.0.poll_recv(context).map(|frame| frame.map(Ok))
        }
    }

    const BANK_SERVICE: &str = "esocial.external.bank.v1.BankService";
    const VERIFY_ACCOUNTS: &str = "/esocial.external.bank.v1.BankService/VerifyAccounts";
    const MEMBER: &str = "UA/GOV/32855961/diia";

    /// A directory (never read from its database) holding the member with a
    /// right to the bank's methods, and the standing of its stream.
    fn standing_of_a_stream() -> (Arc<Directory>, Arc<Standing>) {
        standing_of_a_stream_with_a_token_until(u64::MAX)
    }

    /// The same, opened with a token accepted until `token_accepted_until`.
    fn standing_of_a_stream_with_a_token_until(token_accepted_until: u64) -> (Arc<Directory>, Arc<Standing>) {
        standing_of_a_stream_stopping_with(token_accepted_until, Shutdown::new())
    }

    /// The same, ended when `stopping` is triggered.
    fn standing_of_a_stream_stopping_with(
        token_accepted_until: u64,
        stopping: Shutdown,
    ) -> (Arc<Directory>, Arc<Standing>) {
        let pool = sqlx::postgres::PgPoolOptions::new().connect_lazy("postgres://127.0.0.1:1/none").expect("pool");
        let limits = crate::directory::DefaultLimits { requests_per_second: 10, burst: 10, message_bytes_max: 1024 };
        let directory = Arc::new(Directory::new(pool, limits, 1));
        directory.hold(vec![member(true, true)]);
        let member_id = MemberId::parse(MEMBER).expect("member id");
        let standing = Standing::new(
            directory.clone(),
            member_id,
            VERIFY_ACCOUNTS.to_owned(),
            None,
            token_accepted_until,
            stopping,
        );
        (directory, Arc::new(standing))
    }

    /// The member, active or suspended, with or without the bank's methods.
    fn member(active: bool, bank: bool) -> crate::directory::MemberEntry {
        let mut entry = crate::directory::tests::entry(MEMBER, "diia");
        if !active {
            entry.member.status = crate::domain::MemberStatus::Suspended;
        }
        if bank { crate::directory::tests::with_service(entry, BANK_SERVICE) } else { entry }
    }

    /// The exchange of a stream with `standing`, whose entry goes nowhere.
    fn unlogged_exchange(standing: Arc<Standing>) -> Exchange {
        Exchange {
            slot: None,
            started: Instant::now(),
            started_at: Utc::now(),
            deadline: None,
            request_id: String::new(),
            member_id: MEMBER.to_owned(),
            caller: String::new(),
            method: VERIFY_ACCOUNTS.to_owned(),
            direction: Direction::Outbound,
            log_bodies: false,
            request: None,
            in_flight: None,
            standing: Some(standing),
        }
    }

    /// A response body watched for the standing, fed through the sender.
    fn watched(standing: Arc<Standing>) -> (tokio::sync::mpsc::UnboundedSender<Frame<Bytes>>, WatchedResponseBody) {
        let (feed, fed) = tokio::sync::mpsc::unbounded_channel();
        let body = WatchedResponseBody {
            inner: tonic::body::Body::new(Fed(fed)),
            meter: Some(BodyMeter::new(None)),
            status: None,
            exchange: Some(unlogged_exchange(standing.clone())),
            frames: FrameReader::default(),
            limit: 1024,
            deadline: None,
            timer: None,
            cut_off: false,
            pending: None,
            held: None,
            watching: Some(Watching::new(standing)),
            refusing: None,
        };
        (feed, body)
    }

    /// The body polled once, as a task that is not woken would.
    fn polled_once(body: &mut WatchedResponseBody) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        http_body::Body::poll_frame(Pin::new(body), &mut Context::from_waker(std::task::Waker::noop()))
    }

    /// The body's next frame, waited for (woken) at most 5 s.
    async fn next_frame(body: &mut WatchedResponseBody) -> Option<Frame<Bytes>> {
        let next = std::future::poll_fn(|context| http_body::Body::poll_frame(Pin::new(&mut *body), context));
        tokio::time::timeout(Duration::from_secs(5), next).await.expect("woken").map(|frame| frame.expect("a frame"))
    }

    fn status_of(frame: &Frame<Bytes>) -> Option<i32> {
        grpc_status(frame.trailers_ref().expect("trailers"))
    }

    /// Feeds the rest of the message under way together with the next
    /// message (`rest`, `next`): the rest goes on, then trailers with
    /// `code`, and nothing of the next message.
    async fn the_rest_then_the_end(
        feed: &tokio::sync::mpsc::UnboundedSender<Frame<Bytes>>,
        body: &mut WatchedResponseBody,
        (rest, next): (&[u8], &[u8]),
        code: tonic::Code,
    ) {
        feed.send(Frame::data(Bytes::from([rest, next].concat()))).expect("fed");
        let passed = next_frame(body).await.expect("data").into_data().expect("data");
        assert_eq!(passed.as_ref(), rest);
        let end = next_frame(body).await.expect("trailers");
        assert_eq!(status_of(&end), Some(code as i32));
        assert!(next_frame(body).await.is_none(), "the call has ended");
    }

    #[tokio::test]
    async fn a_stream_s_answer_is_given_up_the_time_given_after_the_client_ended_its_stream_and_not_before() {
        let (_directory, standing) = standing_of_a_stream();
        let never = std::future::pending::<()>;
        let within = Some(Duration::from_millis(200));
        // The client still sends: not given up.
        let waited = tokio::time::timeout(Duration::from_millis(600), unless_refused(&standing, never(), within)).await;
        assert!(waited.is_err(), "given up while the client sends: {waited:?}");
        // The client has ended its stream (before the wait began, here).
        standing.finish_request();
        let started = Instant::now();
        let status = unless_refused(&standing, never(), within).await.expect_err("given up");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert!(status.message().contains("within 200 ms of the end of the request stream"), "{status:?}");
        assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
        // A service that streams its answers is given no such time.
        let waited = tokio::time::timeout(Duration::from_millis(600), unless_refused(&standing, never(), None)).await;
        assert!(waited.is_err(), "given up without a time given: {waited:?}");
        // An answer that comes is taken.
        assert!(unless_refused(&standing, std::future::ready(()), within).await.is_ok());
    }

    #[tokio::test]
    async fn a_member_suspended_mid_message_gets_the_rest_of_that_message_then_its_refusal_and_nothing_more() {
        let (directory, standing) = standing_of_a_stream();
        let (feed, mut body) = watched(standing);
        let (first, second) = (frame(6), frame(4));
        // The first message's header and half of it; the client has them.
        feed.send(Frame::data(Bytes::copy_from_slice(&first[..8]))).expect("fed");
        let data = next_frame(&mut body).await.expect("data").into_data().expect("data");
        assert_eq!(data.as_ref(), &first[..8]);
        assert!(polled_once(&mut body).is_pending(), "nothing more yet");

        // Suspended while the rest is on its way: the end waits for it.
        directory.hold(vec![member(false, true)]);
        assert!(polled_once(&mut body).is_pending(), "the message is not left half-sent");
        // The rest comes with the next message: the rest goes on, then the
        // refusal, and none of the next message.
        the_rest_then_the_end(&feed, &mut body, (&first[8..], &second), tonic::Code::Unauthenticated).await;
    }

    #[tokio::test]
    async fn a_response_message_that_comes_after_the_member_lost_its_right_is_not_passed_on() {
        let (directory, standing) = standing_of_a_stream();
        let (feed, mut body) = watched(standing);
        feed.send(Frame::data(Bytes::from(frame(3)))).expect("fed");
        assert!(next_frame(&mut body).await.expect("a frame").is_data(), "passed on while the member holds it");
        // The next message is there already when the body is polled: the
        // check at the message, not the wait for a change, refuses it.
        directory.hold(vec![member(true, false)]);
        feed.send(Frame::data(Bytes::from(frame(3)))).expect("fed");
        let end = next_frame(&mut body).await.expect("trailers");
        assert_eq!(status_of(&end), Some(tonic::Code::PermissionDenied as i32));
        assert!(next_frame(&mut body).await.is_none(), "the call has ended");
    }

    /// A stream whose member is suspended in the middle of a response
    /// message (its header and half of it passed); then `then` happens.
    async fn suspended_mid_message(
        then: impl FnOnce(tokio::sync::mpsc::UnboundedSender<Frame<Bytes>>),
    ) -> Vec<Frame<Bytes>> {
        let (directory, standing) = standing_of_a_stream();
        let (feed, mut body) = watched(standing);
        feed.send(Frame::data(Bytes::copy_from_slice(&frame(6)[..8]))).expect("fed");
        assert!(next_frame(&mut body).await.expect("data").is_data());
        directory.hold(vec![member(false, true)]);
        assert!(polled_once(&mut body).is_pending(), "the end waits for the rest of the message");
        then(feed);
        let mut frames = Vec::new();
        while let Some(frame) = next_frame(&mut body).await {
            frames.push(frame);
        }
        frames
    }

    #[tokio::test]
    async fn a_service_that_ends_in_the_message_under_way_still_gives_the_client_the_refusal() {
        let frames = suspended_mid_message(drop).await;
        assert_eq!(frames.len(), 1, "the trailers alone");
        assert_eq!(status_of(&frames[0]), Some(tonic::Code::Unauthenticated as i32));
    }

    #[tokio::test]
    async fn a_service_that_does_not_finish_the_message_under_way_is_cut_off_after_a_moment() {
        let started = Instant::now();
        // The service's body stays open and silent (the sender is kept).
        let kept = Arc::new(Mutex::new(None));
        let keeper = kept.clone();
        let frames = suspended_mid_message(move |feed| *keeper.lock().expect("keeper") = Some(feed)).await;
        assert_eq!(frames.len(), 1, "the trailers alone");
        assert_eq!(status_of(&frames[0]), Some(tonic::Code::Unauthenticated as i32), "the refusal, not the deadline");
        assert!(started.elapsed() >= REFUSAL_GRACE, "after the grace: {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_silent_stream_goes_on_through_changes_that_keep_its_member_and_ends_at_one_that_does_not() {
        let (directory, standing) = standing_of_a_stream();
        let (_feed, mut body) = watched(standing);
        assert!(polled_once(&mut body).is_pending());
        // Read again, unchanged (as every 30 s): the stream goes on.
        directory.hold(vec![member(true, true)]);
        assert!(polled_once(&mut body).is_pending(), "still admitted");
        // The right taken away: the stream, between messages, ends at once,
        // woken by the change.
        let waiting = tokio::spawn(async move { next_frame(&mut body).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        directory.hold(vec![member(true, false)]);
        let end = waiting.await.expect("task").expect("trailers");
        assert_eq!(status_of(&end), Some(tonic::Code::PermissionDenied as i32));
    }

    /// Two seconds or a little less from now, in the token's seconds.
    fn in_two_seconds() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs() + 2
    }

    #[tokio::test]
    async fn a_silent_stream_ends_when_its_token_expires() {
        let expires_at = in_two_seconds();
        let (_directory, standing) = standing_of_a_stream_with_a_token_until(expires_at);
        let (_feed, mut body) = watched(standing);
        assert!(polled_once(&mut body).is_pending(), "open while the token is good");
        let end = tokio::time::timeout(Duration::from_secs(5), next_frame(&mut body))
            .await
            .expect("ended within 5 s")
            .expect("trailers");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
        assert!(now >= Duration::from_secs(expires_at), "not before the token expired: {now:?} < {expires_at} s");
        assert_eq!(status_of(&end), Some(tonic::Code::Unauthenticated as i32));
    }

    #[tokio::test]
    async fn once_the_gateway_starts_to_stop_a_stream_ends_at_the_end_of_the_message_under_way() {
        let stopping = Shutdown::new();
        let (_directory, standing) = standing_of_a_stream_stopping_with(u64::MAX, stopping.clone());
        let (feed, mut body) = watched(standing);
        let (first, second) = (frame(6), frame(4));
        feed.send(Frame::data(Bytes::copy_from_slice(&first[..8]))).expect("fed");
        let data = next_frame(&mut body).await.expect("data").into_data().expect("data");
        assert_eq!(data.as_ref(), &first[..8]);
        // The gateway starts to stop while the message is on its way: the
        // rest of it goes on, then UNAVAILABLE, and none of the next one.
        stopping.trigger();
        assert!(polled_once(&mut body).is_pending(), "the message is not left half-sent");
        the_rest_then_the_end(&feed, &mut body, (&first[8..], &second), tonic::Code::Unavailable).await;
    }

    #[tokio::test]
    async fn a_silent_stream_ends_as_soon_as_the_gateway_starts_to_stop() {
        let stopping = Shutdown::new();
        let (_directory, standing) = standing_of_a_stream_stopping_with(u64::MAX, stopping.clone());
        let (_feed, mut body) = watched(standing.clone());
        assert!(polled_once(&mut body).is_pending(), "open while the gateway serves");
        let waiting = tokio::spawn(async move { next_frame(&mut body).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        stopping.trigger();
        let end = waiting.await.expect("task").expect("trailers");
        assert_eq!(status_of(&end), Some(tonic::Code::Unavailable as i32));
        let refusal = standing.check().expect_err("stopping");
        assert!(refusal.message().contains("stopping"), "{}", refusal.message());
    }

    #[tokio::test]
    async fn once_the_response_side_ended_the_call_the_request_side_ends_without_another_message() {
        let stopping = Shutdown::new();
        let (_directory, standing) = standing_of_a_stream_stopping_with(u64::MAX, stopping.clone());
        let (_to_response, mut response) = watched(standing.clone());
        let (_to_request, mut request, _meter) = metered(standing);
        let waiting = tokio::spawn(async move {
            std::future::poll_fn(|context| http_body::Body::poll_frame(Pin::new(&mut request), context)).await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the client's side stays open while the call goes on");
        stopping.trigger();
        let end = next_frame(&mut response).await.expect("trailers");
        assert_eq!(status_of(&end), Some(tonic::Code::Unavailable as i32));
        let ended = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("task")
            .expect("a frame")
            .expect_err("ended");
        assert_eq!(ended.code(), tonic::Code::Unavailable, "{ended:?}");
    }

    #[tokio::test]
    async fn a_request_message_after_the_token_expired_is_not_passed_on() {
        let expires_at = in_two_seconds();
        let (_directory, standing) = standing_of_a_stream_with_a_token_until(expires_at);
        let (feed, mut body, meter) = metered(standing);
        feed.send(Frame::data(Bytes::from(frame(3)))).expect("fed");
        let passed = std::future::poll_fn(|context| http_body::Body::poll_frame(Pin::new(&mut body), context)).await;
        assert!(passed.expect("a frame").is_ok(), "passed on while the token is good");
        tokio::time::sleep(crate::standing::until_expiry(expires_at)).await;
        feed.send(Frame::data(Bytes::from(frame(3)))).expect("fed");
        let refused = std::future::poll_fn(|context| http_body::Body::poll_frame(Pin::new(&mut body), context))
            .await
            .expect("a frame")
            .expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(refused.message().contains("expired"), "{}", refused.message());
        assert_eq!(meter.lock().expect("meter").body.bytes, 8, "only the first message was counted as passed");
    }

    /// A request body of a stream with `standing`, fed through the sender,
    /// and its meter.
    fn metered(
        standing: Arc<Standing>,
    ) -> (tokio::sync::mpsc::UnboundedSender<Frame<Bytes>>, MeteredRequestBody, Arc<Mutex<RequestMeter>>) {
        let (feed, fed) = tokio::sync::mpsc::unbounded_channel();
        let meter = Arc::new(Mutex::new(RequestMeter {
            body: BodyMeter::new(None),
            frames: FrameReader::default(),
            limit: 1024,
            exceeded: false,
            refused: None,
        }));
        let body = MeteredRequestBody {
            inner: tonic::body::Body::new(Fed(fed)),
            meter: meter.clone(),
            standing: Some(standing),
        };
        (feed, body, meter)
    }

    #[tokio::test]
    async fn a_request_message_after_the_member_lost_its_right_is_not_passed_on() {
        let (directory, standing) = standing_of_a_stream();
        let (feed, mut body, meter) = metered(standing);
        feed.send(Frame::data(Bytes::from(frame(3)))).expect("fed");
        let passed = std::future::poll_fn(|context| http_body::Body::poll_frame(Pin::new(&mut body), context)).await;
        assert!(passed.expect("a frame").is_ok(), "passed on while the member holds the right");
        directory.hold(vec![member(true, false)]);
        feed.send(Frame::data(Bytes::from(frame(3)))).expect("fed");
        let refused = std::future::poll_fn(|context| http_body::Body::poll_frame(Pin::new(&mut body), context))
            .await
            .expect("a frame")
            .expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(refused.message().contains(VERIFY_ACCOUNTS), "{}", refused.message());
        let meter = meter.lock().expect("meter");
        assert_eq!(meter.refused.as_ref().map(Status::code), Some(tonic::Code::PermissionDenied));
        assert_eq!(meter.body.bytes, 8, "only the first message was counted as passed");
    }

    #[tokio::test]
    async fn once_the_response_side_watches_a_refused_request_message_waits_for_it_to_end_the_call() {
        let (directory, standing) = standing_of_a_stream();
        // The service has answered: its body watches the standing.
        let (_service, _response) = watched(standing.clone());
        let (feed, mut body, meter) = metered(standing);
        directory.hold(vec![member(true, false)]);
        feed.send(Frame::data(Bytes::from(frame(3)))).expect("fed");
        let polled =
            http_body::Body::poll_frame(Pin::new(&mut body), &mut Context::from_waker(std::task::Waker::noop()));
        assert!(polled.is_pending(), "neither passed on nor a reset of the service's side: {polled:?}");
        let meter = meter.lock().expect("meter");
        assert_eq!(meter.refused.as_ref().map(Status::code), Some(tonic::Code::PermissionDenied));
        assert_eq!(meter.body.bytes, 0, "nothing passed");
    }

    /// What the client gets of a service's `chunks` (each a data frame),
    /// then trailers with `code` (or no trailers), with messages held to
    /// `limit`: the bytes of each data frame, and the status of the
    /// trailers. Read as hyper reads it: a data frame after which the body
    /// says it has ended is the last.
    async fn relayed(chunks: &[&[u8]], code: Option<i32>, limit: u64) -> (Vec<Vec<u8>>, Option<String>) {
        let mut frames: std::collections::VecDeque<Frame<Bytes>> =
            chunks.iter().map(|chunk| Frame::data(Bytes::copy_from_slice(chunk))).collect();
        frames.extend(code.map(trailers));
        let mut body = WatchedResponseBody {
            inner: tonic::body::Body::new(Frames(frames)),
            meter: Some(BodyMeter::new(None)),
            status: None,
            exchange: None,
            frames: FrameReader::default(),
            limit,
            deadline: None,
            timer: None,
            cut_off: false,
            pending: None,
            held: None,
            watching: None,
            refusing: None,
        };
        let (mut data, mut status) = (Vec::new(), None);
        while let Some(frame) =
            std::future::poll_fn(|context| http_body::Body::poll_frame(Pin::new(&mut body), context)).await
        {
            let frame = frame.expect("a frame");
            assert!(status.is_none(), "nothing follows the trailers");
            match frame.into_data() {
                Ok(bytes) => {
                    data.push(bytes.to_vec());
                    if http_body::Body::is_end_stream(&body) {
                        break;
                    }
                }
                Err(frame) => {
                    let trailers = frame.into_trailers().expect("trailers");
                    status = trailers.get("grpc-status").map(|value| value.to_str().expect("ascii").to_owned());
                }
            }
        }
        assert!(http_body::Body::is_end_stream(&body));
        let forwarded: u64 = data.iter().map(|bytes| u64::try_from(bytes.len()).expect("length")).sum();
        assert_eq!(
            body.meter.as_ref().map_or(forwarded, |meter| meter.bytes),
            forwarded,
            "the log counts what went on"
        );
        (data, status)
    }

    #[tokio::test]
    async fn a_message_cut_off_for_its_size_leaves_none_of_its_header_with_the_client() {
        let (small, large) = (frame(10), frame(100));
        let stream = [small.clone(), large.clone(), frame(3)].concat();
        // Every split of the large message's header between two frames of
        // the service, and the header whole in one frame.
        for split in small.len()..=small.len() + 5 {
            let (first, second) = stream.split_at(split);
            let (data, status) = relayed(&[first, second], Some(0), 50).await;
            assert_eq!(data.concat(), small, "split at {split}: the small message and nothing of the large one");
            assert_eq!(status.as_deref(), Some("8"), "split at {split}");
            assert!(data.iter().all(|bytes| !bytes.is_empty()), "split at {split}: no empty frames");
            // Within the limit, everything goes on as it came.
            let (data, status) = relayed(&[first, second], Some(0), 100).await;
            assert_eq!(data.concat(), stream, "split at {split}");
            assert_eq!(status.as_deref(), Some("0"), "split at {split}");
        }
        // A byte a frame: the header is held over four frames.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        let (data, status) = relayed(&bytes, Some(0), 100).await;
        assert_eq!(data.concat(), stream);
        assert_eq!(status.as_deref(), Some("0"));
        let (data, status) = relayed(&bytes, Some(0), 50).await;
        assert_eq!(data.concat(), small);
        assert_eq!(status.as_deref(), Some("8"));
        // Bytes held from the small message's header, the large one's
        // header later in the next frame: the small message goes on whole.
        let (data, status) = relayed(&[&stream[..2], &stream[2..]], Some(0), 50).await;
        assert_eq!(data.concat(), small);
        assert_eq!(status.as_deref(), Some("8"));
    }

    #[tokio::test]
    async fn a_header_a_service_leaves_unfinished_still_reaches_the_client_before_its_status() {
        let small = frame(10);
        let stream = [small.as_slice(), &[0, 0, 0]].concat();
        // The three bytes are held for the rest of their header, which
        // never comes: they go on before the trailers all the same.
        let (data, status) = relayed(&[&stream], Some(13), 100).await;
        assert_eq!(data.concat(), stream);
        assert_eq!(status.as_deref(), Some("13"));
        // A service that ends without trailers: the held bytes go on, and
        // the body ends after them.
        let (data, status) = relayed(&[&stream], None, 100).await;
        assert_eq!(data.concat(), stream);
        assert_eq!(status, None);
    }

    #[test]
    fn internal_metadata_from_the_caller_is_replaced_and_the_member_token_never_goes_on() {
        let member = crate::directory::tests::entry("UA/GOV/32855961/diia", "diia");
        let door_node = HeaderValue::from_static("gateway-7");
        let mut headers = http::HeaderMap::new();
        headers.insert("x-esocial-member", HeaderValue::from_static("UA/GOV/00032129/forged"));
        headers.insert("X-Esocial-Anything", HeaderValue::from_static("smuggled"));
        headers.insert("x-esocial-token", HeaderValue::from_static("forged"));
        headers.insert("authorization", HeaderValue::from_static("Bearer abc"));
        headers.insert("grpc-timeout", HeaderValue::from_static("5S"));
        headers
            .insert("traceparent", HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        let mut inbound = headers.clone();
        let exchanged = HeaderValue::from_static("exchanged");
        prepare_headers(&door_node, &member, Some(exchanged), "req-1", &mut inbound);
        assert_eq!(inbound.get(MEMBER_HEADER).expect("member"), "UA/GOV/32855961/diia");
        assert_eq!(inbound.get(GATEWAY_NODE_HEADER).expect("node"), "gateway-7");
        assert_eq!(inbound.get("x-request-id").expect("request id"), "req-1");
        assert!(inbound.get("x-esocial-anything").is_none());
        assert_eq!(inbound.get("x-esocial-token").expect("token"), "exchanged", "the exchanged token");
        assert!(inbound.get("authorization").is_none(), "the member's token stays at the gateway");
        assert_eq!(
            esocial_auth::call_token(&inbound),
            Ok(Some("exchanged")),
            "the service finds the exchanged token, and only it"
        );
        assert!(inbound.get("x-request-id").expect("request id").is_sensitive(), "never indexed");
        assert_eq!(inbound.get("grpc-timeout").expect("deadline"), "5S");
        let traceparent = inbound.get("traceparent").map(|value| value.to_str().expect("ascii").to_owned());
        assert_ne!(
            traceparent.as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            "the caller's span is not passed on as the gateway's"
        );
        let mut outbound = headers;
        prepare_headers(&door_node, &member, None, "req-2", &mut outbound);
        assert!(outbound.get("authorization").is_none(), "esocial's tokens stay inside");
        assert!(outbound.get("x-esocial-token").is_none(), "esocial's tokens stay inside");

        // Without trace context from the caller, and with nothing exported
        // (as in these tests), none goes on: the service starts the trace.
        assert!(!esocial_kit::telemetry::exporting());
        let mut untraced = http::HeaderMap::new();
        untraced.insert("tracestate", HeaderValue::from_static("vendor=orphan"));
        prepare_headers(&door_node, &member, None, "req-3", &mut untraced);
        assert!(untraced.get("traceparent").is_none());
        assert!(untraced.get("tracestate").is_none(), "no trace state without a trace");
        assert_eq!(untraced.get("x-request-id").expect("request id"), "req-3");
    }

    #[tokio::test]
    async fn request_trailers_lose_the_internal_metadata_and_the_token() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-esocial-member", HeaderValue::from_static("UA/GOV/00032129/forged"));
        trailers.insert("x-esocial-other-bin", HeaderValue::from_static("AAAA"));
        trailers.insert("authorization", HeaderValue::from_static("Bearer member-token"));
        trailers.insert("x-custom", HeaderValue::from_static("kept"));
        let frames = Frames([Frame::data(Bytes::from_static(&[0, 0, 0, 0, 1, 7])), Frame::trailers(trailers)].into());
        let meter = Arc::new(Mutex::new(RequestMeter {
            body: BodyMeter::new(None),
            frames: FrameReader::default(),
            limit: 100,
            exceeded: false,
            refused: None,
        }));
        let mut body = MeteredRequestBody { inner: tonic::body::Body::new(frames), meter, standing: None };
        let mut passed = Vec::new();
        while let Some(frame) =
            std::future::poll_fn(|context| http_body::Body::poll_frame(Pin::new(&mut body), context)).await
        {
            passed.push(frame.expect("a frame"));
        }
        let trailers = passed.pop().and_then(|frame| frame.into_trailers().ok()).expect("trailers");
        let names: Vec<&str> = trailers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-custom"]);
        assert_eq!(passed.pop().and_then(|frame| frame.into_data().ok()).expect("data").len(), 6);
    }

    #[test]
    fn a_body_keeps_its_bytes_only_while_the_budget_has_room_and_gives_them_back_when_it_stops() {
        let budget = BodyBudget::new(10);
        let mut first = BodyMeter::new(Some(&budget));
        first.add(&Bytes::from_static(&[1; 6]));
        let mut second = BodyMeter::new(Some(&budget));
        second.add(&Bytes::from_static(&[2; 3]));
        second.add(&Bytes::from_static(&[2; 3]));
        assert_eq!(budget.used(), 6, "the second body no longer fits");
        let (bytes, digest, kept, _) = second.finish();
        assert_eq!((bytes, kept), (6, None), "size and digest only");
        assert_eq!(digest, Sha256::digest([2; 6]).to_vec());
        let (_, _, kept, reservation) = first.finish();
        assert_eq!(kept, Some(vec![1; 6]));
        drop(reservation);
        assert_eq!(budget.used(), 0);

        // A body over the capture limit gives back what it held.
        let unbounded = BodyBudget::new(usize::MAX);
        let mut long = BodyMeter::new(Some(&unbounded));
        long.add(&Bytes::from(vec![3; BODY_CAPTURE_BYTES_MAX]));
        assert_eq!(unbounded.used(), BODY_CAPTURE_BYTES_MAX);
        long.add(&Bytes::from_static(&[3]));
        assert_eq!(unbounded.used(), 0);
        assert!(long.captured.is_none());
    }

    #[test]
    fn the_time_left_goes_on_in_milliseconds() {
        let mut headers = http::HeaderMap::new();
        set_grpc_timeout(&mut headers, Duration::from_millis(1500));
        assert_eq!(headers.get("grpc-timeout").expect("timeout"), "1500m");
        set_grpc_timeout(&mut headers, Duration::from_secs(10 * 86_400));
        assert_eq!(headers.get("grpc-timeout").expect("timeout"), "99999999m");
        set_grpc_timeout(&mut headers, Duration::from_micros(300));
        assert_eq!(headers.get("grpc-timeout").expect("timeout"), "1m", "never zero");
        set_grpc_timeout(&mut headers, Duration::from_millis(10));
        assert_eq!(headers.get("grpc-timeout").expect("timeout"), "10m");
        assert_eq!(headers.get_all("grpc-timeout").iter().count(), 1, "replaced, not added");
        assert!(headers.get("grpc-timeout").expect("timeout").is_sensitive(), "never indexed");
    }
}
