use std::time::Duration;

use esocial_identifiers::{Rnokpp, Sex};
use esocial_identity::ca::{CertificateAuthority, Issued, KeyAlgorithm};
use esocial_identity::{IdentityServer, Listeners, Settings};
use esocial_kit::config::Env;
use esocial_kit::shutdown::Shutdown;
use esocial_proto::identity::v1 as pb;
use esocial_proto::identity::v1::identity_admin_service_client::IdentityAdminServiceClient;
use esocial_proto::identity::v1::identity_service_client::IdentityServiceClient;
use esocial_testkit::{TempDir, TestDatabase, TestEvents};
use tonic::transport::Channel;

/// A person known to the test: their account id, certificate and key.
#[derive(Debug, Clone)]
pub struct Person {
    pub account_id: String,
    pub rnokpp: Rnokpp,
    pub issued: Issued,
}

pub struct TestIdentity {
    pub grpc: String,
    pub http: std::net::SocketAddr,
    pub issuer: String,
    pub authority: CertificateAuthority,
    pub admin: Person,
    pub organization_id: String,
    pub pool: sqlx::PgPool,
    /// The running service's state, for minting tokens with its own key.
    pub identity: std::sync::Arc<esocial_identity::Identity>,
    /// Held so the stream is deleted with the app.
    _events: TestEvents,
    _database: TestDatabase,
    _data: TempDir,
    shutdown: Shutdown,
}

/// RNOKPPs that differ per call, so one test can have many people.
pub fn new_rnokpp() -> Rnokpp {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    let serial = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 1000;
    let birth = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|date| date.checked_add_days(chrono::Days::new(u64::from(serial) * 11)));
    Rnokpp::compose(birth.unwrap_or_default(), serial, Sex::Female).expect("valid")
}

impl TestIdentity {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(extra_env: &[(&str, &str)]) -> Self {
        esocial_testkit::init_telemetry("esocial-identity-tests");
        let database = TestDatabase::create().await.expect("database");
        let events = TestEvents::new();
        let data = TempDir::new("identity").expect("temp dir");
        esocial_identity::sandbox::ensure_files(data.path()).expect("CA and master key");
        let authority = esocial_identity::sandbox::authority(data.path()).expect("CA");
        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("port");
        let http = http_listener.local_addr().expect("address");
        let issuer = format!("http://{http}");
        let mut env = vec![
            ("DATABASE_URL".to_owned(), database.url().to_owned()),
            ("NATS_URL".to_owned(), events.nats_url.clone()),
            ("ESOCIAL_EVENT_STREAM".to_owned(), events.settings.stream_name.clone()),
            ("ESOCIAL_EVENT_SUBJECT_PREFIX".to_owned(), events.settings.subject_prefix.clone()),
            ("ESOCIAL_DATA_DIR".to_owned(), data.path().display().to_string()),
            ("ESOCIAL_TOKEN_ISSUER".to_owned(), issuer.clone()),
            ("ESOCIAL_DATABASE_MAX_CONNECTIONS".to_owned(), "8".to_owned()),
        ];
        env.extend(extra_env.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())));
        let settings = Settings::from_env(&Env::from_pairs(env)).expect("settings");
        let server = IdentityServer::build(settings).await.expect("identity builds");

        // The deployment's first security administrator.
        let rnokpp = new_rnokpp();
        let issued = authority
            .issue_person(&rnokpp, "Адміністратор Безпеки", KeyAlgorithm::EcdsaP256, -1, 365)
            .expect("certificate");
        let organization = (
            "32855961".parse().expect("edrpou"),
            "Міністерство".to_owned(),
            "UA80000000000093317".parse().expect("katottg"),
        );
        let account = esocial_identity::bootstrap_security_admin(
            server.identity(),
            organization,
            rnokpp,
            "Адміністратор Безпеки".to_owned(),
            issued.certificate_der.clone(),
        )
        .await
        .expect("bootstrap");
        let admin = Person { account_id: account.id.to_string(), rnokpp, issued };

        let identity = server.identity().clone();
        let grpc = format!("http://{}", grpc_listener.local_addr().expect("address"));
        let shutdown = Shutdown::new();
        tokio::spawn(server.run(Listeners { grpc: grpc_listener, http: http_listener }, shutdown.wait()));
        let pool = sqlx::PgPool::connect(database.url()).await.expect("pool");
        let app = Self {
            grpc,
            http,
            issuer,
            authority,
            admin,
            organization_id: account.organization_id.to_string(),
            pool,
            identity,
            _events: events,
            _database: database,
            _data: data,
            shutdown,
        };
        app.wait_until_serving().await;
        app
    }

    async fn wait_until_serving(&self) {
        for _ in 0..100 {
            if Channel::from_shared(self.grpc.clone()).expect("uri").connect().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("identity did not start");
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.grpc.clone()).expect("uri").connect().await.expect("connects")
    }

    pub async fn client(&self) -> IdentityServiceClient<Channel> {
        IdentityServiceClient::new(self.channel().await)
    }

    /// An admin client acting with `token`.
    pub async fn admin_client(
        &self,
        token: &str,
    ) -> IdentityAdminServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>> {
        IdentityAdminServiceClient::with_interceptor(self.channel().await, Bearer(token.to_owned()))
    }

    /// Signs the administrator in and returns an access token.
    pub async fn admin_token(&self) -> String {
        self.sign_in(&self.admin.issued).await.expect("admin signs in").tokens.expect("tokens").access_token
    }

    /// Full sign-in with a certificate and key.
    pub async fn sign_in(&self, issued: &Issued) -> Result<pb::CompleteLoginResponse, tonic::Status> {
        let mut client = self.client().await;
        let challenge = client.begin_login(pb::BeginLoginRequest {}).await?.into_inner();
        let signature = sign(issued, &challenge);
        client
            .complete_login(pb::CompleteLoginRequest {
                challenge_id: challenge.challenge_id,
                certificate_chain: vec![issued.certificate_der.clone()],
                signature,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// A new person with an account in the administrator's organization, the
    /// given roles, and a registered certificate.
    pub async fn person(&self, roles: &[&str], algorithm: KeyAlgorithm) -> Person {
        let admin_token = self.admin_token().await;
        let mut admin = self.admin_client(&admin_token).await;
        let rnokpp = new_rnokpp();
        let account = admin
            .create_account(pb::CreateAccountRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                rnokpp: rnokpp.to_string(),
                full_name: "Тестова Особа".to_owned(),
                organization_id: self.organization_id.clone(),
                position: "спеціаліст".to_owned(),
                territories: vec!["UA71020010000037786".to_owned()],
            })
            .await
            .expect("account")
            .into_inner()
            .account
            .expect("account");
        if !roles.is_empty() {
            admin
                .assign_roles(pb::AssignRolesRequest {
                    request_id: uuid::Uuid::new_v4().to_string(),
                    account_id: account.id.clone(),
                    roles: roles.iter().map(|role| (*role).to_owned()).collect(),
                })
                .await
                .expect("roles");
        }
        let issued = self.authority.issue_person(&rnokpp, "Тестова Особа", algorithm, -1, 365).expect("certificate");
        admin
            .register_certificate(pb::RegisterCertificateRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                account_id: account.id.clone(),
                certificate: issued.certificate_der.clone(),
            })
            .await
            .expect("certificate registered");
        Person { account_id: account.id, rnokpp, issued }
    }

    /// The certificate id of a person's active certificate.
    pub async fn certificate_id(&self, person: &Person) -> String {
        let token = self.admin_token().await;
        let certificates = self
            .admin_client(&token)
            .await
            .list_certificates(pb::ListCertificatesRequest {
                account_id: person.account_id.clone(),
                purpose: "test".to_owned(),
            })
            .await
            .expect("certificates")
            .into_inner()
            .certificates;
        let fingerprint = esocial_identity::qes::fingerprint(&person.issued.certificate_der);
        certificates
            .into_iter()
            .find(|certificate| certificate.fingerprint == fingerprint)
            .map(|certificate| certificate.id)
            .expect("registered")
    }

    /// Reasons recorded for refused sign-ins, oldest first.
    pub async fn failure_reasons(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT reason FROM identity.login_failures ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .expect("failures")
    }
}

impl Drop for TestIdentity {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// Signs a challenge the way a person's signing tool would.
pub fn sign(issued: &Issued, challenge: &pb::BeginLoginResponse) -> Vec<u8> {
    let id = uuid::Uuid::parse_str(&challenge.challenge_id).expect("uuid");
    esocial_identity::ca::sign_with_pem_key(
        &issued.private_key_pem,
        &esocial_identity::qes::login_message(&id, &challenge.nonce),
    )
    .expect("signs")
}

#[derive(Clone)]
pub struct Bearer(pub String);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.0).parse().map_err(|_| tonic::Status::internal("token"))?,
        );
        Ok(request)
    }
}

/// The `google.rpc.ErrorInfo` reason of a refusal.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    status.get_details_error_info().map(|info| info.reason).unwrap_or_default()
}

/// The fields named by an INVALID_ARGUMENT's `google.rpc.BadRequest`.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    status
        .get_details_bad_request()
        .map(|details| details.field_violations.into_iter().map(|violation| violation.field).collect())
        .unwrap_or_default()
}

/// A token signed with the running service's own key, with any claims: what
/// the service itself could have issued (to a client registered before a
/// rule existed, say).
pub async fn mint(app: &TestIdentity, claims: &esocial_auth::Claims) -> String {
    app.identity.keys.signer().await.expect("signer").sign(claims).expect("signs")
}

pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
