//! The gRPC methods that exist: access rights are checked against them,
//! metaservices list them, and whether a method streams decides its
//! deadline and how its message log entry is queued.
//!
//! The catalog starts from the descriptors of every proto compiled into the
//! gateway, and then learns each service's methods from the server
//! reflection of the service behind the gateway that serves its package: at
//! start, every [`REFRESH_INTERVAL`], and when a member is admitted to a
//! method the catalog does not know (at most once per
//! [`MISS_COOLDOWN`] per upstream). So a method added to a service, unary
//! or streaming, is known without rebuilding the gateway. An upstream that
//! does not serve reflection (as other state systems may not) keeps the
//! compiled description of its services.
//!
//! An upstream describes only the packages routed to it: a service that
//! claims another package is ignored.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use prost::Message as _;
use tonic::transport::Channel;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

/// How often every upstream's reflection is read again.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// An upstream is asked again for a method it was not known to serve at
/// most this often (a member calling methods that do not exist must not
/// make the gateway ask on every call).
pub const MISS_COOLDOWN: Duration = Duration::from_secs(5);
/// How long one reading of an upstream's reflection may take.
const LEARN_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this many methods are taken from one upstream…
const METHODS_PER_UPSTREAM_MAX: usize = 10_000;
/// …of at most this many services…
const SERVICES_PER_UPSTREAM_MAX: usize = 1_000;
/// …read from at most this many bytes of reflection answers.
const REFLECTION_BYTES_PER_UPSTREAM_MAX: usize = 16 * 1024 * 1024;

/// One method of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodInfo {
    /// `/esocial.registry.v1.RegistryService/GetPerson`
    pub path: String,
    pub client_streaming: bool,
    pub server_streaming: bool,
}

impl MethodInfo {
    pub fn streaming(&self) -> Streaming {
        Streaming { requests: self.client_streaming, responses: self.server_streaming }
    }
}

/// Which ways a method streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Streaming {
    /// The client sends a stream of messages.
    pub requests: bool,
    /// The service answers with a stream of messages.
    pub responses: bool,
}

impl Streaming {
    /// Whether it streams either way.
    pub fn any(self) -> bool {
        self.requests || self.responses
    }
}

/// Service name (`esocial.registry.v1.RegistryService`) → its methods.
pub type Services = BTreeMap<String, Vec<MethodInfo>>;

/// The services of a descriptor set, those of `packages` only when given.
fn services_of(files: &[prost_types::FileDescriptorProto], packages: Option<&BTreeSet<String>>) -> Services {
    let mut services = Services::new();
    for file in files {
        if packages.is_some_and(|packages| !packages.contains(file.package())) {
            continue;
        }
        for service in &file.service {
            let name = format!("{}.{}", file.package(), service.name());
            let methods = service
                .method
                .iter()
                .map(|method| MethodInfo {
                    path: format!("/{name}/{}", method.name()),
                    client_streaming: method.client_streaming(),
                    server_streaming: method.server_streaming(),
                })
                .collect();
            services.insert(name, methods);
        }
    }
    services
}

/// The services compiled into the gateway.
pub fn compiled() -> &'static Services {
    static COMPILED: OnceLock<Services> = OnceLock::new();
    COMPILED.get_or_init(|| services_of(&esocial_proto::file_descriptor_set().file, None))
}

/// The methods of `services` in a `forwarded` package that `member` may
/// call, of `only_service` when given: what the metaservice lists to a
/// member, and what reflection describes to it.
pub fn allowed<'a>(
    services: &'a Services,
    forwarded: &'a [String],
    member: &'a crate::directory::MemberEntry,
    only_service: Option<&'a str>,
) -> impl Iterator<Item = &'a MethodInfo> + 'a {
    services
        .iter()
        .filter(move |(service, _)| {
            only_service.is_none_or(|only| only == service.as_str())
                && forwarded.iter().any(|package| package == package_of(service))
        })
        .flat_map(|(_, methods)| methods)
        .filter(move |method| {
            crate::domain::MethodPath::parse(&method.path).is_some_and(|path| member.may_call(&path, &method.path))
        })
}

/// The package of a service name.
pub fn package_of(service: &str) -> &str {
    service.rsplit_once('.').map_or("", |(package, _)| package)
}

/// What the catalog holds at one moment.
#[derive(Debug, Default)]
struct Snapshot {
    services: Arc<Services>,
    /// Method path → which ways it streams.
    methods: HashMap<String, Streaming>,
}

impl Snapshot {
    fn of(services: Services) -> Self {
        let methods = services.values().flatten().map(|method| (method.path.clone(), method.streaming())).collect();
        Self { services: Arc::new(services), methods }
    }
}

/// A service behind the gateway whose reflection is read.
#[derive(Debug)]
struct Source {
    url: String,
    channel: Channel,
    packages: BTreeSet<String>,
    /// When its reflection was last asked for, one reading at a time.
    last_asked: tokio::sync::Mutex<Option<Instant>>,
    /// Whether the last reading succeeded: a change is logged, a repeat
    /// is not (an upstream without reflection would say so every minute).
    readable: std::sync::atomic::AtomicU8,
}

const NOT_READ: u8 = 0;
const READABLE: u8 = 1;
const UNREADABLE: u8 = 2;

/// The methods that exist, as the services behind the gateway describe
/// them.
#[derive(Debug)]
pub struct Catalog {
    sources: Vec<Source>,
    /// What each source described at its last successful reading.
    learned: RwLock<HashMap<String, Described>>,
    /// Counts the readings that changed what an upstream described.
    generation: AtomicU64,
    current: RwLock<Arc<Snapshot>>,
}

/// Why an upstream's methods could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    #[error("no answer within {} ms", LEARN_TIMEOUT.as_millis())]
    Timeout,
    #[error("{0}")]
    Status(#[from] tonic::Status),
    #[error("reflection answered with error {code}: {message}")]
    Refused { code: i32, message: String },
    #[error("reflection gave an unexpected answer")]
    Unexpected,
    #[error("its answers are larger than {} bytes", REFLECTION_BYTES_PER_UPSTREAM_MAX)]
    TooLarge,
    #[error("a file descriptor does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
}

impl Catalog {
    /// The compiled services only, learning from nobody.
    #[cfg(test)]
    fn compiled_only() -> Self {
        Self::learning_from(Vec::new())
    }

    /// Learns from the upstreams at `(package, url, channel)`; one reading
    /// per url covers all its packages.
    pub fn learning_from(routes: Vec<(String, String, Channel)>) -> Self {
        let mut sources: Vec<Source> = Vec::new();
        for (package, url, channel) in routes {
            match sources.iter_mut().find(|source| source.url == url) {
                Some(source) => {
                    source.packages.insert(package);
                }
                None => sources.push(Source {
                    url,
                    channel,
                    packages: BTreeSet::from([package]),
                    last_asked: tokio::sync::Mutex::new(None),
                    readable: std::sync::atomic::AtomicU8::new(NOT_READ),
                }),
            }
        }
        Self {
            sources,
            learned: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            current: RwLock::new(Arc::new(Snapshot::of(compiled().clone()))),
        }
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().map_or_else(|poisoned| poisoned.into_inner().clone(), |current| current.clone())
    }

    /// Service name → methods, now.
    pub fn services(&self) -> Arc<Services> {
        self.snapshot().services.clone()
    }

    /// Which ways the method at `path` streams; `None` for a method the
    /// catalog does not know.
    pub fn streaming(&self, path: &str) -> Option<Streaming> {
        match self.current.read() {
            Ok(current) => current.methods.get(path).copied(),
            Err(poisoned) => poisoned.into_inner().methods.get(path).copied(),
        }
    }

    /// Whether the method at `path` streams in either direction; `None`
    /// for a method the catalog does not know.
    pub fn streams(&self, path: &str) -> Option<bool> {
        self.streaming(path).map(Streaming::any)
    }

    pub fn method_exists(&self, path: &str) -> bool {
        self.streams(path).is_some()
    }

    pub fn service_exists(&self, service: &str) -> bool {
        self.snapshot().services.contains_key(service)
    }

    /// Reads the reflection of every upstream now (each at most
    /// [`LEARN_TIMEOUT`]); an upstream that cannot be read keeps what was
    /// last learned from it.
    pub async fn refresh(&self) {
        let readings = self.sources.iter().map(|source| async move {
            let mut last_asked = source.last_asked.lock().await;
            self.read_source(source, &mut last_asked).await;
        });
        futures_util::future::join_all(readings).await;
    }

    /// Refreshes every [`REFRESH_INTERVAL`] (at once first) until `shutdown`.
    pub async fn follow(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            self.refresh().await;
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(REFRESH_INTERVAL) => {}
            }
        }
    }

    /// For a method the catalog does not know: asks the upstream that
    /// serves its package again, unless it was asked within
    /// [`MISS_COOLDOWN`], and tells which ways the method streams.
    pub async fn learn_method(self: &Arc<Self>, path: &str) -> Option<Streaming> {
        self.learn_exists(path, MISS_COOLDOWN).await;
        self.streaming(path)
    }

    /// Like [`Catalog::method_exists`] and [`Catalog::service_exists`], but
    /// a name not known yet makes the catalog ask its upstream first, unless
    /// it was asked within `cooldown` (an administrator granting a right
    /// to a method just deployed waits for none; a member listing its
    /// methods, [`MISS_COOLDOWN`]). The reading runs on its own: a caller
    /// that stops waiting (its deadline passed) does not abandon it for
    /// the others, whom the cooldown keeps from asking again.
    pub async fn learn_exists(self: &Arc<Self>, method_or_service: &str, cooldown: Duration) -> bool {
        if self.knows(method_or_service) {
            return true;
        }
        let service = method_or_service.trim_start_matches('/').split('/').next().unwrap_or_default();
        let package = package_of(service);
        if let Some(index) = self.sources.iter().position(|source| source.packages.contains(package)) {
            let catalog = self.clone();
            let name = method_or_service.to_owned();
            let reading = tokio::spawn(async move {
                let source = &catalog.sources[index];
                let mut last_asked = source.last_asked.lock().await;
                // Another call may have asked while this one waited.
                if !catalog.knows(&name) && last_asked.is_none_or(|asked| asked.elapsed() >= cooldown) {
                    catalog.read_source(source, &mut last_asked).await;
                }
            });
            let _ = reading.await;
        }
        self.knows(method_or_service)
    }

    /// A method path (`/package.Service/Method`) or service name known now.
    fn knows(&self, method_or_service: &str) -> bool {
        if method_or_service.starts_with('/') {
            self.method_exists(method_or_service)
        } else {
            self.service_exists(method_or_service)
        }
    }

    /// Changes whenever a reading changes what an upstream described.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// `base` with the files the upstreams described: each upstream's
    /// files of the packages routed to it (a base file replaced only by one
    /// of the same package), and the files they import that the base lacks,
    /// unless those belong to a package routed elsewhere or to `own`.
    pub fn descriptors(&self, base: &prost_types::FileDescriptorSet, own: &str) -> prost_types::FileDescriptorSet {
        let mut files: BTreeMap<String, prost_types::FileDescriptorProto> =
            base.file.iter().map(|file| (file.name().to_owned(), file.clone())).collect();
        let learned = self.learned.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        for source in &self.sources {
            let Some(described) = learned.get(&source.url) else { continue };
            for file in &described.files {
                let package = file.package();
                let routed_here = source.packages.contains(package);
                let usable = match files.get(file.name()) {
                    // A file of the base is replaced only by the upstream
                    // of its package, with a file of that package.
                    Some(known) => routed_here && known.package() == package,
                    // A new file: of this upstream's packages, or one
                    // they import from a package nobody else serves.
                    None => {
                        routed_here
                            || (package != own && !self.sources.iter().any(|other| other.packages.contains(package)))
                    }
                };
                if usable {
                    files.insert(file.name().to_owned(), file.clone());
                }
            }
        }
        prost_types::FileDescriptorSet { file: files.into_values().collect() }
    }

    async fn read_source(&self, source: &Source, last_asked: &mut Option<Instant>) {
        *last_asked = Some(Instant::now());
        let read = match tokio::time::timeout(LEARN_TIMEOUT, read_reflection(source.channel.clone(), &source.packages))
            .await
        {
            Ok(read) => read,
            Err(_) => Err(LearnError::Timeout),
        };
        let outcome = if read.is_ok() { READABLE } else { UNREADABLE };
        let changed = source.readable.swap(outcome, Ordering::Relaxed) != outcome;
        match read {
            Ok(described) => {
                if changed {
                    tracing::info!(upstream = %source.url, services = described.services.len(), "reading the methods of an upstream from its reflection");
                }
                let mut learned = self.learned.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                if learned.get(&source.url) == Some(&described) {
                    return;
                }
                learned.insert(source.url.clone(), described);
                let snapshot =
                    Arc::new(Snapshot::of(overlay(compiled(), learned.values().map(|described| &described.services))));
                drop(learned);
                *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = snapshot;
                self.generation.fetch_add(1, Ordering::Release);
            }
            Err(error) if changed => {
                tracing::info!(upstream = %source.url, %error, "cannot read the methods of an upstream; keeping what is known");
            }
            Err(error) => {
                tracing::debug!(upstream = %source.url, %error, "still cannot read the methods of an upstream");
            }
        }
    }
}

/// The compiled services, each replaced by what an upstream described.
/// Replaced, not merged: the reflection tells what the service serves as
/// deployed, so a method the gateway was built with but an older service
/// lacks is not granted, listed or described (calling it would only give
/// `UNIMPLEMENTED`), and a method removed from a newer one goes away. The
/// gateway's reflection takes the upstream's files whole for the same
/// reason ([`Catalog::descriptors`]).
fn overlay<'a>(compiled: &Services, learned: impl Iterator<Item = &'a Services>) -> Services {
    let mut services = compiled.clone();
    for described in learned {
        for (service, methods) in described {
            services.insert(service.clone(), methods.clone());
        }
    }
    services
}

/// What an upstream described: its services of the packages routed to it,
/// and the files that declare them with everything they import.
#[derive(Debug, Default, PartialEq)]
struct Described {
    services: Services,
    files: Vec<prost_types::FileDescriptorProto>,
}

/// Asks an upstream's reflection for its services of `packages` and their
/// methods.
async fn read_reflection(channel: Channel, packages: &BTreeSet<String>) -> Result<Described, LearnError> {
    let mut client = ServerReflectionClient::new(channel);
    let ask = |request: MessageRequest| ServerReflectionRequest { host: String::new(), message_request: Some(request) };

    let mut budget = REFLECTION_BYTES_PER_UPSTREAM_MAX;
    let listed = one_answer(&mut client, vec![ask(MessageRequest::ListServices(String::new()))], &mut budget).await?;
    let Some(MessageResponse::ListServicesResponse(listed)) = listed.into_iter().next() else {
        return Err(LearnError::Unexpected);
    };
    let mut wanted: BTreeSet<String> = listed
        .service
        .into_iter()
        .map(|service| service.name)
        .filter(|name| packages.contains(package_of(name)))
        .collect();
    if wanted.len() > SERVICES_PER_UPSTREAM_MAX {
        tracing::warn!(
            services = wanted.len(),
            taken = SERVICES_PER_UPSTREAM_MAX,
            "an upstream describes more services than are taken"
        );
        wanted = wanted.into_iter().take(SERVICES_PER_UPSTREAM_MAX).collect();
    }
    if wanted.is_empty() {
        return Ok(Described::default());
    }
    let answers = one_answer(
        &mut client,
        wanted.iter().map(|name| ask(MessageRequest::FileContainingSymbol(name.clone()))).collect(),
        &mut budget,
    )
    .await?;
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    for answer in answers {
        let MessageResponse::FileDescriptorResponse(response) = answer else { return Err(LearnError::Unexpected) };
        for encoded in response.file_descriptor_proto {
            let file = prost_types::FileDescriptorProto::decode(encoded.as_slice())?;
            if seen.insert(file.name().to_owned()) {
                files.push(file);
            }
        }
    }
    let mut services = services_of(&files, Some(packages));
    services.retain(|name, _| wanted.contains(name));
    let mut methods = 0;
    services.retain(|_, service_methods| {
        methods += service_methods.len();
        methods <= METHODS_PER_UPSTREAM_MAX
    });
    Ok(Described { services, files })
}

/// Sends `requests` on one reflection stream and reads one answer for each,
/// taking their size from `budget`.
async fn one_answer(
    client: &mut ServerReflectionClient<Channel>,
    requests: Vec<ServerReflectionRequest>,
    budget: &mut usize,
) -> Result<Vec<MessageResponse>, LearnError> {
    let expected = requests.len();
    let mut stream = client.server_reflection_info(tokio_stream::iter(requests)).await?.into_inner();
    let mut answers = Vec::with_capacity(expected);
    while answers.len() < expected {
        let Some(ServerReflectionResponse { message_response, .. }) = stream.message().await? else {
            return Err(LearnError::Unexpected);
        };
        let bytes = message_response.as_ref().map_or(0, MessageResponse::encoded_len);
        *budget = budget.checked_sub(bytes).ok_or(LearnError::TooLarge)?;
        match message_response {
            Some(MessageResponse::ErrorResponse(error)) => {
                return Err(LearnError::Refused { code: error.error_code, message: error.error_message });
            }
            Some(answer) => answers.push(answer),
            None => return Err(LearnError::Unexpected),
        }
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(package: &str, service: &str, methods: &[(&str, bool, bool)]) -> prost_types::FileDescriptorProto {
        prost_types::FileDescriptorProto {
            name: Some(format!("{package}.proto")),
            package: Some(package.to_owned()),
            service: vec![prost_types::ServiceDescriptorProto {
                name: Some(service.to_owned()),
                method: methods
                    .iter()
                    .map(|(name, client_streaming, server_streaming)| prost_types::MethodDescriptorProto {
                        name: Some((*name).to_owned()),
                        client_streaming: Some(*client_streaming),
                        server_streaming: Some(*server_streaming),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// A service's reflection describing `services` services of package
    /// `big.v1` (`big.v1.Service0000`, …), each in a file of its own padded
    /// to `padding` bytes, with one unary method `Added`; each answer
    /// stream starts after `delay`.
    #[derive(Clone)]
    struct Describing {
        services: usize,
        padding: usize,
        delay: Duration,
        /// Readings started (lists of the services asked for).
        readings: Arc<AtomicU64>,
    }

    impl Describing {
        fn answer(&self, asked: ServerReflectionRequest) -> ServerReflectionResponse {
            let answer = match asked.message_request {
                Some(MessageRequest::ListServices(_)) => {
                    self.readings.fetch_add(1, Ordering::SeqCst);
                    MessageResponse::ListServicesResponse(tonic_reflection::pb::v1::ListServiceResponse {
                        service: (0..self.services)
                            .map(|index| tonic_reflection::pb::v1::ServiceResponse {
                                name: format!("big.v1.Service{index:04}"),
                            })
                            .collect(),
                    })
                }
                Some(MessageRequest::FileContainingSymbol(symbol)) => {
                    let service = symbol.trim_start_matches("big.v1.");
                    let mut described = file("big.v1", service, &[("Added", false, false)]);
                    described.name = Some(format!("{service}.proto"));
                    described.syntax = Some("x".repeat(self.padding));
                    MessageResponse::FileDescriptorResponse(tonic_reflection::pb::v1::FileDescriptorResponse {
                        file_descriptor_proto: vec![described.encode_to_vec()],
                    })
                }
                _ => MessageResponse::ErrorResponse(tonic_reflection::pb::v1::ErrorResponse {
                    error_code: tonic::Code::Unimplemented as i32,
                    error_message: "not asked in these tests".to_owned(),
                }),
            };
            ServerReflectionResponse { message_response: Some(answer), ..Default::default() }
        }

        /// Serves on a port of its own; the channel to it.
        async fn serve(self) -> Channel {
            use tonic_reflection::pb::v1::server_reflection_server::ServerReflectionServer;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
            let address = listener.local_addr().expect("address");
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(ServerReflectionServer::new(self))
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
            );
            tonic::transport::Endpoint::from_shared(format!("http://{address}")).expect("url").connect_lazy()
        }
    }

    #[tonic::async_trait]
    impl tonic_reflection::pb::v1::server_reflection_server::ServerReflection for Describing {
        type ServerReflectionInfoStream =
            std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<ServerReflectionResponse, tonic::Status>> + Send>>;

        async fn server_reflection_info(
            &self,
            request: tonic::Request<tonic::Streaming<ServerReflectionRequest>>,
        ) -> Result<tonic::Response<Self::ServerReflectionInfoStream>, tonic::Status> {
            use tokio_stream::StreamExt as _;
            tokio::time::sleep(self.delay).await;
            let describing = self.clone();
            let answers = request.into_inner().map(move |asked| Ok(describing.answer(asked?)));
            Ok(tonic::Response::new(Box::pin(answers)))
        }
    }

    fn big() -> BTreeSet<String> {
        BTreeSet::from(["big.v1".to_owned()])
    }

    #[tokio::test]
    async fn an_upstream_describing_more_services_than_are_taken_gives_the_first_by_name() {
        let readings = Arc::new(AtomicU64::new(0));
        let channel = Describing { services: 1_005, padding: 0, delay: Duration::ZERO, readings }.serve().await;
        let described = read_reflection(channel, &big()).await.expect("read");
        assert_eq!(described.services.len(), SERVICES_PER_UPSTREAM_MAX);
        assert_eq!(described.services.keys().next().map(String::as_str), Some("big.v1.Service0000"));
        assert_eq!(described.services.keys().last().map(String::as_str), Some("big.v1.Service0999"));
        assert_eq!(described.files.len(), SERVICES_PER_UPSTREAM_MAX, "the others are not even asked for");
    }

    #[tokio::test]
    async fn an_upstream_whose_answers_outgrow_the_byte_budget_is_not_read() {
        // Each file just under the 4 MiB a message may have: four fit in
        // the 16 MiB of a reading, five do not.
        let padding = 3_900_000;
        let readings = Arc::new(AtomicU64::new(0));
        let within =
            Describing { services: 4, padding, delay: Duration::ZERO, readings: readings.clone() }.serve().await;
        let described = read_reflection(within, &big()).await.expect("four files fit");
        assert_eq!(described.services.len(), 4);
        let beyond = Describing { services: 5, padding, delay: Duration::ZERO, readings }.serve().await;
        let refused = read_reflection(beyond, &big()).await;
        assert!(matches!(refused, Err(LearnError::TooLarge)), "{refused:?}");
    }

    #[tokio::test]
    async fn a_reading_goes_on_when_the_caller_that_started_it_stops_waiting() {
        // A reading takes two answer streams, 1.2 s in all: within its
        // 2 s, beyond the caller's 200 ms.
        let readings = Arc::new(AtomicU64::new(0));
        let channel =
            Describing { services: 1, padding: 0, delay: Duration::from_millis(600), readings: readings.clone() }
                .serve()
                .await;
        let catalog = Arc::new(Catalog::learning_from(vec![("big.v1".to_owned(), "http://big".to_owned(), channel)]));
        let path = "/big.v1.Service0000/Added";
        let asked = Instant::now();
        let waited = tokio::time::timeout(Duration::from_millis(200), catalog.learn_method(path)).await;
        assert!(waited.is_err(), "the method cannot be known before the upstream answers");
        assert!(asked.elapsed() < Duration::from_millis(600), "the caller waited {:?}", asked.elapsed());
        assert_eq!(catalog.streams(path), None);
        let until = Instant::now() + LEARN_TIMEOUT;
        while catalog.streams(path).is_none() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(catalog.streams(path), Some(false), "the reading the caller started finished without it");
        assert_eq!(readings.load(Ordering::SeqCst), 1, "nobody else asked");
    }

    #[test]
    fn the_compiled_services_are_known_with_their_streaming() {
        let catalog = Catalog::compiled_only();
        assert_eq!(catalog.streams("/esocial.registry.v1.RegistryService/GetPerson"), Some(false));
        assert_eq!(catalog.streams("/esocial.gateway.v1.SubscriptionService/Subscribe"), Some(true));
        assert_eq!(catalog.streams("/esocial.registry.v1.RegistryService/NoSuchMethod"), None);
        assert!(catalog.service_exists("esocial.registry.v1.RegistryService"));
    }

    #[test]
    fn a_described_service_replaces_its_compiled_description_and_only_routed_packages_count() {
        let packages = BTreeSet::from(["esocial.registry.v1".to_owned()]);
        let described = services_of(
            &[
                file("esocial.registry.v1", "RegistryService", &[("GetPerson", false, false), ("Watch", false, true)]),
                file("esocial.identity.v1", "IdentityService", &[("Stolen", false, false)]),
            ],
            Some(&packages),
        );
        assert_eq!(described.len(), 1, "{described:?}");
        let snapshot = Snapshot::of(overlay(compiled(), std::iter::once(&described)));
        let streaming = |path: &str| snapshot.methods.get(path).copied();
        assert_eq!(
            streaming("/esocial.registry.v1.RegistryService/Watch"),
            Some(Streaming { requests: false, responses: true })
        );
        assert_eq!(streaming("/esocial.registry.v1.RegistryService/GetPerson"), Some(Streaming::default()));
        assert_eq!(
            snapshot.services["esocial.registry.v1.RegistryService"].len(),
            2,
            "the described service replaces the compiled one"
        );
        assert!(!snapshot.methods.contains_key("/esocial.identity.v1.IdentityService/Stolen"));
        assert!(snapshot.services.contains_key("esocial.classifier.v1.ClassifierService"), "others stay");
    }

    #[tokio::test]
    async fn an_upstream_replaces_only_files_of_its_own_packages_in_the_reflection() {
        let named = |name: &str, package: &str| prost_types::FileDescriptorProto {
            name: Some(name.to_owned()),
            package: Some(package.to_owned()),
            ..Default::default()
        };
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
        let catalog = Catalog::learning_from(vec![
            ("esocial.registry.v1".to_owned(), "http://registry".to_owned(), channel.clone()),
            ("esocial.identity.v1".to_owned(), "http://identity".to_owned(), channel),
        ]);
        let base = prost_types::FileDescriptorSet {
            file: vec![
                named("gateway.proto", "esocial.gateway.v1"),
                named("registry.proto", "esocial.registry.v1"),
                named("common.proto", "esocial.common.v1"),
            ],
        };
        let mut newer_registry = named("registry.proto", "esocial.registry.v1");
        newer_registry.service = file("esocial.registry.v1", "RegistryService", &[("Watch", false, true)]).service;
        let described = Described {
            services: Services::new(),
            files: vec![
                newer_registry.clone(),
                named("gateway.proto", "esocial.registry.v1"),
                named("identity-extra.proto", "esocial.identity.v1"),
                named("common.proto", "esocial.common.v1.newer"),
                named("dependency.proto", "some.dependency"),
                named("own-extra.proto", "esocial.gateway.v1"),
            ],
        };
        catalog.learned.write().expect("lock").insert("http://registry".to_owned(), described);
        let files: BTreeMap<String, prost_types::FileDescriptorProto> = catalog
            .descriptors(&base, "esocial.gateway.v1")
            .file
            .into_iter()
            .map(|file| (file.name().to_owned(), file))
            .collect();
        assert_eq!(files["registry.proto"], newer_registry, "its own package's file is replaced");
        assert_eq!(files["gateway.proto"].package(), "esocial.gateway.v1", "another package's file stays");
        assert_eq!(files["common.proto"].package(), "esocial.common.v1", "a base file stays");
        assert!(files.contains_key("dependency.proto"), "an import nobody else serves is added");
        assert!(!files.contains_key("identity-extra.proto"), "a package routed elsewhere is not");
        assert!(!files.contains_key("own-extra.proto"), "nor the gateway's own");
    }
}
