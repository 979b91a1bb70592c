use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use esocial_auth::{Role, SigningKey};
use esocial_gateway::{Gateway, Settings};
use esocial_identity::sandbox::ClientSeed;
use esocial_kit::config::Env;
use esocial_kit::shutdown::Shutdown;
use esocial_proto::gateway::v1 as pb;
use esocial_proto::gateway::v1::gateway_admin_service_client::GatewayAdminServiceClient;
use esocial_proto::gateway::v1::message_log_service_client::MessageLogServiceClient;
use esocial_proto::gateway::v1::meta_service_client::MetaServiceClient;
use esocial_proto::gateway::v1::subscription_service_client::SubscriptionServiceClient;
use esocial_proto::registry::v1 as registry_pb;
use esocial_proto::registry::v1::idp_service_client::IdpServiceClient;
use esocial_proto::registry::v1::provider_service_client::ProviderServiceClient;
use esocial_proto::registry::v1::registry_service_client::RegistryServiceClient;
pub use esocial_testkit::eventually;
pub use esocial_testkit::grpc::{BearerToken, new_request_id, violated_fields};
use esocial_testkit::{TempDir, TestDatabase, TestEvents};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub type Intercepted = InterceptedService<Channel, BearerToken>;
pub type Admin = GatewayAdminServiceClient<Intercepted>;
pub type Meta = MetaServiceClient<Intercepted>;
pub type Log = MessageLogServiceClient<Intercepted>;
pub type Subscriptions = SubscriptionServiceClient<Intercepted>;
pub type Providers = ProviderServiceClient<Intercepted>;
pub type Persons = RegistryServiceClient<Intercepted>;
pub type Idp = IdpServiceClient<Intercepted>;

/// A settlement in Cherkasy oblast (Бужанка), seeded by the classifier.
pub const BUZHANKA: &str = "UA71020010010048767";
/// Member ids with valid EDRPOU check digits.
pub const DIIA: &str = "UA/GOV/32855961/diia";
pub const BANK: &str = "UA/COM/14360506/bank";

const ISSUER: &str = "http://identity.esocial.test";
/// The account of every person's token in these tests.
pub const PERSON_ACCOUNT: &str = "01938c4e-7a00-7000-8000-00000000a11c";

/// The identity service, a classifier, a registry and a gateway in front of
/// them, for one test.
pub struct TestGateway {
    pub address: SocketAddr,
    pub registry_address: SocketAddr,
    _database: TestDatabase,
    pub events: TestEvents,
    /// The identity service that issues every token and exchanges members'
    /// tokens for the gateway.
    pub identity: Arc<esocial_identity::Identity>,
    pub identity_url: String,
    /// A pool on the test database (no schema on the search path).
    pub pool: sqlx::PgPool,
    pub log_keys: esocial_gateway::verify::LogKeys,
    /// The registry behind the gateway.
    pub registry: Arc<esocial_registry::Registry>,
    shutdown: Shutdown,
    /// The gateway's own, triggered with `shutdown` or alone
    /// ([`TestGateway::stop_gateway`]), which the gateway stops at.
    gateway_shutdown: Shutdown,
    gateway_task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _files: TempDir,
    /// How clients reach a gateway that serves TLS.
    tls: Option<tonic::transport::ClientTlsConfig>,
}

impl TestGateway {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// With extra configuration (gateway variables).
    pub async fn spawn_with(extra: &[(&str, &str)]) -> Self {
        Self::spawn_on(TestEvents::default(), extra).await
    }

    /// With the event stream and NATS server of `events` (a test that
    /// starts a NATS server of its own).
    pub async fn spawn_on(events: TestEvents, extra: &[(&str, &str)]) -> Self {
        Self::spawn_full(events, extra, &[], None, None).await
    }

    /// With configuration that only the gateway gets (`gateway_only`), on
    /// top of `extra`, which every service gets.
    pub async fn spawn_with_gateway(extra: &[(&str, &str)], gateway_only: &[(&str, &str)]) -> Self {
        Self::spawn_full(TestEvents::default(), extra, gateway_only, None, None).await
    }

    /// With identity serving on `identity_listener`, so that the test
    /// knows its address before the gateway starts, and with
    /// configuration that only the gateway gets.
    pub async fn spawn_with_identity_on(
        identity_listener: tokio::net::TcpListener,
        gateway_only: &[(&str, &str)],
    ) -> Self {
        Self::spawn_full(TestEvents::default(), &[], gateway_only, Some(identity_listener), None).await
    }

    async fn spawn_full(
        events: TestEvents,
        extra: &[(&str, &str)],
        gateway_only: &[(&str, &str)],
        identity_listener: Option<tokio::net::TcpListener>,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Self {
        esocial_testkit::init_telemetry("esocial-gateway-tests");
        let database = TestDatabase::create().await.expect("test database");
        let files = TempDir::new("gateway-test").expect("temporary directory");
        esocial_identity::sandbox::ensure_files(files.path()).expect("CA and master key");
        let identity_listener = match identity_listener {
            Some(listener) => listener,
            None => tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port"),
        };
        let identity_http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let identity_url = format!("http://{}", identity_listener.local_addr().expect("address"));
        let registry_key = files.path().join("registry-signing-key.pem");
        esocial_registry::ensure_signing_key(&registry_key).expect("registry key");
        let gateway_key = files.path().join("gateway-signing-key.pem");
        esocial_gateway::ensure_signing_key(&gateway_key).expect("gateway key");
        let shutdown = Shutdown::new();
        let mut tasks = Vec::new();

        // The other state systems, simulated, behind the gateway's outbound routes.
        let simulators_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let simulators_address = simulators_listener.local_addr().expect("address");
        tasks.push(tokio::spawn(esocial_external::serve_simulators(simulators_listener, shutdown.wait())));
        let mut outbound: Vec<String> =
            esocial_external::PACKAGES.iter().map(|package| format!("{package}=http://{simulators_address}")).collect();
        // Nothing listens on port 1: an upstream that is down.
        outbound.push("esocial.identity.v1=http://127.0.0.1:1".to_owned());
        let outbound = outbound.join(",");
        let classifier_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let registry_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let registry_address = registry_listener.local_addr().expect("address");
        let classifier_address = classifier_listener.local_addr().expect("address");
        let mut pairs: Vec<(String, String)> = [
            ("DATABASE_URL", database.url()),
            ("NATS_URL", events.nats_url.as_str()),
            ("ESOCIAL_EVENT_STREAM", events.settings.stream_name.as_str()),
            ("ESOCIAL_EVENT_SUBJECT_PREFIX", events.settings.subject_prefix.as_str()),
            ("ESOCIAL_TOKEN_ISSUER", ISSUER),
            ("ESOCIAL_DATA_DIR", &files.path().display().to_string()),
            ("ESOCIAL_REGISTRY_SIGNING_KEY_FILE", &registry_key.display().to_string()),
            ("ESOCIAL_GATEWAY_SIGNING_KEY_FILE", &gateway_key.display().to_string()),
            ("ESOCIAL_SHUTDOWN_GRACE_MS", "2000"),
            ("ESOCIAL_GATEWAY_CHECKPOINT_SECONDS", "1"),
            ("ESOCIAL_GATEWAY_ACK_WAIT_SECONDS", "30"),
            (
                "ESOCIAL_GATEWAY_ROUTES",
                &format!(
                    "esocial.registry.v1=http://{registry_address},esocial.classifier.v1=http://{classifier_address}"
                ),
            ),
            ("ESOCIAL_GATEWAY_OUTBOUND_ROUTES", outbound.as_str()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        pairs.push(("ESOCIAL_IDENTITY_URL".to_owned(), identity_url.clone()));
        overridden(&mut pairs, extra);
        let mut gateway_pairs = pairs.clone();
        overridden(&mut gateway_pairs, gateway_only);
        let env = Env::from_pairs(pairs);

        // Identity first: the others verify tokens with its keys, and the
        // gateway exchanges members' tokens with its own client.
        let identity = esocial_identity::IdentityServer::build(
            esocial_identity::Settings::from_env(&env).expect("identity settings"),
        )
        .await
        .expect("identity builds");
        let identity_state = identity.identity().clone();
        let gateway_client = ClientSeed {
            client_id: esocial_gateway::CLIENT_ID_DEFAULT,
            name: "gateway",
            scopes: &[Role::Gateway],
            audiences: &[esocial_identity::AUDIENCE],
        };
        esocial_identity::sandbox::seed_system_clients(&identity_state, files.path(), &[gateway_client])
            .await
            .expect("the gateway's client");
        let listeners = esocial_identity::Listeners { grpc: identity_listener, http: identity_http_listener };
        tasks.push(tokio::spawn(identity.run(listeners, shutdown.wait())));

        let classifier = esocial_classifier::Classifier::build(
            esocial_classifier::Settings::from_env(&env).expect("classifier settings"),
        )
        .await
        .expect("classifier builds");
        classifier.seed().await.expect("classifier seed");
        tasks.push(tokio::spawn(classifier.run(classifier_listener, shutdown.wait())));

        let registry = esocial_registry::RegistryServer::build(
            esocial_registry::Settings::from_env(&env).expect("registry settings"),
        )
        .await
        .expect("registry builds");
        let registry_state = registry.registry().clone();
        tasks.push(tokio::spawn(registry.run(registry_listener, shutdown.wait())));

        let gateway = Gateway::build(Settings::from_env(&Env::from_pairs(gateway_pairs)).expect("gateway settings"))
            .await
            .expect("gateway builds");
        let log_keys = gateway.log_keys();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let address = listener.local_addr().expect("address");
        let gateway_shutdown = Shutdown::new();
        let gateway_task = tokio::spawn(gateway.run(listener, gateway_shutdown.wait()));

        let pool = sqlx::PgPool::connect(database.url()).await.expect("test pool");
        sqlx::raw_sql(include_str!("tamper.sql")).execute(&pool).await.expect("the log made writable entry by entry");
        let gateway = Self {
            address,
            registry_address,
            _database: database,
            events,
            identity: identity_state,
            identity_url,
            pool,
            log_keys,
            registry: registry_state,
            shutdown,
            gateway_shutdown,
            gateway_task: Some(gateway_task),
            tasks,
            _files: files,
            tls,
        };
        gateway.wait_for_territories().await;
        gateway.wait_until_serving().await;
        gateway
    }

    /// The gateway reports itself serving once its message log takes
    /// entries (until then it refuses calls, as it should): a test's first
    /// call must not race the log writer's start.
    async fn wait_until_serving(&self) {
        let health = tonic_health::pb::health_client::HealthClient::new(self.channel().await);
        eventually(Duration::from_secs(30), || {
            let mut health = health.clone();
            async move {
                let answer = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
                let status = answer.map_err(|error| error.to_string())?.into_inner().status;
                (status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
                    .then_some(())
                    .ok_or(format!("the gateway's health is {status}"))
            }
        })
        .await;
    }

    /// The registry knows every territorial unit once the classifier's
    /// events reached it.
    async fn wait_for_territories(&self) {
        let units: i64 =
            sqlx::query_scalar("SELECT count(*) FROM classifier.reference_entries WHERE book = 'territorial_units'")
                .fetch_one(&self.pool)
                .await
                .expect("count units");
        eventually(Duration::from_secs(30), || async move {
            let replicated = i64::try_from(self.registry.territories.len().await).expect("count");
            (replicated == units).then_some(()).ok_or(format!("the registry got {replicated} of {units} units"))
        })
        .await;
    }

    /// The gateway's signing key, as only the gateway holds it.
    pub fn signing_key(&self) -> esocial_gateway::message_log::CheckpointKey {
        let pem = std::fs::read_to_string(self._files.path().join("gateway-signing-key.pem")).expect("key file");
        esocial_gateway::message_log::CheckpointKey::from_pem(&pem).expect("gateway key")
    }

    /// A pool whose connections see the gateway's schema.
    pub async fn gateway_pool(&self) -> sqlx::PgPool {
        let options: sqlx::postgres::PgConnectOptions = self._database.url().parse().expect("database url");
        sqlx::PgPool::connect_with(options.options([("search_path", "gateway")])).await.expect("gateway pool")
    }

    pub async fn channel_to(address: SocketAddr) -> Channel {
        Channel::from_shared(format!("http://{address}"))
            .expect("uri")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connects")
    }

    pub async fn channel(&self) -> Channel {
        match &self.tls {
            Some(tls) => self.tls_channel(tls.clone()).await.expect("connects over TLS"),
            None => Self::channel_to(self.address).await,
        }
    }

    /// A gateway that serves TLS with `server` (certificate and key PEM),
    /// asking for client certificates issued by `client_ca` (PEM); clients
    /// trust `server_ca` (PEM) for the name `localhost`.
    pub async fn spawn_with_tls(server: (&str, &str), server_ca: &str, client_ca: &str) -> Self {
        let files = TempDir::new("gateway-tls").expect("temporary directory");
        let write = |name: &str, pem: &str| {
            let path = files.path().join(name);
            std::fs::write(&path, pem).expect("writes");
            path.display().to_string()
        };
        let (certificate, key, client_ca) =
            (write("server.pem", server.0), write("server-key.pem", server.1), write("client-ca.pem", client_ca));
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(server_ca))
            .domain_name("localhost");
        let gateway = Self::spawn_full(
            TestEvents::default(),
            &[
                ("ESOCIAL_GATEWAY_TLS_CERTIFICATE_FILE", &certificate),
                ("ESOCIAL_GATEWAY_TLS_KEY_FILE", &key),
                ("ESOCIAL_GATEWAY_TLS_CLIENT_CA_FILE", &client_ca),
            ],
            &[],
            None,
            Some(tls),
        )
        .await;
        drop(files);
        gateway
    }

    /// A TLS connection to the gateway with `tls` (which may carry a client
    /// certificate).
    pub async fn tls_channel(
        &self,
        tls: tonic::transport::ClientTlsConfig,
    ) -> Result<Channel, tonic::transport::Error> {
        Channel::from_shared(format!("https://{}", self.address))
            .expect("uri")
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
    }

    /// The client TLS settings of a gateway that serves TLS.
    pub fn client_tls(&self) -> tonic::transport::ClientTlsConfig {
        self.tls.clone().expect("the gateway serves TLS")
    }

    /// A member system's token, by client credentials at identity: its
    /// client (role `service`, registered on first use) has tokens good only
    /// at the gateway.
    pub async fn system_token(&self, client_id: &str) -> String {
        self.client_token(client_id, &[esocial_gateway::AUDIENCE]).await
    }

    /// The token of a system that calls the services directly (every
    /// audience), registered on first use.
    pub async fn service_token(&self, client_id: &str) -> String {
        self.client_token(client_id, &[]).await
    }

    async fn client_token(&self, client_id: &str, audiences: &[&str]) -> String {
        let key = self.register_client_for(client_id, audiences).await;
        let key = std::fs::read_to_string(key).expect("client key");
        let key = SigningKey::from_pkcs8_pem(&key).expect("client key");
        esocial_kit::identity::ServiceTokens::new(&self.identity_url, ISSUER, client_id, key)
            .expect("identity url")
            .token()
            .await
            .expect("client credentials")
    }

    /// Registers a member system's client at identity, as identity's
    /// administrator does before the gateway's registers the member; a
    /// client registered already is left as it is.
    pub async fn register_client(&self, client_id: &str) {
        self.register_client_for(client_id, &[esocial_gateway::AUDIENCE]).await;
    }

    /// The client registered if need be; the file of its private key.
    async fn register_client_for(&self, client_id: &str, audiences: &[&str]) -> std::path::PathBuf {
        let seed = ClientSeed { client_id, name: client_id, scopes: &[Role::Service], audiences };
        let mut systems = esocial_identity::sandbox::seed_system_clients(&self.identity, self._files.path(), &[seed])
            .await
            .expect("client registered");
        systems.remove(0).private_key
    }

    /// A member system's token the gateway accepts for `seconds` more,
    /// signed with identity's key as identity signs its client's (the
    /// client is registered by an earlier [`TestGateway::system_token`]):
    /// it expired a little less than the verifier's leeway for clock skew
    /// before that.
    pub async fn system_token_for(&self, client_id: &str, seconds: u64) -> String {
        let leeway = esocial_auth::VerifierSettings::new(ISSUER, esocial_gateway::AUDIENCE).leeway.as_secs();
        let mut claims = esocial_testkit::person_claims(ISSUER, esocial_gateway::AUDIENCE, &[Role::Service]);
        claims.sub = format!("client:{client_id}");
        claims.org = None;
        claims.amr = Vec::new();
        claims.exp = (claims.iat + seconds).saturating_sub(leeway);
        self.identity.keys.signer().await.expect("signer").sign(&claims).expect("signs")
    }

    /// A person's token for the gateway's own methods, signed with
    /// identity's key as a sign-in with a qualified e-signature would give.
    pub async fn person_token(&self, roles: &[Role]) -> String {
        let mut claims = esocial_testkit::person_claims(ISSUER, esocial_gateway::AUDIENCE, roles);
        claims.sub = PERSON_ACCOUNT.to_owned();
        claims.sid = Some(uuid::Uuid::now_v7().to_string());
        self.identity.keys.signer().await.expect("signer").sign(&claims).expect("signs")
    }

    pub async fn admin(&self) -> Admin {
        GatewayAdminServiceClient::with_interceptor(
            self.channel().await,
            BearerToken(Some(self.person_token(&[Role::SecurityAdmin]).await)),
        )
    }

    pub async fn auditor(&self) -> Log {
        MessageLogServiceClient::with_interceptor(
            self.channel().await,
            BearerToken(Some(self.person_token(&[Role::RegistryAuditor]).await)),
        )
    }

    pub async fn meta(&self, token: Option<String>) -> Meta {
        MetaServiceClient::with_interceptor(self.channel().await, BearerToken(token))
    }

    pub async fn subscriptions(&self, token: Option<String>) -> Subscriptions {
        SubscriptionServiceClient::with_interceptor(self.channel().await, BearerToken(token))
    }

    /// The registry's provider service, through the gateway.
    pub async fn providers(&self, token: Option<String>) -> Providers {
        ProviderServiceClient::with_interceptor(self.channel().await, BearerToken(token))
    }

    pub async fn persons(&self, token: Option<String>) -> Persons {
        RegistryServiceClient::with_interceptor(self.channel().await, BearerToken(token))
    }

    pub async fn idp(&self, token: Option<String>) -> Idp {
        IdpServiceClient::with_interceptor(self.channel().await, BearerToken(token))
    }

    /// The registry's provider service, called directly (not through the gateway).
    pub async fn providers_directly(&self, token: Option<String>) -> Providers {
        ProviderServiceClient::with_interceptor(Self::channel_to(self.registry_address).await, BearerToken(token))
    }

    /// Registers a member bound to `client_id` with these rights.
    pub async fn register_member(&self, member_id: &str, client_id: &str, limits: Option<pb::Limits>, rights: &[&str]) {
        self.register_client(client_id).await;
        let mut admin = self.admin().await;
        admin
            .register_member(pb::RegisterMemberRequest {
                request_id: new_request_id(),
                member_id: member_id.to_owned(),
                name: format!("member {client_id}"),
                client_id: client_id.to_owned(),
                contact: "ops@example.gov.ua".to_owned(),
                limits,
                log_mode: pb::LogMode::Metadata.into(),
                client_certificate_sha256: String::new(),
            })
            .await
            .expect("member registered");
        for right in rights {
            grant(&mut admin, member_id, right).await;
        }
    }

    /// Suspends a member, as its administrator does.
    pub async fn suspend(&self, member_id: &str) {
        self.admin()
            .await
            .update_member(pb::UpdateMemberRequest {
                request_id: new_request_id(),
                member_id: member_id.to_owned(),
                status: pb::MemberStatus::Suspended.into(),
                reason: "contract ended".to_owned(),
                ..Default::default()
            })
            .await
            .expect("suspended");
    }

    /// Deactivates a system client at identity, or activates it again, as
    /// identity's administrator does: the change and its event in one
    /// transaction, the event published by identity's outbox relay.
    pub async fn set_client_active(&self, client_id: &str, active: bool) {
        let mut transaction = self.identity.store.pool().begin().await.expect("transaction");
        let actor = esocial_identity::domain::Actor { subject: PERSON_ACCOUNT.to_owned(), organization: None };
        esocial_identity::Identity::set_system_client_status(&mut transaction, &actor, client_id, active)
            .await
            .expect("status set");
        transaction.commit().await.expect("committed");
    }

    /// Changes what the gateway stored behind its back, as someone with
    /// write access to its database could: `sql` with `sequences` bound as
    /// `$1`, `$2`, ….
    pub async fn tamper(&self, sql: &'static str, sequences: &[i64]) {
        let mut query = sqlx::query(sql);
        for sequence in sequences {
            query = query.bind(*sequence);
        }
        query.execute(&self.pool).await.unwrap_or_else(|error| panic!("{sql}: {error}"));
    }

    /// Publishes a checkpoint event to the stream the gateway keeps its
    /// copies in, as whoever may publish there could.
    pub async fn publish_checkpoint(&self, event: &pb::LogCheckpointed) {
        let nats = async_nats::connect(&self.events.nats_url).await.expect("nats");
        let subject =
            esocial_gateway::verify::CheckpointCopies::new(nats.clone(), self.events.settings.clone()).subject();
        async_nats::jetstream::new(nats)
            .publish(subject, prost::Message::encode_to_vec(event).into())
            .await
            .expect("published")
            .await
            .expect("stored");
    }

    /// Rows in a table of a schema.
    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    /// Where the test's event stream keeps the copies of the checkpoints.
    pub async fn checkpoint_copies(&self) -> esocial_gateway::verify::CheckpointCopies {
        let nats = async_nats::connect(&self.events.nats_url).await.expect("nats");
        esocial_gateway::verify::CheckpointCopies::new(nats, self.events.settings.clone())
    }

    /// Every checkpoint the test's event stream holds, by node.
    pub async fn witness(&self) -> esocial_gateway::verify::Witness {
        self.checkpoint_copies().await.read(&self.log_keys).await.expect("the event stream's checkpoints")
    }

    /// Waits until the message log holds at least `entries` entries.
    pub async fn wait_for_log_entries(&self, entries: i64) {
        eventually(Duration::from_secs(20), || async move {
            let stored = self.count("gateway.message_log").await;
            (stored >= entries).then_some(()).ok_or(format!("only {stored} of {entries} log entries written"))
        })
        .await;
    }

    /// Stops the services and waits (at most 10 s) until they have finished,
    /// so that their connections are closed before the database is dropped.
    /// The database stays until the `TestGateway` is dropped.
    pub async fn stop(&mut self) {
        self.shutdown.trigger();
        self.gateway_shutdown.trigger();
        let mut tasks = std::mem::take(&mut self.tasks);
        tasks.extend(self.gateway_task.take());
        let _ = tokio::time::timeout(Duration::from_secs(10), futures_util::future::join_all(tasks)).await;
    }

    /// Stops the gateway alone, as SIGTERM would, the services behind it
    /// still running, and waits (at most `within`) until it has finished:
    /// its result, or `None` if it did not finish in time.
    pub async fn stop_gateway(&mut self, within: Duration) -> Option<anyhow::Result<()>> {
        self.gateway_shutdown.trigger();
        let task = self.gateway_task.take()?;
        tokio::time::timeout(within, task).await.ok().map(|joined| joined.expect("the gateway's task"))
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.trigger();
        self.gateway_shutdown.trigger();
        for task in self.tasks.iter().chain(&self.gateway_task) {
            task.abort();
        }
    }
}

/// `pairs` with each of `overrides` in place of the pair of its name.
fn overridden(pairs: &mut Vec<(String, String)>, overrides: &[(&str, &str)]) {
    for (name, value) in overrides {
        pairs.retain(|(known, _)| known != name);
        pairs.push(((*name).to_owned(), (*value).to_owned()));
    }
}

/// The gateway's health as its health service says it now.
pub async fn serving(health: &mut tonic_health::pb::health_client::HealthClient<Channel>) -> i32 {
    let answer = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
    answer.expect("health answers").into_inner().status
}

/// Grants `member_id` the right to `method`, as its administrator does.
pub async fn grant(admin: &mut Admin, member_id: &str, method: &str) {
    admin
        .grant_access(pb::GrantAccessRequest {
            request_id: new_request_id(),
            member_id: member_id.to_owned(),
            method: method.to_owned(),
        })
        .await
        .expect("right granted");
}

/// A member as `GetMember` answers it.
pub async fn member(admin: &mut Admin, member_id: &str) -> pb::Member {
    admin
        .get_member(pb::GetMemberRequest { member_id: member_id.to_owned() })
        .await
        .expect("member")
        .into_inner()
        .member
        .expect("member")
}

/// A provider the registry accepts: a social protection body in Cherkasy oblast.
pub fn provider(name: &str, edrpou_base: u32) -> registry_pb::RegisterProviderRequest {
    let edrpou = esocial_identifiers::Edrpou::compose(edrpou_base).expect("edrpou").to_string();
    registry_pb::RegisterProviderRequest {
        request_id: new_request_id(),
        data: Some(registry_pb::ProviderData {
            section: registry_pb::ProviderSection::SocialProtectionBody.into(),
            name: name.to_owned(),
            edrpou,
            rnokpp: String::new(),
            territory: BUZHANKA.to_owned(),
            services: vec!["BIRTH_ASSISTANCE".to_owned()],
            status: registry_pb::ProviderStatus::Active.into(),
        }),
        valid_from: None,
        reason: String::new(),
    }
}
