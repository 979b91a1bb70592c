use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use esocial_auth::{Audience, Claims, Role, SigningKey};
use esocial_proto::identity::v1 as pb;
use esocial_proto::identity::v1::identity_service_server::{IdentityService, IdentityServiceServer};
use tonic::{Request, Response, Status};

/// Stands in for the identity service's key publication in tests of other
/// services: a signing key, a gRPC server on port 0 answering `GetJwks` with
/// it (every other method is UNIMPLEMENTED), and tokens on demand. The
/// service under test is configured with [`TestTokens::identity_url`] exactly
/// as it would be with the real identity service.
#[derive(Debug)]
pub struct TestTokens {
    pub issuer: String,
    key: std::sync::Arc<SigningKey>,
    address: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone)]
struct PublishedKeys(std::sync::Arc<SigningKey>);

#[tonic::async_trait]
impl IdentityService for PublishedKeys {
    async fn begin_login(&self, _: Request<pb::BeginLoginRequest>) -> Result<Response<pb::BeginLoginResponse>, Status> {
        Err(Status::unimplemented("test identity publishes keys only"))
    }

    async fn complete_login(
        &self,
        _: Request<pb::CompleteLoginRequest>,
    ) -> Result<Response<pb::CompleteLoginResponse>, Status> {
        Err(Status::unimplemented("test identity publishes keys only"))
    }

    async fn refresh_session(
        &self,
        _: Request<pb::RefreshSessionRequest>,
    ) -> Result<Response<pb::RefreshSessionResponse>, Status> {
        Err(Status::unimplemented("test identity publishes keys only"))
    }

    async fn revoke_session(
        &self,
        _: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        Err(Status::unimplemented("test identity publishes keys only"))
    }

    async fn issue_service_token(
        &self,
        _: Request<pb::IssueServiceTokenRequest>,
    ) -> Result<Response<pb::IssueServiceTokenResponse>, Status> {
        Err(Status::unimplemented("test identity publishes keys only"))
    }

    async fn exchange_token(
        &self,
        _: Request<pb::ExchangeTokenRequest>,
    ) -> Result<Response<pb::ExchangeTokenResponse>, Status> {
        Err(Status::unimplemented("test identity publishes keys only"))
    }

    async fn get_jwks(&self, _: Request<pb::GetJwksRequest>) -> Result<Response<pb::GetJwksResponse>, Status> {
        let jwk = serde_json::to_value(self.0.public_jwk()).map_err(|error| Status::internal(error.to_string()))?;
        let field = |name: &str| jwk.get(name).and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
        let key = pb::Jwk {
            kid: field("kid"),
            kty: field("kty"),
            crv: field("crv"),
            x: field("x"),
            alg: field("alg"),
            r#use: field("use"),
        };
        Ok(Response::new(pb::GetJwksResponse { keys: vec![key] }))
    }
}

impl TestTokens {
    /// A key and its publication on a port of its own.
    pub async fn start() -> anyhow::Result<Self> {
        let key = std::sync::Arc::new(SigningKey::generate());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let service = IdentityServiceServer::new(PublishedKeys(key.clone()));
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        Ok(Self { issuer: "http://identity.esocial.test".to_owned(), key, address, server })
    }

    /// Where the keys are published (`ESOCIAL_IDENTITY_URL`).
    pub fn identity_url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Claims for an account with these roles, valid for 15 minutes, for
    /// `audience` (e.g. `esocial.classifier`).
    pub fn claims(&self, audience: &str, roles: &[Role]) -> Claims {
        person_claims(&self.issuer, audience, roles)
    }

    pub fn token(&self, audience: &str, roles: &[Role]) -> String {
        self.sign(&self.claims(audience, roles))
    }

    pub fn sign(&self, claims: &Claims) -> String {
        self.key.sign(claims).unwrap_or_default()
    }
}

/// The claims of a person signed in with a qualified e-signature (account
/// `test-account` of organization 32855961, no session), valid for 15
/// minutes, from `issuer` for `audience`.
pub fn person_claims(issuer: &str, audience: &str, roles: &[Role]) -> Claims {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0);
    Claims {
        iss: issuer.to_owned(),
        aud: Audience::One(audience.to_owned()),
        sub: "test-account".to_owned(),
        exp: now + 900,
        iat: now,
        nbf: None,
        jti: uuid::Uuid::new_v4().to_string(),
        roles: roles.iter().map(|role| role.as_str().to_owned()).collect(),
        org: Some("32855961".to_owned()),
        territories: Vec::new(),
        amr: vec!["qes".to_owned()],
        sid: None,
        act: None,
    }
}

impl Drop for TestTokens {
    fn drop(&mut self) {
        self.server.abort();
    }
}
