//! The identity service: one catalogue of organizations, accounts,
//! certificates and system clients; sign-in with a qualified e-signature;
//! the access tokens every other service trusts, and the keys to verify them
//! (gRPC `GetJwks`, and `/.well-known/jwks.json` over HTTP).
//!
//! `Settings` → [`IdentityServer::build`] → [`IdentityServer::run`] on a gRPC
//! listener and an HTTP listener the caller bound.

mod admin;
pub use admin::bootstrap_security_admin;
pub mod ca;
mod convert;
pub mod domain;
pub mod events;
mod exchange;
mod grpc;
mod http;
pub mod keys;
mod login;
pub mod policy;
pub mod qes;
pub mod sandbox;
mod service;
mod store;
pub mod tokens;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use esocial_auth::{AuthLayer, TokenVerifier, VerifierSettings};
use esocial_kit::config::{CommonSettings, ConfigError, Env, Reader, Variable};
use esocial_kit::server::GrpcServer;
use esocial_kit::shutdown::Shutdown;
use esocial_proto::identity::v1::identity_admin_service_server::{self, IdentityAdminServiceServer};
use esocial_proto::identity::v1::identity_service_server::{self, IdentityServiceServer};
use sqlx::PgPool;
use tokio::net::TcpListener;

pub use login::IssuedTokens;
pub use service::{Error, Identity, REFUSALS_RECORDED_BURST, REFUSALS_RECORDED_PER_SECOND};
pub use tokens::TokenSettings;

pub const NAME: &str = "identity";
pub const AUDIENCE: &str = "esocial.identity";
/// The exchange gateway's audience: the tokens it brings to exchange are
/// for it.
pub const GATEWAY_AUDIENCE: &str = "esocial.gateway";

pub const LISTEN_ADDR: Variable = Variable {
    name: "ESOCIAL_IDENTITY_ADDR",
    default: "127.0.0.1:50056",
    meaning: "where the identity gRPC server listens",
};
pub const HTTP_ADDR: Variable = Variable {
    name: "ESOCIAL_IDENTITY_HTTP_ADDR",
    default: "127.0.0.1:50057",
    meaning: "where identity serves JWKS, OpenID discovery and the OAuth token endpoint over HTTP",
};
pub const TRUSTED_CAS: Variable = Variable {
    name: "ESOCIAL_IDENTITY_TRUSTED_CAS",
    default: "<data dir>/ca/ca-certificate.pem",
    meaning: "PEM bundle of the certification authorities whose certificates may sign in",
};
pub const MASTER_KEY_FILE: Variable = Variable {
    name: "ESOCIAL_IDENTITY_MASTER_KEY_FILE",
    default: "<data dir>/identity-master.key",
    meaning: "32 random bytes, base64: seals the token signing keys stored in the database",
};
pub const ACCESS_TOKEN_SECONDS: Variable = Variable {
    name: "ESOCIAL_IDENTITY_ACCESS_TOKEN_SECONDS",
    default: "900",
    meaning: "lifetime of people's access tokens",
};
pub const SERVICE_TOKEN_SECONDS: Variable = Variable {
    name: "ESOCIAL_IDENTITY_SERVICE_TOKEN_SECONDS",
    default: "600",
    meaning: "lifetime of system clients' tokens",
};
pub const REFRESH_TOKEN_SECONDS: Variable = Variable {
    name: "ESOCIAL_IDENTITY_REFRESH_TOKEN_SECONDS",
    default: "28800",
    meaning: "lifetime of a refresh token",
};
pub const SESSION_SECONDS_MAX: Variable = Variable {
    name: "ESOCIAL_IDENTITY_SESSION_SECONDS_MAX",
    default: "43200",
    meaning: "a session ends at the latest this long after sign-in",
};
pub const CHALLENGE_SECONDS: Variable = Variable {
    name: "ESOCIAL_IDENTITY_CHALLENGE_SECONDS",
    default: "120",
    meaning: "how long a sign-in nonce may be used",
};
pub const LOGIN_FAILURES_MAX: Variable = Variable {
    name: "ESOCIAL_IDENTITY_LOGIN_FAILURES_MAX",
    default: "5",
    meaning: "wrong signatures over sign-in challenges per certificate or account before more are refused for the window (a correct signature always signs in)",
};
pub const LOGIN_FAILURE_WINDOW_SECONDS: Variable = Variable {
    name: "ESOCIAL_IDENTITY_LOGIN_FAILURE_WINDOW_SECONDS",
    default: "900",
    meaning: "the window in which wrong sign-in signatures are counted",
};
pub const AUDIENCES: Variable = Variable {
    name: "ESOCIAL_IDENTITY_AUDIENCES",
    default: "esocial.classifier,esocial.registry,esocial.process,esocial.settlements,esocial.documents,esocial.identity,esocial.gateway",
    meaning: "comma-separated audiences: the services tokens are for: all of them in people's tokens and in the tokens of system clients registered without their own list; a token exchange is for one of them",
};

pub const VARIABLES: &[Variable] = &[
    LISTEN_ADDR,
    HTTP_ADDR,
    TRUSTED_CAS,
    MASTER_KEY_FILE,
    ACCESS_TOKEN_SECONDS,
    SERVICE_TOKEN_SECONDS,
    REFRESH_TOKEN_SECONDS,
    SESSION_SECONDS_MAX,
    CHALLENGE_SECONDS,
    LOGIN_FAILURES_MAX,
    LOGIN_FAILURE_WINDOW_SECONDS,
    AUDIENCES,
];

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Creates the schema and runs the migrations, nothing else.
pub async fn migrate(common: &CommonSettings) -> anyhow::Result<()> {
    Ok(esocial_kit::db::migrate_only(&common.database_url, NAME, &MIGRATIONS).await?)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub listen_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub trusted_cas: PathBuf,
    pub master_key_file: PathBuf,
    pub tokens: TokenSettings,
    pub common: CommonSettings,
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut reader = Reader::new(env);
        let listen_addr = reader.socket_addr(LISTEN_ADDR);
        let http_addr = reader.socket_addr(HTTP_ADDR);
        let seconds = |reader: &mut Reader<'_>, variable, range| Duration::from_secs(reader.number_in(variable, range));
        let access = seconds(&mut reader, ACCESS_TOKEN_SECONDS, 60..=3600);
        let service = seconds(&mut reader, SERVICE_TOKEN_SECONDS, 60..=3600);
        let refresh = seconds(&mut reader, REFRESH_TOKEN_SECONDS, 300..=604_800);
        let session = seconds(&mut reader, SESSION_SECONDS_MAX, 300..=604_800);
        let challenge = seconds(&mut reader, CHALLENGE_SECONDS, 10..=600);
        let failures = reader.number_in(LOGIN_FAILURES_MAX, 1..=100);
        let window = seconds(&mut reader, LOGIN_FAILURE_WINDOW_SECONDS, 60..=86_400);
        let audiences: Vec<String> = reader
            .text(AUDIENCES)
            .split(',')
            .map(str::trim)
            .filter(|audience| !audience.is_empty())
            .map(str::to_owned)
            .collect();
        if audiences.is_empty() {
            reader.problem(format!("{}: at least one audience is required", AUDIENCES.name));
        }
        let common = CommonSettings::read(&mut reader);
        // Unless set, the sandbox's files in the data directory.
        let in_data_dir = |variable: Variable, file: &str| match env.get(variable.name) {
            Some(path) => PathBuf::from(path),
            None => common.data_dir.join(file),
        };
        let trusted_cas = in_data_dir(TRUSTED_CAS, sandbox::CA_CERTIFICATE);
        let master_key_file = in_data_dir(MASTER_KEY_FILE, sandbox::MASTER_KEY);
        reader.finish()?;
        Ok(Self {
            listen_addr,
            http_addr,
            trusted_cas,
            master_key_file,
            tokens: TokenSettings {
                issuer: common.auth.token_issuer.clone(),
                audiences,
                access_token_lifetime: access,
                service_token_lifetime: service,
                refresh_token_lifetime: refresh,
                session_lifetime_max: session,
                challenge_lifetime: challenge,
                login_failures_max: i64::try_from(failures).unwrap_or(5),
                login_failure_window: window,
            },
            common,
        })
    }
}

/// A built identity service: connected, migrated, keys loaded.
#[derive(Debug)]
pub struct IdentityServer {
    settings: Settings,
    identity: Arc<Identity>,
    nats: async_nats::Client,
    verifier: Arc<TokenVerifier>,
}

/// The two listeners the identity service serves on.
#[derive(Debug)]
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
}

impl IdentityServer {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let bundle = std::fs::read_to_string(&settings.trusted_cas).map_err(|error| {
            anyhow::anyhow!(
                "cannot read the trusted CA bundle {} ({}): {error}",
                settings.trusted_cas.display(),
                TRUSTED_CAS.name
            )
        })?;
        let trusted = qes::TrustedIssuers::from_pem(&bundle)
            .map_err(|error| anyhow::anyhow!("trusted CA bundle {}: {error}", settings.trusted_cas.display()))?;
        let master = keys::MasterKey::read(&settings.master_key_file)?;
        let pool = esocial_kit::db::pool(
            &settings.common.database_url,
            NAME,
            "esocial-identity",
            settings.common.database_max_connections,
        )?;
        esocial_kit::db::migrate(&pool, NAME, &MIGRATIONS).await?;
        let nats = esocial_kit::nats::connect(&settings.common.nats_url, "esocial-identity").await?;
        let keys = Arc::new(keys::KeyStore::open(pool.clone(), master, settings.tokens.token_lifetime_max()).await?);
        let member_tokens = TokenVerifier::new(
            VerifierSettings::new(settings.tokens.issuer.clone(), GATEWAY_AUDIENCE),
            Arc::new(keys::LocalJwks(keys.clone())),
        );
        let identity = Arc::new(Identity {
            store: store::Store::new(pool),
            keys: keys.clone(),
            member_tokens,
            trusted,
            verifiers: qes::SignatureVerifiers::default(),
            settings: settings.tokens.clone(),
            refusals: esocial_kit::rate::Allowance::new(
                "refused token requests recorded",
                REFUSALS_RECORDED_PER_SECOND,
                REFUSALS_RECORDED_BURST,
            ),
        });
        // The identity service verifies its own callers with its own keys.
        let verifier = Arc::new(TokenVerifier::new(
            VerifierSettings::new(settings.tokens.issuer.clone(), AUDIENCE),
            Arc::new(keys::LocalJwks(keys)),
        ));
        tracing::info!(trusted_cas = identity.trusted.len(), "identity ready");
        Ok(Self { settings, identity, nats, verifier })
    }

    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    pub fn pool(&self) -> &PgPool {
        self.identity.store.pool()
    }

    /// Serves gRPC and HTTP and relays events until `shutdown` completes.
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = Shutdown::new();
        let pool = self.pool().clone();
        let relay = esocial_events::OutboxRelay::new(
            pool.clone(),
            async_nats::jetstream::new(self.nats.clone()),
            NAME,
            &self.settings.common.events,
        );
        let relay_task = tokio::spawn(relay.run(stop.wait()));
        let housekeeping_task = tokio::spawn(housekeeping(self.identity.clone(), stop.wait()));

        let http_stop = stop.clone();
        let http_task = tokio::spawn(
            axum::serve(listeners.http, http::router(self.identity.clone()))
                .with_graceful_shutdown(http_stop.wait())
                .into_future(),
        );

        let bytes_max = self.settings.common.grpc.message_bytes_max;
        let routes = tonic::service::Routes::new(
            IdentityServiceServer::new(grpc::IdentityApi(self.identity.clone()))
                .max_decoding_message_size(bytes_max)
                .max_encoding_message_size(bytes_max),
        )
        .add_service(
            IdentityAdminServiceServer::new(grpc::AdminApi(self.identity.clone()))
                .max_decoding_message_size(bytes_max)
                .max_encoding_message_size(bytes_max),
        );
        let auth = AuthLayer::new(self.verifier.clone(), Arc::new(policy::access_policy()));
        let server = GrpcServer::new(
            &self.settings.common.grpc,
            auth,
            &[identity_service_server::SERVICE_NAME, identity_admin_service_server::SERVICE_NAME],
        )
        .watch_database(pool.clone())
        .watch_nats(self.nats.clone());
        let trigger = stop.clone();
        let result = server
            .serve(routes, listeners.grpc, async move {
                shutdown.await;
                trigger.trigger();
            })
            .await;
        stop.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(5), relay_task).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), http_task).await;
        housekeeping_task.abort();
        pool.close().await;
        result
    }
}

/// Hourly: old idempotency keys, used challenges, seen assertion ids and
/// long-expired refresh tokens go.
async fn housekeeping(identity: Arc<Identity>, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        if let Err(error) = esocial_kit::idempotency::purge(identity.store.pool(), 24).await {
            tracing::warn!(%error, "cannot purge idempotency keys");
        }
        match identity.store.purge_expired().await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "purged expired sign-in records"),
            Err(error) => tracing::warn!(%error, "cannot purge expired sign-in records"),
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}
