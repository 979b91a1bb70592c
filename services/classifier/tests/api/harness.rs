use std::net::SocketAddr;
use std::time::Duration;

use esocial_auth::Role;
use esocial_classifier::{AUDIENCE, Classifier, Settings};
use esocial_kit::config::Env;
use esocial_kit::shutdown::Shutdown;
use esocial_proto::classifier::v1::classifier_service_client::ClassifierServiceClient;
use esocial_proto::common::v1 as common;
pub use esocial_testkit::grpc::{BearerToken, date, new_request_id, violated_fields};
use esocial_testkit::{TestDatabase, TestEvents, TestTokens};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub type Client = ClassifierServiceClient<InterceptedService<Channel, BearerToken>>;

/// How to start the service under test.
#[derive(Default)]
pub struct Options {
    /// Reach the database through this address (a proxy) instead of directly.
    pub database_via: Option<SocketAddr>,
    /// Use this NATS (a server the test controls) instead of the machine's.
    pub events: Option<TestEvents>,
    pub extra_env: Vec<(String, String)>,
    pub seed: bool,
}

/// A classifier running for one test.
pub struct TestApp {
    pub address: SocketAddr,
    /// Held so the database is dropped with the app.
    _database: TestDatabase,
    pub events: TestEvents,
    pub tokens: TestTokens,
    pub pool: sqlx::PgPool,
    shutdown: Shutdown,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// A seeded classifier on the machine's PostgreSQL and NATS.
    pub async fn spawn() -> Self {
        Self::spawn_with(Options { seed: true, ..Options::default() }).await
    }

    pub async fn spawn_with(options: Options) -> Self {
        esocial_testkit::init_telemetry("esocial-classifier-tests");
        let database = TestDatabase::create().await.expect("test database");
        let events = options.events.unwrap_or_default();
        let tokens = TestTokens::start().await.expect("test tokens");
        let mut env = vec![
            (
                "DATABASE_URL".to_owned(),
                options.database_via.map_or_else(|| database.url().to_owned(), |address| database.url_via(address)),
            ),
            ("NATS_URL".to_owned(), events.nats_url.clone()),
            ("ESOCIAL_EVENT_STREAM".to_owned(), events.settings.stream_name.clone()),
            ("ESOCIAL_EVENT_SUBJECT_PREFIX".to_owned(), events.settings.subject_prefix.clone()),
            ("ESOCIAL_IDENTITY_URL".to_owned(), tokens.identity_url()),
            ("ESOCIAL_TOKEN_ISSUER".to_owned(), tokens.issuer.clone()),
            ("ESOCIAL_CLASSIFIER_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("ESOCIAL_SHUTDOWN_GRACE_MS".to_owned(), "2000".to_owned()),
            ("ESOCIAL_DATABASE_MAX_CONNECTIONS".to_owned(), "5".to_owned()),
        ];
        env.extend(options.extra_env);
        let settings = Settings::from_env(&Env::from_pairs(env)).expect("valid settings");
        let classifier = Classifier::build(settings).await.expect("classifier builds");
        if options.seed {
            classifier.seed().await.expect("seed loads");
        }
        let pool = sqlx::PgPool::connect(database.url()).await.expect("test pool");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let address = listener.local_addr().expect("address");
        let shutdown = Shutdown::new();
        let task = tokio::spawn(classifier.run(listener, shutdown.wait()));
        Self { address, _database: database, events, tokens, pool, shutdown, task: Some(task) }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.address))
            .expect("uri")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connects")
    }

    pub async fn client_with(&self, token: Option<String>) -> Client {
        ClassifierServiceClient::with_interceptor(self.channel().await, BearerToken(token))
    }

    /// A client whose token has only the given roles.
    pub async fn client_as(&self, roles: &[Role]) -> Client {
        self.client_with(Some(self.tokens.token(AUDIENCE, roles))).await
    }

    /// Any authenticated caller (reads).
    pub async fn reader(&self) -> Client {
        self.client_as(&[Role::SocialSpecialist]).await
    }

    pub async fn admin(&self) -> Client {
        self.client_as(&[Role::ClassifierAdmin]).await
    }

    /// Stops the service and waits for it to finish.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.trigger();
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

pub fn open_from(text: &str) -> common::ValidityPeriod {
    common::ValidityPeriod { valid_from: Some(date(text)), valid_to: None }
}

pub fn money(kopiykas: i64) -> Option<common::Money> {
    Some(common::Money { kopiykas })
}
