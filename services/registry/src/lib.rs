//! The registry service: the Unified State Register of the Social Sphere.
//!
//! Persons with every version of their data, duplicates and merges, search
//! and bulk import; providers in the register's three sections and the
//! support relations between recipients and providers; internally displaced
//! persons with their e-certificates, public verification and signed shared
//! copies; signed extracts; and a record of every read of personal data.
//!
//! `Settings` → [`RegistryServer::build`] (pool, migrations, NATS, the
//! register's signing key, the territorial units replicated from the
//! classifier's events) → [`RegistryServer::run`] on a listener the caller
//! bound.

pub mod access;
mod convert;
pub mod domain;
pub mod events;
pub mod extracts;
pub mod generate;
mod grpc;
pub mod idp;
pub mod import;
mod persons;
pub mod policy;
pub mod providers;
pub mod replica;
mod service;
pub mod signing;
mod store;
pub mod validate;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use esocial_auth::{AuthLayer, TokenVerifier};
use esocial_events::{ConsumerSettings, EventConsumer};
use esocial_kit::config::{CommonSettings, ConfigError, Env, Reader, Variable};
use esocial_kit::server::GrpcServer;
use esocial_kit::shutdown::Shutdown;
use esocial_proto::registry::v1::idp_service_server::{self, IdpServiceServer};
use esocial_proto::registry::v1::provider_service_server::{self, ProviderServiceServer};
use esocial_proto::registry::v1::registry_service_server::{self, RegistryServiceServer};
use sqlx::PgPool;
use tokio::net::TcpListener;

pub use persons::SearchQuery;
pub use service::{Error, Registry};

pub const NAME: &str = "registry";
pub const AUDIENCE: &str = "esocial.registry";

pub const LISTEN_ADDR: Variable = Variable {
    name: "ESOCIAL_REGISTRY_ADDR",
    default: "127.0.0.1:50052",
    meaning: "where the registry's gRPC server listens",
};
pub const SIGNING_KEY_FILE: Variable = Variable {
    name: "ESOCIAL_REGISTRY_SIGNING_KEY_FILE",
    default: "<data dir>/registry-signing-key.pem",
    meaning: "Ed25519 private key (PKCS#8 PEM) that signs extracts and shared copies; `esocial registry signing-key` makes one",
};

pub const VARIABLES: &[Variable] = &[LISTEN_ADDR, SIGNING_KEY_FILE];

/// The streamed bulk import, exempt from the ordinary call timeout.
pub const IMPORT_METHOD: &str = "/esocial.registry.v1.RegistryService/ImportPersons";

/// The key file's name in the data directory.
pub const SIGNING_KEY_FILE_NAME: &str = "registry-signing-key.pem";

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Creates the schema and runs the migrations, nothing else.
pub async fn migrate(common: &CommonSettings) -> anyhow::Result<()> {
    Ok(esocial_kit::db::migrate_only(&common.database_url, NAME, &MIGRATIONS).await?)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub listen_addr: SocketAddr,
    pub signing_key_file: PathBuf,
    pub common: CommonSettings,
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut reader = Reader::new(env);
        let listen_addr = reader.socket_addr(LISTEN_ADDR);
        let common = CommonSettings::read(&mut reader);
        let signing_key_file = match env.get(SIGNING_KEY_FILE.name) {
            Some(path) => PathBuf::from(path),
            None => common.data_dir.join(SIGNING_KEY_FILE_NAME),
        };
        reader.finish()?;
        Ok(Self { listen_addr, signing_key_file, common })
    }
}

/// Writes a new signing key to `path` (readable by the owner only) unless
/// one is there. Returns whether it wrote one.
pub fn ensure_signing_key(path: &Path) -> anyhow::Result<bool> {
    esocial_kit::keyfile::ensure_ed25519_key_file(path)
}

fn read_signing_key(path: &Path) -> anyhow::Result<signing::RegistryKey> {
    let pem = esocial_kit::keyfile::read_key_file(
        path,
        "register's signing key",
        SIGNING_KEY_FILE.name,
        "esocial registry signing-key",
    )?;
    signing::RegistryKey::from_pem(&pem).map_err(|error| anyhow::anyhow!("signing key {}: {error}", path.display()))
}

/// A built registry: connected, migrated, key loaded.
#[derive(Debug)]
pub struct RegistryServer {
    settings: Settings,
    registry: Arc<Registry>,
    nats: async_nats::Client,
    verifier: Arc<TokenVerifier>,
}

impl RegistryServer {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let key = read_signing_key(&settings.signing_key_file)?;
        let pool = esocial_kit::db::pool(
            &settings.common.database_url,
            NAME,
            "esocial-registry",
            settings.common.database_max_connections,
        )?;
        esocial_kit::db::migrate(&pool, NAME, &MIGRATIONS).await?;
        let nats = esocial_kit::nats::connect(&settings.common.nats_url, "esocial-registry").await?;
        let verifier = esocial_kit::identity::verifier(&settings.common.auth, AUDIENCE).await?;
        let territories = replica::Territories::load(&pool).await?;
        let support_types = replica::SupportTypes::load(&pool).await?;
        tracing::info!(territorial_units = territories.len().await, key_id = key.key_id(), "registry ready");
        let registry = Arc::new(Registry { store: store::Store::new(pool), territories, support_types, key });
        Ok(Self { settings, registry, nats, verifier })
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn pool(&self) -> &PgPool {
        self.registry.store.pool()
    }

    /// Serves on `listener`, relays events and follows the classifier's
    /// territorial units until `shutdown` completes.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let pool = self.pool().clone();
        let stop = Shutdown::new();
        let jetstream = async_nats::jetstream::new(self.nats.clone());
        let events = &self.settings.common.events;
        let relay = esocial_events::OutboxRelay::new(pool.clone(), jetstream.clone(), NAME, events);
        let relay_task = tokio::spawn(relay.run(stop.wait()));
        let consumer = EventConsumer::new(
            pool.clone(),
            jetstream,
            events,
            ConsumerSettings::new(replica::CONSUMER, replica::SUBJECTS),
        );
        let handler = Arc::new(replica::ClassifierEvents {
            territories: self.registry.territories.clone(),
            support_types: self.registry.support_types.clone(),
        });
        let consumer_task = tokio::spawn(consumer.run(handler, stop.wait()));
        let housekeeping_task = tokio::spawn(esocial_kit::idempotency::purge_hourly(pool.clone(), stop.wait()));

        let limit = self.settings.common.grpc.message_bytes_max;
        let api = grpc::RegistryApi::new(self.registry.clone());
        let routes = tonic::service::Routes::new(
            RegistryServiceServer::new(api.clone()).max_decoding_message_size(limit).max_encoding_message_size(limit),
        )
        .add_service(
            ProviderServiceServer::new(api.clone()).max_decoding_message_size(limit).max_encoding_message_size(limit),
        )
        .add_service(IdpServiceServer::new(api).max_decoding_message_size(limit).max_encoding_message_size(limit));
        let auth = AuthLayer::new(self.verifier.clone(), Arc::new(policy::access_policy()));
        let server = GrpcServer::new(
            &self.settings.common.grpc,
            auth,
            &[
                registry_service_server::SERVICE_NAME,
                provider_service_server::SERVICE_NAME,
                idp_service_server::SERVICE_NAME,
            ],
        )
        .watch_database(pool.clone())
        .watch_nats(self.nats.clone())
        // A bulk import streams for as long as the file takes.
        .long_running(&[IMPORT_METHOD]);
        let trigger = stop.clone();
        let result = server
            .serve(routes, listener, async move {
                shutdown.await;
                trigger.trigger();
            })
            .await;
        stop.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(5), relay_task).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), consumer_task).await;
        housekeeping_task.abort();
        pool.close().await;
        result
    }
}
