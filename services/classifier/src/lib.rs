//! The classifier service: the social support catalogue and the reference
//! books (territorial units, document types, organization types, banks,
//! relationship kinds), every entry a series of versions with validity
//! periods, answered "as of a date" over gRPC.
//!
//! `Settings` → [`Classifier::build`] (pool, migrations, NATS) →
//! [`Classifier::run`] on a listener the caller bound.

mod convert;
pub mod domain;
pub mod events;
mod grpc;
pub mod policy;
pub mod seed;
mod service;
mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use esocial_auth::{AuthLayer, TokenVerifier};
use esocial_kit::config::{CommonSettings, ConfigError, Env, Reader, Variable};
use esocial_kit::server::GrpcServer;
use esocial_kit::shutdown::Shutdown;
use esocial_proto::classifier::v1::classifier_service_server::{ClassifierServiceServer, SERVICE_NAME};
use sqlx::PgPool;
use tokio::net::TcpListener;

/// The service's name, its schema and its token audience suffix.
pub const NAME: &str = "classifier";
/// Tokens for this service carry this audience.
pub const AUDIENCE: &str = "esocial.classifier";

pub const LISTEN_ADDR: Variable = Variable {
    name: "ESOCIAL_CLASSIFIER_ADDR",
    default: "127.0.0.1:50051",
    meaning: "where the classifier's gRPC server listens",
};

/// The service's own variables (the kit's are in `esocial_kit::config::VARIABLES`).
pub const VARIABLES: &[Variable] = &[LISTEN_ADDR];

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Creates the schema and runs the migrations, nothing else.
pub async fn migrate(common: &CommonSettings) -> anyhow::Result<()> {
    Ok(esocial_kit::db::migrate_only(&common.database_url, NAME, &MIGRATIONS).await?)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub listen_addr: SocketAddr,
    pub common: CommonSettings,
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut reader = Reader::new(env);
        let listen_addr = reader.socket_addr(LISTEN_ADDR);
        let common = CommonSettings::read(&mut reader);
        reader.finish()?;
        Ok(Self { listen_addr, common })
    }
}

/// A built classifier: connected, migrated, ready to serve.
#[derive(Debug)]
pub struct Classifier {
    settings: Settings,
    pool: PgPool,
    nats: async_nats::Client,
    verifier: Arc<TokenVerifier>,
}

impl Classifier {
    /// Opens the pool, runs migrations, connects to NATS (in the background
    /// if it is down) and loads the token verification keys.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = esocial_kit::db::pool(
            &settings.common.database_url,
            NAME,
            "esocial-classifier",
            settings.common.database_max_connections,
        )?;
        esocial_kit::db::migrate(&pool, NAME, &MIGRATIONS).await?;
        let nats = esocial_kit::nats::connect(&settings.common.nats_url, "esocial-classifier").await?;
        let verifier = esocial_kit::identity::verifier(&settings.common.auth, AUDIENCE).await?;
        Ok(Self { settings, pool, nats, verifier })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Loads the seed data that is missing.
    pub async fn seed(&self) -> anyhow::Result<seed::SeedReport> {
        seed::seed(&self.pool).await
    }

    /// Serves on `listener` and relays events until `shutdown` completes.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = Shutdown::new();
        let relay = esocial_events::OutboxRelay::new(
            self.pool.clone(),
            async_nats::jetstream::new(self.nats.clone()),
            NAME,
            &self.settings.common.events,
        );
        let relay_task = tokio::spawn(relay.run(stop.wait()));
        let housekeeping_task = tokio::spawn(esocial_kit::idempotency::purge_hourly(self.pool.clone(), stop.wait()));

        let message_bytes_max = self.settings.common.grpc.message_bytes_max;
        let api = ClassifierServiceServer::new(grpc::ClassifierApi::new(store::Store::new(self.pool.clone())))
            .max_decoding_message_size(message_bytes_max)
            .max_encoding_message_size(message_bytes_max);
        let routes = tonic::service::Routes::new(api);
        let auth = AuthLayer::new(self.verifier.clone(), Arc::new(policy::access_policy()));
        let server = GrpcServer::new(&self.settings.common.grpc, auth, &[SERVICE_NAME])
            .watch_database(self.pool.clone())
            .watch_nats(self.nats.clone());
        let trigger = stop.clone();
        let result = server
            .serve(routes, listener, async move {
                shutdown.await;
                trigger.trigger();
            })
            .await;
        stop.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(5), relay_task).await;
        housekeeping_task.abort();
        self.pool.close().await;
        result
    }
}
