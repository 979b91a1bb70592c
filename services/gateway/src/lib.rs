//! The exchange gateway: the single door through which other state systems
//! (member systems, X-Road style) call esocial, and esocial calls them.
//!
//! Every method of every service behind it is forwarded at the HTTP/2 level
//! ([`proxy`]), after the member is authenticated (its identity-issued
//! token), its rate limit applied and its access right checked; every
//! exchange is recorded in a hash-chained, periodically signed message log
//! ([`message_log`], checked by [`verify`]). Members subscribe to the event
//! types they are entitled to ([`subscriptions`]). The gateway's own methods
//! administer members and rights, answer metaservices, search the log and
//! serve subscriptions.
//!
//! `Settings` → [`Gateway::build`] (pool, migrations, NATS, key, directory,
//! upstream channels) → [`Gateway::run`] on a listener the caller bound.

pub mod catalog;
pub mod changes;
pub mod clients;
pub mod counted;
pub mod directory;
pub mod domain;
pub mod events;
mod grpc;
pub mod internal_tokens;
pub mod message_log;
mod packed;
pub mod policy;
pub mod proxy;
pub mod reflection;
pub mod sandbox;
pub mod standing;
mod store;
pub mod subscriptions;
pub mod verify;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use esocial_auth::{AuthLayer, TokenVerifier};
use esocial_kit::config::{CommonSettings, ConfigError, Env, Reader, Variable};
use esocial_kit::server::GrpcServer;
use esocial_kit::shutdown::Shutdown;
use esocial_proto::gateway::v1::gateway_admin_service_server::{self, GatewayAdminServiceServer};
use esocial_proto::gateway::v1::message_log_service_server::{self, MessageLogServiceServer};
use esocial_proto::gateway::v1::meta_service_server::{self, MetaServiceServer};
use esocial_proto::gateway::v1::subscription_service_server::{self, SubscriptionServiceServer};
use http::HeaderValue;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::directory::{DefaultLimits, Directory};
use crate::internal_tokens::InternalTokens;
use crate::message_log::{CheckpointKey, FailurePolicy, LogWriter, MessageLog, WriterSettings};
use crate::proxy::{Door, Upstreams};
use crate::verify::LogKeys;

pub const NAME: &str = "gateway";
pub const AUDIENCE: &str = "esocial.gateway";

pub const LISTEN_ADDR: Variable = Variable {
    name: "ESOCIAL_GATEWAY_ADDR",
    default: "127.0.0.1:50060",
    meaning: "where the exchange gateway listens (the door for member systems)",
};
pub const ROUTES: Variable = Variable {
    name: "ESOCIAL_GATEWAY_ROUTES",
    default: "esocial.identity.v1=http://127.0.0.1:50056,esocial.classifier.v1=http://127.0.0.1:50051,esocial.registry.v1=http://127.0.0.1:50052",
    meaning: "`package=url` pairs, comma-separated: which service behind the gateway serves each proto package",
};
pub const OUTBOUND_ROUTES: Variable = Variable {
    name: "ESOCIAL_GATEWAY_OUTBOUND_ROUTES",
    default: "esocial.external.civil_registry.v1=http://127.0.0.1:50070,esocial.external.demographic.v1=http://127.0.0.1:50070,esocial.external.tax.v1=http://127.0.0.1:50070,esocial.external.ehealth.v1=http://127.0.0.1:50070,esocial.external.bank.v1=http://127.0.0.1:50070,esocial.external.diia.v1=http://127.0.0.1:50070",
    meaning: "`package=url` pairs of the other state systems esocial calls through the gateway (default: the sandbox's simulators)",
};
pub const NODE: Variable = Variable {
    name: "ESOCIAL_GATEWAY_NODE",
    default: "gateway-1",
    meaning: "this replica's name; each replica writes its own message log chain",
};
pub const SIGNING_KEY_FILE: Variable = Variable {
    name: "ESOCIAL_GATEWAY_SIGNING_KEY_FILE",
    default: "<data dir>/gateway-signing-key.pem",
    meaning: "Ed25519 private key (PKCS#8 PEM) that signs message log checkpoints; `esocial gateway signing-key` makes one",
};
pub const EARLIER_SIGNING_KEY_FILES: Variable = Variable {
    name: "ESOCIAL_GATEWAY_EARLIER_SIGNING_KEY_FILES",
    default: "",
    meaning: "comma-separated key files that ESOCIAL_GATEWAY_SIGNING_KEY_FILE replaced: the message log chains written with them (each under its own node name) still verify, in `VerifyMessageLog` and `esocial gateway verify-log`, and the subscription acknowledgement tokens given out with them still acknowledge",
};
pub const LOG_QUEUE_MAX: Variable = Variable {
    name: "ESOCIAL_GATEWAY_LOG_QUEUE_MAX",
    default: "10000",
    meaning: "message log entries (calls in flight included) that may wait for the writer; one member's calls in flight may hold a quarter of them at most",
};
pub const LOG_BATCH_MAX: Variable = Variable {
    name: "ESOCIAL_GATEWAY_LOG_BATCH_MAX",
    default: "500",
    meaning: "message log entries written per insert",
};
pub const LOG_LINGER_MS: Variable = Variable {
    name: "ESOCIAL_GATEWAY_LOG_LINGER_MS",
    default: "20",
    meaning: "how long the message log writer gathers entries before one insert (fewer, larger commits; calls never wait for it)",
};
pub const CHECKPOINT_SECONDS: Variable = Variable {
    name: "ESOCIAL_GATEWAY_CHECKPOINT_SECONDS",
    default: "60",
    meaning: "how often the head of the message log chain is signed (entries after the last checkpoint are covered by the hash chain only)",
};
pub const CHECKPOINT_ENTRIES: Variable = Variable {
    name: "ESOCIAL_GATEWAY_CHECKPOINT_ENTRIES",
    default: "100000",
    meaning: "the head of the message log chain is also signed as soon as this many entries follow the last checkpoint (under load, fewer entries rest on the hash chain alone)",
};
pub const LOG_FAILURE: Variable = Variable {
    name: "ESOCIAL_GATEWAY_LOG_FAILURE",
    default: "refuse",
    meaning: "`refuse`: calls get UNAVAILABLE while the message log cannot be written; `serve`: they are served unlogged (counted and logged as errors)",
};
pub const RATE_DEFAULT: Variable = Variable {
    name: "ESOCIAL_GATEWAY_REQUESTS_PER_SECOND_DEFAULT",
    default: "200",
    meaning: "a member's sustained requests per second unless set for it",
};
pub const BURST_DEFAULT: Variable =
    Variable { name: "ESOCIAL_GATEWAY_BURST_DEFAULT", default: "400", meaning: "a member's burst unless set for it" };
pub const REPLICAS: Variable = Variable {
    name: "ESOCIAL_GATEWAY_REPLICAS",
    default: "1",
    meaning: "how many gateway replicas share the members' calls: each holds a member to 1/n of its rate and burst (rounded up), so the limits hold for the whole deployment when calls are spread evenly",
};
pub const ACK_WAIT_SECONDS: Variable = Variable {
    name: "ESOCIAL_GATEWAY_ACK_WAIT_SECONDS",
    default: "30",
    meaning: "how long a subscribed event may stay unacknowledged before it is sent again",
};
pub const CLIENTS_READ_SECONDS: Variable = Variable {
    name: "ESOCIAL_GATEWAY_CLIENTS_READ_SECONDS",
    default: "300",
    meaning: "how often the gateway reads identity's list of system clients (`ListSystemClients`), at start and then at this interval, to learn of deactivations whose events it has not had (an event stream rebuilt without them, NATS away)",
};

pub const UPSTREAM_CONNECTIONS: Variable = Variable {
    name: "ESOCIAL_GATEWAY_UPSTREAM_CONNECTIONS",
    default: "4",
    meaning: "with `ESOCIAL_GATEWAY_SERVING_THREADS=0`: HTTP/2 connections the gateway keeps to each upstream address (calls are balanced over them); a serving thread keeps one of its own",
};
pub const SERVING_THREADS: Variable = Variable {
    name: "ESOCIAL_GATEWAY_SERVING_THREADS",
    default: "cores",
    meaning: "threads the gateway serves calls on, each with a single-threaded runtime and its own connections to the services behind it (new connections are handed to them in turn); `cores`: one per core; `0`: on the process's shared runtime",
};

pub const CLIENT_ID: Variable = Variable {
    name: "ESOCIAL_GATEWAY_CLIENT_ID",
    default: CLIENT_ID_DEFAULT,
    meaning: "the gateway's own system client at identity (scope `gateway`), with which it exchanges members' tokens for the services behind it",
};
pub const CLIENT_KEY_FILE: Variable = Variable {
    name: "ESOCIAL_GATEWAY_CLIENT_KEY_FILE",
    default: "<data dir>/systems/<client id>/private-key.pem",
    meaning: "Ed25519 private key (PKCS#8 PEM) of the gateway's system client",
};

pub const TLS_CERTIFICATE_FILE: Variable = Variable {
    name: "ESOCIAL_GATEWAY_TLS_CERTIFICATE_FILE",
    default: "",
    meaning: "PEM certificate chain the gateway serves TLS with (with ESOCIAL_GATEWAY_TLS_KEY_FILE); empty: plain HTTP/2",
};
pub const TLS_KEY_FILE: Variable =
    Variable { name: "ESOCIAL_GATEWAY_TLS_KEY_FILE", default: "", meaning: "PEM private key of the TLS certificate" };
pub const TLS_CLIENT_CA_FILE: Variable = Variable {
    name: "ESOCIAL_GATEWAY_TLS_CLIENT_CA_FILE",
    default: "",
    meaning: "PEM certificates of the CAs that issue members' client certificates (mutual TLS, optional per member: a member with a registered certificate fingerprint must present that certificate)",
};

/// The gateway's system client in the sandbox.
pub const CLIENT_ID_DEFAULT: &str = "esocial-gateway";

pub const VARIABLES: &[Variable] = &[
    LISTEN_ADDR,
    CLIENT_ID,
    CLIENT_KEY_FILE,
    TLS_CERTIFICATE_FILE,
    TLS_KEY_FILE,
    TLS_CLIENT_CA_FILE,
    ROUTES,
    OUTBOUND_ROUTES,
    NODE,
    SIGNING_KEY_FILE,
    EARLIER_SIGNING_KEY_FILES,
    LOG_QUEUE_MAX,
    LOG_BATCH_MAX,
    LOG_LINGER_MS,
    CHECKPOINT_SECONDS,
    CHECKPOINT_ENTRIES,
    LOG_FAILURE,
    RATE_DEFAULT,
    BURST_DEFAULT,
    REPLICAS,
    ACK_WAIT_SECONDS,
    CLIENTS_READ_SECONDS,
    UPSTREAM_CONNECTIONS,
    SERVING_THREADS,
];

/// The auditors' verification of the whole message log: it reads every
/// entry, so it may take longer than other calls.
const VERIFY_MESSAGE_LOG: &str = "/esocial.gateway.v1.MessageLogService/VerifyMessageLog";

/// The key file's name in the data directory.
pub const SIGNING_KEY_FILE_NAME: &str = "gateway-signing-key.pem";

/// The gateway's own services.
pub const SERVICE_NAMES: &[&str] = &[
    gateway_admin_service_server::SERVICE_NAME,
    meta_service_server::SERVICE_NAME,
    message_log_service_server::SERVICE_NAME,
    subscription_service_server::SERVICE_NAME,
];

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The gateway's own migrations, in version order (a test of a migration
/// applies those before it, writes what it is to move, then the rest).
pub fn migrations() -> &'static sqlx::migrate::Migrator {
    &MIGRATIONS
}

/// Creates the schema and runs the migrations, nothing else.
pub async fn migrate(common: &CommonSettings) -> anyhow::Result<()> {
    Ok(esocial_kit::db::migrate_only(&common.database_url, NAME, &MIGRATIONS).await?)
}

/// How many threads of their own the gateway serves calls on
/// ([`SERVING_THREADS`]): one per core unless set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServingThreads {
    #[default]
    PerCore,
    Exactly(usize),
}

impl ServingThreads {
    /// 0: on the caller's runtime.
    pub fn count(self) -> usize {
        match self {
            Self::PerCore => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            Self::Exactly(count) => count,
        }
    }
}

impl std::str::FromStr for ServingThreads {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "cores" {
            return Ok(Self::PerCore);
        }
        match text.parse::<usize>() {
            Ok(count) if count <= 256 => Ok(Self::Exactly(count)),
            _ => Err("must be `cores` or a whole number from 0 to 256".to_owned()),
        }
    }
}

/// The files the gateway serves TLS with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
    /// The CAs of members' client certificates; none: no client certificates.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    fn read(path: &Path, variable: Variable) -> anyhow::Result<String> {
        std::fs::read_to_string(path)
            .map_err(|error| anyhow::anyhow!("cannot read {} ({}): {error}", path.display(), variable.name))
    }

    /// The server's TLS configuration: client certificates are asked for
    /// and checked against the client CAs, but not required of every member.
    pub fn server_config(&self) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
        let identity = tonic::transport::Identity::from_pem(
            Self::read(&self.certificate, TLS_CERTIFICATE_FILE)?,
            Self::read(&self.key, TLS_KEY_FILE)?,
        );
        let mut config = tonic::transport::ServerTlsConfig::new().identity(identity);
        if let Some(client_ca) = &self.client_ca {
            let roots = tonic::transport::Certificate::from_pem(Self::read(client_ca, TLS_CLIENT_CA_FILE)?);
            config = config.client_ca_root(roots).client_auth_optional(true);
        }
        Ok(config)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub listen_addr: SocketAddr,
    pub routes: Vec<(String, String)>,
    pub outbound_routes: Vec<(String, String)>,
    pub node: String,
    pub signing_key_file: PathBuf,
    /// Signing keys `signing_key_file` replaced, still trusted to verify
    /// the chains they keyed.
    pub earlier_signing_key_files: Vec<PathBuf>,
    pub client_id: String,
    pub client_key_file: PathBuf,
    pub tls: Option<TlsFiles>,
    pub log_queue_max: usize,
    pub log_batch_max: usize,
    pub log_linger: Duration,
    pub checkpoint_interval: Duration,
    pub checkpoint_entries: i64,
    pub log_failure: FailurePolicy,
    pub requests_per_second_default: u32,
    pub burst_default: u32,
    /// Replicas that share the members' calls (each applies its share of a
    /// member's limits).
    pub replicas: u32,
    pub ack_wait: Duration,
    /// How often identity's list of system clients is read.
    pub clients_read_interval: Duration,
    pub upstream_connections: usize,
    pub serving_threads: ServingThreads,
    pub common: CommonSettings,
}

/// `package=url,package=url`; every problem recorded in `reader`.
fn routes(reader: &mut Reader<'_>, variable: Variable) -> Vec<(String, String)> {
    let text = reader.text(variable);
    let mut routes: Vec<(String, String)> = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
        let Some((package, url)) = pair.split_once('=') else {
            reader.problem(format!("{}: {pair:?} is not package=url", variable.name));
            continue;
        };
        let (package, url) = (package.trim(), url.trim());
        let package_ok = !package.is_empty()
            && package.split('.').all(|part| {
                !part.is_empty() && part.chars().all(|character| character.is_ascii_alphanumeric() || character == '_')
            });
        if !package_ok {
            reader.problem(format!("{}: {package:?} is not a proto package", variable.name));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len() {
            reader.problem(format!("{}: {url:?} must be an http:// or https:// URL", variable.name));
        }
        if package == proxy::OWN_PACKAGE {
            reader.problem(format!("{}: the gateway serves {package} itself", variable.name));
        }
        if routes.iter().any(|(known, _)| known == package) {
            reader.problem(format!("{}: {package} routed twice", variable.name));
        }
        routes.push((package.to_owned(), url.to_owned()));
    }
    routes
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut reader = Reader::new(env);
        let listen_addr = reader.socket_addr(LISTEN_ADDR);
        let routes_inbound = routes(&mut reader, ROUTES);
        let outbound_routes = routes(&mut reader, OUTBOUND_ROUTES);
        for (package, _) in &outbound_routes {
            if routes_inbound.iter().any(|(inbound, _)| inbound == package) {
                reader.problem(format!("{package} is routed both inbound and outbound"));
            }
        }
        let node = reader.identifier(NODE, |character| {
            character.is_ascii_alphanumeric() || character == '-' || character == '_' || character == '.'
        });
        let client_id = reader.identifier(CLIENT_ID, |character| {
            character.is_ascii_lowercase()
                || character.is_ascii_digit()
                || character == '.'
                || character == '-'
                || character == '_'
        });
        let log_queue_max = usize::try_from(reader.number_in(LOG_QUEUE_MAX, 16..=1_000_000)).unwrap_or(10_000);
        let log_batch_max = usize::try_from(reader.number_in(LOG_BATCH_MAX, 1..=10_000)).unwrap_or(500);
        let log_linger = reader.milliseconds(LOG_LINGER_MS, 0..=1000);
        let checkpoint_interval = Duration::from_secs(reader.number_in(CHECKPOINT_SECONDS, 1..=86_400));
        let checkpoint_entries =
            i64::try_from(reader.number_in(CHECKPOINT_ENTRIES, 1..=100_000_000)).unwrap_or(100_000);
        let log_failure = reader.parse(LOG_FAILURE);
        let requests_per_second_default =
            u32::try_from(reader.number_in(RATE_DEFAULT, 1..=u64::from(domain::REQUESTS_PER_SECOND_MAX)))
                .unwrap_or(200);
        let burst_default =
            u32::try_from(reader.number_in(BURST_DEFAULT, 1..=u64::from(domain::BURST_MAX))).unwrap_or(400);
        let replicas = u32::try_from(reader.number_in(REPLICAS, 1..=1000)).unwrap_or(1);
        let ack_wait = Duration::from_secs(reader.number_in(ACK_WAIT_SECONDS, 1..=3600));
        let clients_read_interval = Duration::from_secs(reader.number_in(CLIENTS_READ_SECONDS, 1..=86_400));
        let upstream_connections = usize::try_from(reader.number_in(UPSTREAM_CONNECTIONS, 1..=64)).unwrap_or(4);
        let serving_threads = reader.parse(SERVING_THREADS);
        let common = CommonSettings::read(&mut reader);
        let signing_key_file = match env.get(SIGNING_KEY_FILE.name) {
            Some(path) => PathBuf::from(path),
            None => common.data_dir.join(SIGNING_KEY_FILE_NAME),
        };
        let earlier_signing_key_files = env
            .get(EARLIER_SIGNING_KEY_FILES.name)
            .map(|files| files.split(',').map(str::trim).filter(|file| !file.is_empty()).map(PathBuf::from).collect())
            .unwrap_or_default();
        let client_key_file = match env.get(CLIENT_KEY_FILE.name) {
            Some(path) => PathBuf::from(path),
            None => common.data_dir.join("systems").join(&client_id).join("private-key.pem"),
        };
        let file =
            |variable: Variable| env.get(variable.name).filter(|path| !path.trim().is_empty()).map(PathBuf::from);
        let tls = match (file(TLS_CERTIFICATE_FILE), file(TLS_KEY_FILE), file(TLS_CLIENT_CA_FILE)) {
            (Some(certificate), Some(key), client_ca) => Some(TlsFiles { certificate, key, client_ca }),
            (None, None, None) => None,
            _ => {
                reader.problem(format!(
                    "{} and {} go together, and {} needs both",
                    TLS_CERTIFICATE_FILE.name, TLS_KEY_FILE.name, TLS_CLIENT_CA_FILE.name
                ));
                None
            }
        };
        reader.finish()?;
        Ok(Self {
            listen_addr,
            tls,
            routes: routes_inbound,
            outbound_routes,
            node,
            signing_key_file,
            earlier_signing_key_files,
            client_id,
            client_key_file,
            log_queue_max,
            log_batch_max,
            log_linger,
            checkpoint_interval,
            checkpoint_entries,
            log_failure,
            requests_per_second_default,
            burst_default,
            replicas,
            ack_wait,
            clients_read_interval,
            upstream_connections,
            serving_threads,
            common,
        })
    }
}

/// Writes a new checkpoint signing key to `path` unless one is there.
pub fn ensure_signing_key(path: &Path) -> anyhow::Result<bool> {
    esocial_kit::keyfile::ensure_ed25519_key_file(path)
}

/// Reads the checkpoint signing key.
pub fn read_signing_key(path: &Path) -> anyhow::Result<CheckpointKey> {
    let pem = esocial_kit::keyfile::read_key_file(
        path,
        "gateway's signing key",
        SIGNING_KEY_FILE.name,
        "esocial gateway signing-key",
    )?;
    CheckpointKey::from_pem(&pem).map_err(|error| anyhow::anyhow!("signing key {}: {error}", path.display()))
}

/// Reads a signing key the current one replaced, for verification.
fn read_earlier_signing_key(path: &Path) -> anyhow::Result<CheckpointKey> {
    let pem = std::fs::read_to_string(path).map_err(|error| {
        anyhow::anyhow!(
            "cannot read the gateway's earlier signing key {} ({} or --earlier-key): {error}",
            path.display(),
            EARLIER_SIGNING_KEY_FILES.name
        )
    })?;
    CheckpointKey::from_pem(&pem).map_err(|error| anyhow::anyhow!("earlier signing key {}: {error}", path.display()))
}

/// The signing keys the current one replaced: those configured, then
/// those of the files in `more`.
fn earlier_keys(settings: &Settings, more: &[PathBuf]) -> anyhow::Result<Vec<CheckpointKey>> {
    settings.earlier_signing_key_files.iter().chain(more).map(|path| read_earlier_signing_key(path)).collect()
}

/// The keys that verify the message log: `current`'s, then `earlier`'s.
fn log_keys_of(current: &CheckpointKey, earlier: &[CheckpointKey]) -> LogKeys {
    earlier.iter().fold(LogKeys::of(current), LogKeys::trusting)
}

/// Verifies the stored message log of `node` (every node when `None`) with
/// the key in the configured signing key file and the earlier keys it
/// replaced (configured, and `earlier_key_files`; `esocial gateway
/// verify-log`), and unless `with_witness` is false against the checkpoints
/// the event stream holds (NATS must then be reachable).
pub async fn verify_stored_log(
    settings: &Settings,
    node: Option<&str>,
    with_witness: bool,
    earlier_key_files: &[PathBuf],
) -> anyhow::Result<Vec<verify::ChainReport>> {
    let current = read_signing_key(&settings.signing_key_file)?;
    let keys = log_keys_of(&current, &earlier_keys(settings, earlier_key_files)?);
    let witness = if with_witness {
        let nats =
            esocial_kit::nats::connect(&settings.common.nats_url, "esocial-gateway-verify").await.map_err(|error| {
                anyhow::anyhow!("{error:#}\n(--no-witness verifies without the event stream's checkpoints)")
            })?;
        Some(verify::CheckpointCopies::new(nats, settings.common.events.clone()).read(&keys).await?)
    } else {
        None
    };
    let pool = esocial_kit::db::pool(&settings.common.database_url, NAME, "esocial-gateway-verify", 1)?;
    let reports = verify::verify(&pool, &keys, node, witness.as_ref()).await;
    pool.close().await;
    Ok(reports?)
}

/// A built gateway: connected, migrated, key loaded, directory read.
#[derive(Debug)]
pub struct Gateway {
    settings: Settings,
    pool: PgPool,
    nats: async_nats::Client,
    verifier: Arc<TokenVerifier>,
    key: Arc<CheckpointKey>,
    /// The signing keys the current one replaced.
    earlier_keys: Arc<[CheckpointKey]>,
    directory: Arc<Directory>,
    upstreams: Upstreams,
    internal_tokens: InternalTokens,
    client_list: clients::ClientList,
    tls: Option<tonic::transport::ServerTlsConfig>,
}

impl Gateway {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let key = Arc::new(read_signing_key(&settings.signing_key_file)?);
        let earlier_keys: Arc<[CheckpointKey]> = earlier_keys(&settings, &[])?.into();
        let pool = esocial_kit::db::pool(
            &settings.common.database_url,
            NAME,
            "esocial-gateway",
            settings.common.database_max_connections,
        )?;
        esocial_kit::db::migrate(&pool, NAME, &MIGRATIONS).await?;
        let nats = esocial_kit::nats::connect(&settings.common.nats_url, "esocial-gateway").await?;
        let verifier = esocial_kit::identity::verifier(&settings.common.auth, AUDIENCE).await?;
        let defaults = DefaultLimits {
            requests_per_second: settings.requests_per_second_default,
            burst: settings.burst_default,
            message_bytes_max: u32::try_from(settings.common.grpc.message_bytes_max).unwrap_or(u32::MAX),
        };
        let directory = Arc::new(Directory::new(pool.clone(), defaults, settings.replicas));
        directory.reload().await?;
        let upstreams = Upstreams::new(&settings.routes, &settings.outbound_routes, settings.upstream_connections)?;
        let client_key = esocial_kit::keyfile::read_key_file(
            &settings.client_key_file,
            "gateway's system client key",
            CLIENT_KEY_FILE.name,
            "esocial sandbox-init",
        )?;
        let client_key = esocial_auth::SigningKey::from_pkcs8_pem(&client_key)
            .map_err(|error| anyhow::anyhow!("client key {}: {error}", settings.client_key_file.display()))?;
        let auth = &settings.common.auth;
        let credentials = esocial_kit::identity::ServiceTokens::new(
            &auth.identity_url,
            &auth.token_issuer,
            &settings.client_id,
            client_key,
        )?;
        let client_list = clients::ClientList::new(&auth.identity_url, credentials.clone())?;
        let internal_tokens = InternalTokens::new(&auth.identity_url, credentials)?;
        let tls = settings.tls.as_ref().map(TlsFiles::server_config).transpose()?;
        Ok(Self {
            settings,
            pool,
            nats,
            verifier,
            key,
            earlier_keys,
            directory,
            upstreams,
            internal_tokens,
            client_list,
            tls,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// What verifies the message log: the checkpoint key and the chain's
    /// secret, and those of the earlier keys configured.
    pub fn log_keys(&self) -> LogKeys {
        log_keys_of(&self.key, &self.earlier_keys)
    }

    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = Shutdown::new();
        // The relay stops after the log writer, to publish its last checkpoint.
        let relay_stop = Shutdown::new();
        let events = &self.settings.common.events;
        let relay = esocial_events::OutboxRelay::new(
            self.pool.clone(),
            async_nats::jetstream::new(self.nats.clone()),
            NAME,
            events,
        );
        let relay_task = tokio::spawn(relay.run(relay_stop.wait()));
        let housekeeping_task = tokio::spawn(esocial_kit::idempotency::purge_hourly(self.pool.clone(), stop.wait()));
        let directory_task = tokio::spawn(self.directory.clone().follow(NAME.to_owned(), stop.wait()));
        // What identity says of the members' clients, which the directory follows.
        let clients = esocial_events::EventConsumer::new(
            self.pool.clone(),
            async_nats::jetstream::new(self.nats.clone()),
            events,
            esocial_events::ConsumerSettings::new(clients::CONSUMER, clients::SUBJECTS),
        );
        let clients_task = tokio::spawn(clients.run(Arc::new(clients::IdentityClients), stop.wait()));
        // And what identity's list of them says, for the events not had.
        let client_list_task = tokio::spawn(clients::follow_identity(
            self.pool.clone(),
            self.client_list.clone(),
            self.settings.clients_read_interval,
            stop.wait(),
        ));
        let catalog = Arc::new(catalog::Catalog::learning_from(self.upstreams.routes()));
        let catalog_task = tokio::spawn(catalog.clone().follow(stop.wait()));

        let options =
            esocial_kit::db::connect_options(&self.settings.common.database_url, NAME, "esocial-gateway-log")?;
        let (log, writer): (MessageLog, LogWriter) = message_log::message_log(
            options,
            WriterSettings {
                node: self.settings.node.clone(),
                queue_capacity: self.settings.log_queue_max,
                batch_size_max: self.settings.log_batch_max,
                batch_linger: self.settings.log_linger,
                checkpoint_interval: self.settings.checkpoint_interval,
                checkpoint_entries: self.settings.checkpoint_entries,
            },
            self.key.clone(),
            self.settings.log_failure,
        );
        // Once the server has finished its calls (or its grace period is
        // over), the writer takes no more entries, writes the queued ones
        // (waiting briefly for calls cut off at the end) and signs a last
        // checkpoint. Stopping it when the server starts to drain would
        // lose the entries of the calls that end during the grace period.
        let log_stop = Shutdown::new();
        let writer_task = tokio::spawn(writer.run(log_stop.wait()));

        // Tokens given out before a key rotation still acknowledge.
        let subscriptions = Arc::new(
            self.earlier_keys
                .iter()
                .fold(
                    subscriptions::Subscriptions::new(
                        self.nats.clone(),
                        events.clone(),
                        self.settings.ack_wait,
                        self.key.derive(subscriptions::ACK_TOKEN_KEY_PURPOSE),
                        self.directory.clone(),
                    ),
                    |taking, earlier| taking.accepting(earlier.derive(subscriptions::ACK_TOKEN_KEY_PURPOSE)),
                )
                .ending_streams_at(stop.clone()),
        );
        let sweep_task = tokio::spawn(subscriptions.clone().sweep_orphaned_consumers(self.pool.clone(), stop.wait()));
        let state = Arc::new(grpc::GatewayState {
            pool: self.pool.clone(),
            directory: self.directory.clone(),
            upstreams: self.upstreams.clone(),
            catalog: catalog.clone(),
            subscriptions: subscriptions.clone(),
            log_keys: self.log_keys(),
            checkpoint_copies: verify::CheckpointCopies::new(self.nats.clone(), events.clone()),
            search_body_bytes_max: self.settings.common.grpc.message_bytes_max / 2,
            client_list: self.client_list.clone(),
        });
        let limit = self.settings.common.grpc.message_bytes_max;
        let routes = tonic::service::Routes::new(
            GatewayAdminServiceServer::new(grpc::AdminApi(state.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            MetaServiceServer::new(grpc::MetaApi(state.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            MessageLogServiceServer::new(grpc::LogApi(state.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        )
        .add_service(
            SubscriptionServiceServer::new(grpc::SubscriptionApi(state))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit),
        );
        let log_health = log.clone();
        let door = Arc::new(
            Door::new(
                self.verifier.clone(),
                self.directory.clone(),
                (self.upstreams.clone(), catalog.clone()),
                self.settings.common.grpc.request_timeout,
                self.internal_tokens,
                log,
                HeaderValue::from_str(&self.settings.node)?,
            )
            .ending_streams_at(stop.clone()),
        );
        let auth = AuthLayer::new(self.verifier.clone(), Arc::new(policy::access_policy()));
        let mut server = GrpcServer::new(&self.settings.common.grpc, auth, SERVICE_NAMES);
        if let Some(tls) = self.tls.clone() {
            server = server.tls(tls);
        }
        let server = server
            .watch_database(self.pool.clone())
            .watch_nats(self.nats.clone())
            // A replica that refuses calls for want of its log says so.
            .watch("message log", move || log_health.accepts_calls())
            // A stream (a subscription, a bulk import) lasts as long as it
            // streams, and verifying the whole message log as long as it
            // takes; other unary calls keep the configured deadline. A
            // forwarded method the catalog does not know yet may be either:
            // the door holds it to its deadline once it knows.
            .long_running(&[VERIFY_MESSAGE_LOG])
            .long_running_when(move |path| !proxy::is_infrastructure(path) && catalog.streams(path) != Some(false))
            .serving_threads(self.settings.serving_threads.count())
            .front(proxy::front(door));
        let trigger = stop.clone();
        let result = server
            .serve(routes, listener, async move {
                shutdown.await;
                trigger.trigger();
            })
            .await;
        stop.trigger();
        log_stop.trigger();
        // Entries of the last calls are written before the pool closes.
        if tokio::time::timeout(message_log::DRAIN_TIMEOUT + Duration::from_secs(5), writer_task).await.is_err() {
            tracing::error!("the message log writer did not finish; its last entries are lost");
        }
        relay_stop.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(5), relay_task).await;
        directory_task.abort();
        let _ = tokio::time::timeout(Duration::from_secs(5), clients_task).await;
        client_list_task.abort();
        catalog_task.abort();
        housekeeping_task.abort();
        sweep_task.abort();
        self.pool.close().await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_threads_are_one_per_core_unless_set() {
        let read = |pairs: &[(&str, &str)]| {
            let env = Env::from_pairs(pairs.iter().copied());
            let mut reader = Reader::new(&env);
            let threads: ServingThreads = reader.parse(SERVING_THREADS);
            (threads, reader.finish().map_err(|error| error.to_string()))
        };
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        assert_eq!(read(&[]).0.count(), cores);
        assert_eq!(read(&[("ESOCIAL_GATEWAY_SERVING_THREADS", "cores")]).0, ServingThreads::PerCore);
        assert_eq!(read(&[("ESOCIAL_GATEWAY_SERVING_THREADS", "0")]).0.count(), 0);
        assert_eq!(read(&[("ESOCIAL_GATEWAY_SERVING_THREADS", "3")]).0.count(), 3);
        for wrong in ["-1", "257", "all"] {
            let (_, finished) = read(&[("ESOCIAL_GATEWAY_SERVING_THREADS", wrong)]);
            let problem = finished.expect_err(wrong);
            assert!(problem.contains("ESOCIAL_GATEWAY_SERVING_THREADS"), "{problem}");
        }
    }
}
