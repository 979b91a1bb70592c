//! The gRPC server every service runs: its routes plus health and
//! reflection, behind the request-context and auth layers, on a listener the
//! caller bound, until a shutdown signal.
//!
//! * Health (`grpc.health.v1`) answers SERVING only while the database and
//!   NATS answer; it turns NOT_SERVING as soon as shutdown starts, so load
//!   balancers stop sending new calls while in-flight ones drain.
//! * Reflection (v1) describes the packages this server serves.
//! * Each call gets a request id (`x-request-id`, taken from the client when
//!   well-formed, else a new UUIDv7, returned in the response headers), a span
//!   continuing the caller's W3C trace context, a duration metric, and a
//!   deadline: the configured timeout (or the client's `grpc-timeout` when
//!   shorter); methods declared long-running (bulk imports) get
//!   [`LONG_CALL_TIMEOUT`] instead.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use esocial_auth::AuthLayer;
use http::{HeaderValue, Request, Response};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::Instrument as _;

use crate::config::GrpcSettings;
use crate::telemetry::{HeaderExtractor, set_parent_from};

/// How often health follows the database and NATS.
pub const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);
const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The deadline of methods declared long-running.
pub const LONG_CALL_TIMEOUT: Duration = Duration::from_secs(3600);

/// The request id of a call, in the request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// When the server gives up on a call (the configured timeout or the
/// client's shorter `grpc-timeout`), in the request extensions: a call
/// forwarded elsewhere passes the time that is left on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

/// A gRPC server's requests and responses, as tonic's transport carries them.
pub type GrpcRequest = Request<tonic::body::Body>;
pub type GrpcResponse = Response<tonic::body::Body>;
/// A boxed service over them (errors are gRPC statuses inside responses).
pub type BoxGrpcService = tower::util::BoxCloneSyncService<GrpcRequest, GrpcResponse, std::convert::Infallible>;
/// Wraps the authenticated routes with something that sees every call first
/// (after the request context): the gateway puts its forwarder and message
/// log there, and hands the calls of its own methods to the routes.
pub type Front = std::sync::Arc<dyn Fn(BoxGrpcService) -> BoxGrpcService + Send + Sync>;

/// A service's gRPC server, configured and ready to serve.
pub struct GrpcServer {
    settings: GrpcSettings,
    auth: AuthLayer,
    service_names: Vec<&'static str>,
    database: Option<sqlx::PgPool>,
    nats: Option<async_nats::Client>,
    checks: Vec<HealthCheck>,
    long_running: Vec<&'static str>,
    long_running_when: Option<LongRunning>,
    front: Option<Front>,
    tls: Option<tonic::transport::ServerTlsConfig>,
    serving_threads: usize,
}

impl std::fmt::Debug for GrpcServer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GrpcServer")
            .field("settings", &self.settings)
            .field("service_names", &self.service_names)
            .field("long_running", &self.long_running)
            .field("front", &self.front.is_some())
            .finish_non_exhaustive()
    }
}

impl GrpcServer {
    /// `service_names` are the full gRPC service names served (for example
    /// `esocial.classifier.v1.ClassifierService`), used by health and
    /// reflection.
    pub fn new(settings: &GrpcSettings, auth: AuthLayer, service_names: &[&'static str]) -> Self {
        Self {
            settings: settings.clone(),
            auth,
            service_names: service_names.to_vec(),
            database: None,
            nats: None,
            checks: Vec::new(),
            long_running: Vec::new(),
            long_running_when: None,
            front: None,
            tls: None,
            serving_threads: 0,
        }
    }

    /// Serves connections on `threads` threads of their own, each running a
    /// single-threaded runtime, instead of on the caller's runtime: the
    /// listener hands each new connection to the next thread in turn, and
    /// everything a call does on that thread (its connection, its tasks, the
    /// connections it opens onward when those are kept per runtime) stays
    /// there, with no hand-over between threads. A proxy that only passes
    /// calls on spends much of its time in such hand-overs; 0 (the default)
    /// serves on the caller's runtime.
    #[must_use]
    pub fn serving_threads(mut self, threads: usize) -> Self {
        self.serving_threads = threads;
        self
    }

    /// Serves over TLS (with client certificates when `tls` asks for them;
    /// the peer's chain is then in each request's extensions as
    /// `tonic::transport::server::TlsConnectInfo`).
    #[must_use]
    pub fn tls(mut self, tls: tonic::transport::ServerTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Every call goes through `front` before the auth layer and the routes;
    /// `front` decides which calls reach them (see [`Front`]).
    #[must_use]
    pub fn front(mut self, front: Front) -> Self {
        self.front = Some(front);
        self
    }

    /// Health follows this pool.
    #[must_use]
    pub fn watch_database(mut self, pool: sqlx::PgPool) -> Self {
        self.database = Some(pool);
        self
    }

    /// Health follows this NATS connection.
    #[must_use]
    pub fn watch_nats(mut self, client: async_nats::Client) -> Self {
        self.nats = Some(client);
        self
    }

    /// Health also follows `ready`, named `what` in the log: the server is
    /// not serving while it answers false.
    #[must_use]
    pub fn watch(mut self, what: &'static str, ready: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.checks.push(HealthCheck { what, ready: Arc::new(ready) });
        self
    }

    /// These methods (full paths) may run up to [`LONG_CALL_TIMEOUT`]
    /// instead of the configured timeout: streamed bulk imports.
    #[must_use]
    pub fn long_running(mut self, method_paths: &[&'static str]) -> Self {
        self.long_running.extend_from_slice(method_paths);
        self
    }

    /// Methods (full paths) for which `long` answers true may also run up
    /// to [`LONG_CALL_TIMEOUT`]: for a server that learns its methods while
    /// it runs (the gateway's front then holds each call to its own
    /// deadline).
    #[must_use]
    pub fn long_running_when(mut self, long: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        self.long_running_when = Some(LongRunning(Arc::new(long)));
        self
    }

    /// Serves `routes` on `listener` until `shutdown` completes, then lets
    /// in-flight calls finish for the configured grace period.
    pub async fn serve(
        self,
        routes: Routes,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (reporter, health_service) = tonic_health::server::health_reporter();
        let descriptors = self.reflected_descriptors();
        let reflection = || reflection_builder(descriptors.clone());
        let routes = routes
            .add_service(health_service)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?);

        let mut names: Vec<String> = self.service_names.iter().map(|name| (*name).to_owned()).collect();
        names.push(String::new());
        // Known but not serving until the first probe says otherwise.
        for name in &names {
            reporter.set_service_status(name, ServingStatus::NotServing).await;
        }
        let (stop_health, health_stopped) = tokio::sync::watch::channel(false);
        let health_task = tokio::spawn(follow_health(
            reporter.clone(),
            names.clone(),
            self.database.clone(),
            self.nats.clone(),
            self.checks.clone(),
            health_stopped,
        ));

        let (shutdown_started, shutdown_seen) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = stop_health.send(true);
            for name in &names {
                reporter.set_service_status(name, ServingStatus::NotServing).await;
            }
            tracing::info!("shutting down: no new calls, draining in-flight ones");
            let _ = shutdown_started.send(());
        };

        let context =
            RequestContextLayer { timeout: self.settings.request_timeout, long_running: self.long_running_calls() };
        let front = self.front.clone();
        let front = tower::layer::layer_fn(move |authenticated: esocial_auth::AuthService<Routes>| {
            let boxed = BoxGrpcService::new(authenticated);
            match &front {
                Some(front) => front(boxed),
                None => boxed,
            }
        });
        let layers = tower::ServiceBuilder::new().layer(context).layer(front).layer(self.auth.clone()).into_inner();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = self.tls.clone() {
            builder = builder.tls_config(tls)?;
        }
        let router = builder
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .max_concurrent_streams(Some(1024))
            .layer(layers)
            .add_routes(routes);
        let grace = self.settings.shutdown_grace;
        let result = if self.serving_threads > 0 {
            let name = self.service_names.first().and_then(|name| name.rsplit('.').nth(2)).unwrap_or("grpc");
            match ServingThreads::start(self.serving_threads, name, move |incoming| {
                router.clone().serve_with_incoming_shutdown(incoming, std::future::pending())
            }) {
                Ok(threads) => threads.serve(listener, signal, grace).await,
                Err(error) => Err(anyhow::Error::from(error).context("starting the serving threads")),
            }
        } else {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            let server = router.serve_with_incoming_shutdown(incoming, signal);
            tokio::select! {
                result = server => result.map_err(anyhow::Error::from),
                () = async {
                    if shutdown_seen.await.is_ok() {
                        tokio::time::sleep(grace).await;
                    } else {
                        std::future::pending::<()>().await;
                    }
                } => {
                    tracing::warn!(grace_ms = grace.as_millis(), "grace period over: closing calls still running");
                    Ok(())
                }
            }
        };
        health_task.abort();
        result
    }

    /// The descriptor files of the served packages and everything they import.
    fn reflected_descriptors(&self) -> prost_types::FileDescriptorSet {
        descriptors_of(self.service_names.iter().filter_map(|name| name.rsplit_once('.').map(|(package, _)| package)))
    }

    /// Whether a method gets [`LONG_CALL_TIMEOUT`]: listed, or picked by
    /// the predicate.
    fn long_running_calls(&self) -> LongRunning {
        let listed = self.long_running.clone();
        let picked = self.long_running_when.clone();
        LongRunning(Arc::new(move |path| {
            listed.contains(&path) || picked.as_ref().is_some_and(|picked| (picked.0)(path))
        }))
    }
}

/// New connections, as a serving thread receives them.
type Connections = tokio_stream::adapters::Map<
    tokio_stream::wrappers::UnboundedReceiverStream<std::net::TcpStream>,
    fn(std::net::TcpStream) -> std::io::Result<tokio::net::TcpStream>,
>;

/// Threads that serve connections, each on a single-threaded runtime of
/// its own (see [`GrpcServer::serving_threads`]).
struct ServingThreads {
    /// Where each thread takes its new connections from.
    lanes: Vec<tokio::sync::mpsc::UnboundedSender<std::net::TcpStream>>,
    /// Each thread's result when it stops.
    finishes: tokio::sync::mpsc::UnboundedReceiver<anyhow::Result<()>>,
    /// Set when the grace period is over: the threads drop their calls.
    abort: tokio::sync::watch::Sender<bool>,
}

impl ServingThreads {
    /// Starts `count` threads named `<name>-serve-<n>`, each serving the
    /// connections it is handed with `serve`. When its lane closes, tonic
    /// stops taking connections and lets the open ones finish their calls
    /// (GOAWAY); an abort ends the thread's runtime, and every call on it.
    fn start<Serve, Served>(count: usize, name: &str, serve: Serve) -> std::io::Result<Self>
    where
        Serve: Fn(Connections) -> Served + Clone + Send + 'static,
        Served: Future<Output = Result<(), tonic::transport::Error>>,
    {
        let mut lanes = Vec::with_capacity(count);
        let (abort, aborted) = tokio::sync::watch::channel(false);
        let (finished, finishes) = tokio::sync::mpsc::unbounded_channel();
        for index in 0..count {
            let (lane, connections) = tokio::sync::mpsc::unbounded_channel::<std::net::TcpStream>();
            lanes.push(lane);
            let serve = serve.clone();
            let mut aborted = aborted.clone();
            let finished = finished.clone();
            std::thread::Builder::new().name(format!("{name}-serve-{index}")).spawn(move || {
                let result = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime.block_on(async move {
                        use tokio_stream::StreamExt as _;
                        // Connections are accepted on the listener's thread
                        // and registered with this thread's runtime here.
                        let register: fn(std::net::TcpStream) -> std::io::Result<tokio::net::TcpStream> =
                            tokio::net::TcpStream::from_std;
                        let incoming = tokio_stream::wrappers::UnboundedReceiverStream::new(connections).map(register);
                        tokio::select! {
                            served = serve(incoming) => served.map_err(anyhow::Error::from),
                            _ = aborted.wait_for(|aborted| *aborted) => Ok(()),
                        }
                    }),
                    Err(error) => Err(anyhow::Error::from(error).context("a serving thread's runtime")),
                };
                let _ = finished.send(result);
            })?;
        }
        Ok(Self { lanes, finishes, abort })
    }

    /// Hands the connections `listener` accepts to the threads in turn
    /// until `signal` completes, then waits for the threads to finish their
    /// calls, for `grace` at most. A thread that stops before `signal`
    /// stops them all, with its error.
    async fn serve(
        mut self,
        listener: TcpListener,
        signal: impl Future<Output = ()>,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let mut signal = std::pin::pin!(signal);
        let mut next = 0_usize;
        let mut failure = None;
        loop {
            tokio::select! {
                () = &mut signal => break,
                ended = self.finishes.recv() => {
                    failure = Some(match ended {
                        Some(Err(error)) => error,
                        Some(Ok(())) | None => anyhow::anyhow!("a serving thread stopped"),
                    });
                    break;
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => match stream.set_nodelay(true).and_then(|()| stream.into_std()) {
                        Ok(stream) => {
                            // A lane whose thread has stopped drops the
                            // connection; the loop ends at the stop's report.
                            let _ = self.lanes[next % self.lanes.len()].send(stream);
                            next = next.wrapping_add(1);
                        }
                        // The peer has gone already: nothing to serve.
                        Err(error) => tracing::debug!(%error, %peer, "a new connection could not be set up"),
                    },
                    Err(error) => {
                        // Out of descriptors and the like: the listener
                        // stays; try again shortly.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        self.lanes.clear();
        // Each thread holds a sender of `finishes` until it ends: the
        // channel closes when the last one has.
        let drained = tokio::time::timeout(grace, async { while self.finishes.recv().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(grace_ms = grace.as_millis(), "grace period over: closing calls still running");
            let _ = self.abort.send(true);
            while self.finishes.recv().await.is_some() {}
        }
        failure.map_or(Ok(()), Err)
    }
}

/// A condition of health besides the database and NATS.
#[derive(Clone)]
struct HealthCheck {
    what: &'static str,
    ready: Arc<dyn Fn() -> bool + Send + Sync>,
}

async fn follow_health(
    reporter: HealthReporter,
    names: Vec<String>,
    database: Option<sqlx::PgPool>,
    nats: Option<async_nats::Client>,
    checks: Vec<HealthCheck>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut last: Option<bool> = None;
    loop {
        if *stopped.borrow() {
            return;
        }
        let database_ok = match &database {
            Some(pool) => matches!(
                tokio::time::timeout(HEALTH_PROBE_TIMEOUT, sqlx::query("SELECT 1").execute(pool)).await,
                Ok(Ok(_))
            ),
            None => true,
        };
        let nats_ok =
            nats.as_ref().is_none_or(|client| client.connection_state() == async_nats::connection::State::Connected);
        let not_ready: Vec<&str> = checks.iter().filter(|check| !(check.ready)()).map(|check| check.what).collect();
        let healthy = database_ok && nats_ok && not_ready.is_empty();
        if last != Some(healthy) {
            let not_ready = not_ready.join(", ");
            match (healthy, last) {
                (true, _) => tracing::info!("healthy: serving"),
                // Connections are still being made at start.
                (false, None) => {
                    tracing::info!(database_ok, nats_ok, not_ready, "not serving yet: waiting for dependencies");
                }
                (false, Some(_)) => tracing::warn!(database_ok, nats_ok, not_ready, "unhealthy: not serving"),
            }
            let status = if healthy { ServingStatus::Serving } else { ServingStatus::NotServing };
            // Shutdown may have begun while probing; it owns the status then.
            if *stopped.borrow() {
                return;
            }
            for name in &names {
                reporter.set_service_status(name, status).await;
            }
            last = Some(healthy);
        }
        tokio::select! {
            () = tokio::time::sleep(HEALTH_CHECK_INTERVAL) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// The descriptor files of `packages`, compiled into esocial, and
/// everything they import.
pub fn descriptors_of<'a>(packages: impl IntoIterator<Item = &'a str>) -> prost_types::FileDescriptorSet {
    let all = esocial_proto::file_descriptor_set();
    let packages: BTreeSet<&str> = packages.into_iter().collect();
    let mut wanted: BTreeSet<String> =
        all.file.iter().filter(|file| packages.contains(file.package())).map(|file| file.name().to_owned()).collect();
    // Close over imports.
    loop {
        let imports: Vec<String> = all
            .file
            .iter()
            .filter(|file| wanted.contains(file.name()))
            .flat_map(|file| file.dependency.iter().cloned())
            .collect();
        let before = wanted.len();
        wanted.extend(imports);
        if wanted.len() == before {
            break;
        }
    }
    prost_types::FileDescriptorSet { file: all.file.into_iter().filter(|file| wanted.contains(file.name())).collect() }
}

/// Server reflection (v1 and v1alpha, in that order) of `descriptors` and
/// of gRPC health, for a server that describes what it learns while it
/// runs (the gateway) instead of what the server was built with.
pub fn reflection_services(
    descriptors: prost_types::FileDescriptorSet,
) -> Result<(BoxGrpcService, BoxGrpcService), tonic_reflection::server::Error> {
    let v1 = reflection_builder(descriptors.clone()).build_v1()?;
    let v1alpha = reflection_builder(descriptors).build_v1alpha()?;
    Ok((BoxGrpcService::new(v1), BoxGrpcService::new(v1alpha)))
}

fn reflection_builder(descriptors: prost_types::FileDescriptorSet) -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_file_descriptor_set(descriptors)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Adds the request id, the span with the caller's trace context, the
/// duration metric and the deadline to every call.
#[derive(Debug, Clone)]
pub struct RequestContextLayer {
    timeout: Duration,
    long_running: LongRunning,
}

impl RequestContextLayer {
    /// The layer a server with this call timeout and no long-running
    /// methods puts in front of its routes (the benchmarks measure it).
    #[must_use]
    pub fn new(timeout: Duration) -> Self {
        Self { timeout, long_running: LongRunning(Arc::new(|_| false)) }
    }
}

/// Tells, by method path, whether a call may run up to [`LONG_CALL_TIMEOUT`].
#[derive(Clone)]
struct LongRunning(Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl std::fmt::Debug for LongRunning {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("LongRunning(..)")
    }
}

impl<S> tower_layer::Layer<S> for RequestContextLayer {
    type Service = RequestContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestContextService { inner, timeout: self.timeout, long_running: self.long_running.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct RequestContextService<S> {
    inner: S,
    timeout: Duration,
    long_running: LongRunning,
}

/// A `grpc-timeout` header value: digits and a unit (H, M, S, m, u, n).
fn client_deadline(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(GRPC_TIMEOUT)?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The header that carries a call's request id, in and out (and on, at
/// the gateway). A `HeaderName` made once: a name given as a `&str` is
/// copied at each insert.
pub const REQUEST_ID_HEADER: http::HeaderName = http::HeaderName::from_static("x-request-id");
/// gRPC's deadline and status headers, read (and, at the gateway, written)
/// on every call: names made once, not parsed from a `&str` each time.
pub const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");
pub const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// A request id as the value of [`REQUEST_ID_HEADER`], marked never to be
/// indexed: an id is new on every call, so in an HTTP/2 connection's header
/// table (HPACK) it would only push out the entries that every call reuses
/// (a forwarded token among them, at the gateway). None for an id that is
/// not a header value.
#[must_use]
pub fn request_id_value(request_id: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(request_id).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// An id for a call that came without one: a version 7 UUID (the time
/// first, so ids sort roughly by arrival).
fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A client's request id is kept when it is short printable ASCII.
fn client_request_id(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let acceptable = !value.is_empty()
        && value.len() <= 128
        && value.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-_.:".contains(&byte));
    acceptable.then(|| value.to_owned())
}

fn duration_histogram() -> &'static Histogram<f64> {
    static HISTOGRAM: OnceLock<Histogram<f64>> = OnceLock::new();
    HISTOGRAM.get_or_init(|| {
        opentelemetry::global::meter("esocial")
            .f64_histogram("rpc.server.duration")
            .with_unit("ms")
            .with_description("duration of gRPC calls handled by this server")
            .build()
    })
}

impl<S, B, ResBody> tower_service::Service<Request<B>> for RequestContextService<S>
where
    S: tower_service::Service<Request<B>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let request_id = client_request_id(request.headers()).unwrap_or_else(new_request_id);
        // Shared with the duration's attributes without another copy.
        let method: Arc<str> = Arc::from(request.uri().path());
        let span = if crate::telemetry::exporting() {
            tracing::info_span!(
                "grpc",
                otel.name = %method,
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.method = %method,
                request_id = %request_id,
                rpc.grpc.status_code = tracing::field::Empty,
            )
        } else {
            // What the logs of the call need. The other fields describe the
            // exported span; every field costs each call its formatting into
            // the log's span record (and a recorded one its formatting again).
            tracing::info_span!("grpc", rpc.method = %method, request_id = %request_id)
        };
        set_parent_from(&span, &HeaderExtractor(request.headers()));
        request.extensions_mut().insert(RequestId(request_id.clone()));
        let allowed = if (self.long_running.0)(&method) { LONG_CALL_TIMEOUT } else { self.timeout };
        let deadline = client_deadline(request.headers()).map_or(allowed, |client| client.min(allowed));
        let started = Instant::now();
        let deadline_at = started + deadline;
        request.extensions_mut().insert(Deadline(deadline_at));
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                // From the call's arrival (the `Deadline` the call carries),
                // not from this block's first poll, which a busy thread may
                // reach later than tonic's own `grpc-timeout` timer starts
                // (that one answers CANCELLED, "Timeout expired").
                let mut response = match tokio::time::timeout_at(deadline_at.into(), future).await {
                    Ok(response) => response?,
                    Err(_) => tonic::Status::deadline_exceeded(format!(
                        "the call did not finish within {} ms",
                        deadline.as_millis()
                    ))
                    .into_http(),
                };
                if let Some(value) = request_id_value(&request_id) {
                    response.headers_mut().insert(REQUEST_ID_HEADER, value);
                }
                // Errors come as trailers-only responses with the status in the
                // headers; a success puts it in trailers, after the body.
                let status = response
                    .headers()
                    .get(GRPC_STATUS)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<i32>().ok())
                    .unwrap_or(0);
                let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
                // Only an exported span has the field.
                tracing::Span::current().record("rpc.grpc.status_code", status);
                duration_histogram().record(
                    elapsed_ms,
                    &[
                        KeyValue::new("rpc.method", Arc::clone(&method)),
                        KeyValue::new("rpc.grpc.status_code", i64::from(status)),
                    ],
                );
                match tonic::Code::from_i32(status) {
                    tonic::Code::Ok => tracing::debug!(%method, elapsed_ms, "call finished"),
                    tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::Unavailable | tonic::Code::DataLoss => {
                        tracing::warn!(%method, elapsed_ms, status, "call failed");
                    }
                    _ => tracing::info!(%method, elapsed_ms, status, "call refused"),
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_deadlines_are_read_in_every_unit_and_nonsense_is_ignored() {
        let deadline = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-timeout", HeaderValue::from_str(value).expect("header"));
            client_deadline(&headers)
        };
        assert_eq!(deadline("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(deadline("3M"), Some(Duration::from_secs(180)));
        assert_eq!(deadline("150m"), Some(Duration::from_millis(150)));
        assert_eq!(deadline("7u"), Some(Duration::from_micros(7)));
        assert_eq!(deadline("9n"), Some(Duration::from_nanos(9)));
        assert_eq!(deadline("S"), None);
        assert_eq!(deadline("123456789S"), None, "at most eight digits");
        assert_eq!(deadline("10x"), None);
        assert_eq!(deadline("-1S"), None);
    }

    #[test]
    fn a_request_id_goes_as_a_value_never_indexed() {
        let value = request_id_value("0193a1b2-req").expect("a header value");
        assert_eq!(value, "0193a1b2-req");
        assert!(value.is_sensitive(), "kept out of the HPACK table");
        assert!(request_id_value("line\nbreak").is_none());
    }

    #[test]
    fn request_ids_made_here_are_distinct_version_7_uuids_of_the_current_time() {
        let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
        let ids: Vec<String> = (0..10_000).map(|_| new_request_id()).collect();
        let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
        assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "an id repeated");
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 7, "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
            let (seconds, nanos) = uuid.get_timestamp().expect("a time").to_unix();
            let millis = u128::from(seconds) * 1000 + u128::from(nanos / 1_000_000);
            assert!((before..=after).contains(&millis), "{id}: {millis} outside {before}..={after}");
            // Another hop takes it as the caller's id, unchanged.
            let mut headers = http::HeaderMap::new();
            headers.insert(REQUEST_ID_HEADER, HeaderValue::from_str(id).expect("header"));
            assert_eq!(client_request_id(&headers).as_deref(), Some(id.as_str()));
        }
        // Two threads draw from generators of their own, seeded apart.
        let other = std::thread::spawn(new_request_id).join().expect("thread");
        assert!(!ids.contains(&other), "{other}");
    }
}
