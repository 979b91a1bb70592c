use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use esocial_auth::{Claims, Role};
use esocial_identifiers::{Rnokpp, Sex, Unzr};
use esocial_kit::config::Env;
use esocial_kit::shutdown::Shutdown;
use esocial_proto::registry::v1 as pb;
use esocial_proto::registry::v1::idp_service_client::IdpServiceClient;
use esocial_proto::registry::v1::provider_service_client::ProviderServiceClient;
use esocial_proto::registry::v1::registry_service_client::RegistryServiceClient;
use esocial_registry::{AUDIENCE, Registry, RegistryServer, Settings};
pub use esocial_testkit::grpc::{BearerToken, date, new_request_id, violated_fields};
use esocial_testkit::{TempDir, TestDatabase, TestEvents, TestTokens};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub type Persons = RegistryServiceClient<InterceptedService<Channel, BearerToken>>;
pub type Providers = ProviderServiceClient<InterceptedService<Channel, BearerToken>>;
pub type Idp = IdpServiceClient<InterceptedService<Channel, BearerToken>>;

/// Seeded territorial units the tests use.
pub const CHERKASY_OBLAST: &str = "UA71000000000010357";
/// A settlement in Cherkasy oblast (Бужанка).
pub const BUZHANKA: &str = "UA71020010010048767";
/// A settlement in Cherkasy oblast (Звенигородка).
pub const ZVENYHORODKA: &str = "UA71020130010081908";
pub const LVIV_OBLAST: &str = "UA46000000000026241";
/// A hromada in Lviv oblast (Львівська).
pub const LVIV_HROMADA: &str = "UA46060250000025047";

/// A registry (and the classifier whose events it follows) for one test.
pub struct TestApp {
    pub address: SocketAddr,
    _database: TestDatabase,
    pub events: TestEvents,
    pub tokens: TestTokens,
    /// A pool on the test database (no schema on the search path).
    pub pool: sqlx::PgPool,
    pub registry: Arc<Registry>,
    shutdown: Shutdown,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _files: TempDir,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with_connections(8).await
    }

    /// With this many database connections for the registry (benchmarks).
    pub async fn spawn_with_connections(connections: u32) -> Self {
        esocial_testkit::init_telemetry("esocial-registry-tests");
        let database = TestDatabase::create().await.expect("test database");
        let events = TestEvents::default();
        let tokens = TestTokens::start().await.expect("test tokens");
        let files = TempDir::new("registry-test").expect("temporary directory");
        let key_file = files.path().join("registry-signing-key.pem");
        esocial_registry::ensure_signing_key(&key_file).expect("signing key");
        let env = Env::from_pairs([
            ("DATABASE_URL".to_owned(), database.url().to_owned()),
            ("NATS_URL".to_owned(), events.nats_url.clone()),
            ("ESOCIAL_EVENT_STREAM".to_owned(), events.settings.stream_name.clone()),
            ("ESOCIAL_EVENT_SUBJECT_PREFIX".to_owned(), events.settings.subject_prefix.clone()),
            ("ESOCIAL_IDENTITY_URL".to_owned(), tokens.identity_url()),
            ("ESOCIAL_TOKEN_ISSUER".to_owned(), tokens.issuer.clone()),
            ("ESOCIAL_CLASSIFIER_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("ESOCIAL_REGISTRY_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("ESOCIAL_REGISTRY_SIGNING_KEY_FILE".to_owned(), key_file.display().to_string()),
            ("ESOCIAL_SHUTDOWN_GRACE_MS".to_owned(), "2000".to_owned()),
            ("ESOCIAL_DATABASE_MAX_CONNECTIONS".to_owned(), connections.to_string()),
        ]);
        let shutdown = Shutdown::new();
        let mut tasks = Vec::new();

        // The classifier publishes the territorial units and support types
        // the registry replicates.
        let classifier_settings = esocial_classifier::Settings::from_env(&env).expect("classifier settings");
        let classifier = esocial_classifier::Classifier::build(classifier_settings).await.expect("classifier builds");
        classifier.seed().await.expect("classifier seed");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        tasks.push(tokio::spawn(classifier.run(listener, shutdown.wait())));

        let settings = Settings::from_env(&env).expect("registry settings");
        let server = RegistryServer::build(settings).await.expect("registry builds");
        let registry = server.registry().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let address = listener.local_addr().expect("address");
        tasks.push(tokio::spawn(server.run(listener, shutdown.wait())));

        let pool = sqlx::PgPool::connect(database.url()).await.expect("test pool");
        let app = Self { address, _database: database, events, tokens, pool, registry, shutdown, tasks, _files: files };
        app.wait_for_replica().await;
        app
    }

    /// Waits until the registry has every territorial unit and support type
    /// version the classifier holds.
    async fn wait_for_replica(&self) {
        let units: i64 =
            sqlx::query_scalar("SELECT count(*) FROM classifier.reference_entries WHERE book = 'territorial_units'")
                .fetch_one(&self.pool)
                .await
                .expect("count units");
        let support_versions: i64 = sqlx::query_scalar("SELECT count(*) FROM classifier.support_type_versions")
            .fetch_one(&self.pool)
            .await
            .expect("count support type versions");
        let started = Instant::now();
        loop {
            let replicated_units = i64::try_from(self.registry.territories.len().await).expect("count");
            let replicated_versions: i64 = sqlx::query_scalar("SELECT count(*) FROM registry.support_type_versions")
                .fetch_one(&self.pool)
                .await
                .expect("count replicated versions");
            if replicated_units == units && replicated_versions == support_versions {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "replica incomplete: {replicated_units}/{units} units, {replicated_versions}/{support_versions} support type versions"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.address))
            .expect("uri")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connects")
    }

    /// Claims of a caller with these roles serving these territories
    /// (national roles serve everywhere), signed in with a qualified
    /// e-signature.
    pub fn claims(&self, subject: &str, roles: &[Role], territories: &[&str]) -> Claims {
        let mut claims = self.tokens.claims(AUDIENCE, roles);
        claims.sub = subject.to_owned();
        claims.territories = territories.iter().map(|territory| (*territory).to_owned()).collect();
        claims
    }

    pub fn token(&self, subject: &str, roles: &[Role], territories: &[&str]) -> Option<String> {
        Some(self.tokens.sign(&self.claims(subject, roles, territories)))
    }

    pub async fn persons_with(&self, token: Option<String>) -> Persons {
        RegistryServiceClient::with_interceptor(self.channel().await, BearerToken(token))
    }

    pub async fn providers_with(&self, token: Option<String>) -> Providers {
        ProviderServiceClient::with_interceptor(self.channel().await, BearerToken(token))
    }

    pub async fn idp_with(&self, token: Option<String>) -> Idp {
        IdpServiceClient::with_interceptor(self.channel().await, BearerToken(token))
    }

    /// A social specialist of Cherkasy oblast.
    pub async fn cherkasy(&self) -> Persons {
        self.persons_with(self.token("cherkasy-specialist", &[Role::SocialSpecialist], &[CHERKASY_OBLAST])).await
    }

    /// A social specialist of Lviv oblast.
    pub async fn lviv(&self) -> Persons {
        self.persons_with(self.token("lviv-specialist", &[Role::SocialSpecialist], &[LVIV_OBLAST])).await
    }

    pub async fn auditor(&self) -> Persons {
        self.persons_with(self.token("auditor", &[Role::RegistryAuditor], &[])).await
    }

    /// Rows in a registry table.
    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM registry.{table}")))
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A valid person born on `birth` with identifiers made from `serial`.
pub fn person(last: &str, first: &str, birth: &str, sex: Sex, serial: u16, territory: &str) -> pb::PersonData {
    let birth_date: NaiveDate = birth.parse().expect("birth date");
    let rnokpp = Rnokpp::compose(birth_date, serial, sex).expect("rnokpp");
    let unzr = Unzr::compose(birth_date, serial).expect("unzr");
    pb::PersonData {
        rnokpp: rnokpp.to_string(),
        rnokpp_refused: false,
        unzr: unzr.to_string(),
        passport_number: String::new(),
        name: Some(pb::PersonName {
            last_name: last.to_owned(),
            first_name: first.to_owned(),
            patronymic: String::new(),
        }),
        birth_date: Some(date(birth)),
        sex: match sex {
            Sex::Male => pb::Sex::Male,
            Sex::Female => pb::Sex::Female,
        }
        .into(),
        citizenship: "UA".to_owned(),
        registered_address: Some(pb::Address {
            territory: territory.to_owned(), line: "вул. Шевченка, 1".to_owned()
        }),
        actual_address: None,
        contacts: None,
        disability: pb::Disability::None.into(),
    }
}

/// Registers a person; returns it.
pub async fn register(client: &mut Persons, data: pb::PersonData) -> pb::Person {
    client
        .register_person(pb::RegisterPersonRequest {
            request_id: new_request_id(),
            data: Some(data),
            valid_from: None,
            reason: "test".to_owned(),
            source_document: String::new(),
        })
        .await
        .expect("registered")
        .into_inner()
        .person
        .expect("person")
}

pub fn get_by_id(id: &str) -> pb::GetPersonRequest {
    pb::GetPersonRequest {
        key: Some(pb::get_person_request::Key::PersonId(id.to_owned())),
        as_of: None,
        purpose: "checking an application".to_owned(),
    }
}
