//! The gRPC handlers of `IdentityService` (sign-in, tokens, keys) and
//! `IdentityAdminService` (the catalogue).

use std::sync::Arc;

use esocial_auth::Caller;
use esocial_kit::idempotency;
use esocial_kit::paging::{PageStart, finish_page, page_from_proto};
use esocial_kit::{ApiError, Violations};
use esocial_proto::identity::v1 as pb;
use esocial_proto::identity::v1::identity_admin_service_server::IdentityAdminService;
use esocial_proto::identity::v1::identity_service_server::IdentityService;
use prost::Message;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::admin::AccountFields;
use crate::convert::{
    account_to_proto, certificate_to_proto, client_jwk_from_proto, client_to_proto, jwk_to_proto, kind_from_proto,
    organization_to_proto, territories, text, uuid,
};
use crate::domain::{
    AccountStatus, Actor, CLIENT_SCOPES, CertificateStatus, SystemClient, check_client_id, check_new_client_id,
    is_client_scope, is_system_only_role, parse_roles, signed_in_person,
};
use crate::login::{IssuedTokens, SIGNATURE_BYTES_MAX};
use crate::qes::CERTIFICATE_BYTES_MAX;
use crate::service::{Error, Identity};

const NAME_LENGTH_MAX: usize = 300;
const REASON_LENGTH_MAX: usize = 1000;

fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request.extensions().get::<Caller>().cloned().ok_or_else(|| Status::unauthenticated("a bearer token is required"))
}

fn tokens_to_proto(tokens: IssuedTokens) -> pb::Tokens {
    pb::Tokens {
        access_token: tokens.access_token,
        access_token_expires_in_seconds: u32::try_from(tokens.access_token_expires_in.as_secs()).unwrap_or(u32::MAX),
        refresh_token: tokens.refresh_token,
        refresh_token_expires_in_seconds: u32::try_from(tokens.refresh_token_expires_in.as_secs()).unwrap_or(u32::MAX),
        session_id: tokens.session_id.to_string(),
    }
}

fn request_id(violations: &mut Violations, text: &str) -> Option<Uuid> {
    violations.check("request_id", idempotency::parse_request_id(text))
}

/// Runs an admin change once per request id.
async fn once<Req, Resp, Work>(
    identity: &Identity,
    method: &str,
    request_id: Uuid,
    request: &Req,
    work: Work,
) -> Result<Resp, Error>
where
    Req: Message,
    Resp: Message + Default,
    Work: for<'c> AsyncFnOnce(&'c mut sqlx::PgConnection) -> Result<Resp, Error>,
{
    idempotency::run_once(identity.store.pool(), method, request_id, request, work).await
}

/// `IdentityService`.
#[derive(Debug, Clone)]
pub struct IdentityApi(pub Arc<Identity>);

#[tonic::async_trait]
impl IdentityService for IdentityApi {
    async fn begin_login(
        &self,
        _request: Request<pb::BeginLoginRequest>,
    ) -> Result<Response<pb::BeginLoginResponse>, Status> {
        let (challenge_id, nonce, expires_at) = self.0.begin_login().await?;
        Ok(Response::new(pb::BeginLoginResponse {
            challenge_id: challenge_id.to_string(),
            nonce,
            expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }))
    }

    async fn complete_login(
        &self,
        request: Request<pb::CompleteLoginRequest>,
    ) -> Result<Response<pb::CompleteLoginResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let challenge_id = uuid(&mut violations, "challenge_id", &request.challenge_id);
        if request.certificate_chain.is_empty() {
            violations.add("certificate_chain", "is required: the DER certificate, then any intermediates");
        } else if request.certificate_chain.len() > 5 {
            violations.add("certificate_chain", "must have at most 5 certificates");
        } else if request.certificate_chain.iter().any(|der| der.is_empty() || der.len() > CERTIFICATE_BYTES_MAX) {
            violations.add(
                "certificate_chain",
                format!("each certificate must be 1 to {CERTIFICATE_BYTES_MAX} bytes of DER"),
            );
        }
        if request.signature.is_empty() || request.signature.len() > SIGNATURE_BYTES_MAX {
            violations.add("signature", format!("must be 1 to {SIGNATURE_BYTES_MAX} bytes"));
        }
        violations.finish().map_err(Error::from)?;
        let challenge_id = challenge_id.ok_or_else(|| Status::invalid_argument("invalid request"))?;
        let (tokens, account) =
            self.0.complete_login(challenge_id, &request.certificate_chain, &request.signature).await?;
        Ok(Response::new(pb::CompleteLoginResponse {
            tokens: Some(tokens_to_proto(tokens)),
            account: Some(account_to_proto(&account)),
        }))
    }

    async fn refresh_session(
        &self,
        request: Request<pb::RefreshSessionRequest>,
    ) -> Result<Response<pb::RefreshSessionResponse>, Status> {
        let request = request.into_inner();
        if request.refresh_token.is_empty() || request.refresh_token.len() > 200 {
            return Err(Error::from(ApiError::invalid_field("refresh_token", "is required")).into());
        }
        let tokens = self.0.refresh(&request.refresh_token).await?;
        Ok(Response::new(pb::RefreshSessionResponse { tokens: Some(tokens_to_proto(tokens)) }))
    }

    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let session_id = uuid(&mut violations, "session_id", &request.session_id);
        let reason = text(&mut violations, "reason", &request.reason, false, REASON_LENGTH_MAX);
        violations.finish().map_err(Error::from)?;
        let session_id = session_id.ok_or_else(|| Status::invalid_argument("invalid request"))?;
        self.0.revoke_session(&caller, session_id, &reason).await?;
        Ok(Response::new(pb::RevokeSessionResponse {}))
    }

    async fn issue_service_token(
        &self,
        request: Request<pb::IssueServiceTokenRequest>,
    ) -> Result<Response<pb::IssueServiceTokenResponse>, Status> {
        let request = request.into_inner();
        if request.client_assertion.is_empty() || request.client_assertion.len() > 8192 {
            return Err(Error::from(ApiError::invalid_field("client_assertion", "is required: a signed JWT")).into());
        }
        let (access_token, scopes) = self.0.issue_service_token(&request.client_assertion, &request.scopes).await?;
        Ok(Response::new(pb::IssueServiceTokenResponse {
            access_token,
            expires_in_seconds: u32::try_from(self.0.settings.service_token_lifetime.as_secs()).unwrap_or(u32::MAX),
            scopes: scopes.iter().map(|scope| scope.as_str().to_owned()).collect(),
        }))
    }

    async fn exchange_token(
        &self,
        request: Request<pb::ExchangeTokenRequest>,
    ) -> Result<Response<pb::ExchangeTokenResponse>, Status> {
        let gateway = caller(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        if request.subject_token.is_empty() || request.subject_token.len() > 8192 {
            violations.add("subject_token", "is required: a system client's access token");
        }
        if !self.0.settings.audiences.contains(&request.audience) {
            violations.add(
                "audience",
                format!("{:?} is not one of the audiences: {}", request.audience, self.0.settings.audiences.join(", ")),
            );
        }
        violations.finish().map_err(Error::from)?;
        let exchanged = self.0.exchange_token(&gateway, &request.subject_token, &request.audience).await?;
        Ok(Response::new(pb::ExchangeTokenResponse {
            access_token: exchanged.access_token,
            expires_in_seconds: u32::try_from(exchanged.expires_in_seconds).unwrap_or(u32::MAX),
            scopes: exchanged.scopes.iter().map(|scope| scope.as_str().to_owned()).collect(),
        }))
    }

    async fn get_jwks(&self, _request: Request<pb::GetJwksRequest>) -> Result<Response<pb::GetJwksResponse>, Status> {
        let published = self.0.keys.published().await.map_err(Error::from)?;
        Ok(Response::new(pb::GetJwksResponse { keys: published.keys.iter().map(jwk_to_proto).collect() }))
    }
}

/// `IdentityAdminService`.
#[derive(Debug, Clone)]
pub struct AdminApi(pub Arc<Identity>);

impl AdminApi {
    /// Who makes an administrative change: a person signed in with a
    /// qualified e-signature, in a session that is still open. A system
    /// client's token never changes the catalogue, whatever its roles.
    async fn administrator<T>(&self, request: &Request<T>) -> Result<Actor, Status> {
        let caller = caller(request)?;
        let Some((account_id, session_id)) = signed_in_person(&caller) else {
            return Err(Error::from(ApiError::PermissionDenied(
                "changes to the catalogue need a person signed in with a qualified e-signature; \
                 a system client's token cannot make them"
                    .to_owned(),
            ))
            .into());
        };
        if !self.0.store.session_is_open(session_id, account_id).await.map_err(Error::from)? {
            return Err(
                Error::from(ApiError::Unauthenticated("the session has ended; sign in again".to_owned())).into()
            );
        }
        Ok(Actor::of(&caller))
    }
}

fn account_fields(
    violations: &mut Violations,
    full_name: &str,
    organization_id: &str,
    position: &str,
    codes: &[String],
) -> Option<AccountFields> {
    let full_name = text(violations, "full_name", full_name, true, NAME_LENGTH_MAX);
    let organization_id = uuid(violations, "organization_id", organization_id);
    let position = text(violations, "position", position, false, NAME_LENGTH_MAX);
    let territories = territories(violations, "territories", codes);
    Some(AccountFields { full_name, organization_id: organization_id?, position, territories })
}

#[tonic::async_trait]
impl IdentityAdminService for AdminApi {
    async fn create_organization(
        &self,
        request: Request<pb::CreateOrganizationRequest>,
    ) -> Result<Response<pb::CreateOrganizationResponse>, Status> {
        let actor = self.administrator(&request).await?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let edrpou = violations.check("edrpou", request.edrpou.parse());
        let name = text(&mut violations, "name", &request.name, true, 500);
        let kind = kind_from_proto(request.kind);
        if kind.is_none() {
            violations.add("kind", "must name an organization kind");
        }
        let territory = violations.check("territory", request.territory.trim().parse());
        violations.finish().map_err(Error::from)?;
        let (Some(request_id), Some(edrpou), Some(kind), Some(territory)) = (request_id, edrpou, kind, territory)
        else {
            return Err(Status::invalid_argument("invalid request"));
        };
        let mut content = request.clone();
        content.request_id.clear();
        let response = once(&self.0, "CreateOrganization", request_id, &content, async |transaction| {
            let created = Identity::create_organization(transaction, &actor, edrpou, name, kind, territory).await?;
            Ok(pb::CreateOrganizationResponse { organization: Some(organization_to_proto(&created)) })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn update_organization(
        &self,
        request: Request<pb::UpdateOrganizationRequest>,
    ) -> Result<Response<pb::UpdateOrganizationResponse>, Status> {
        let actor = self.administrator(&request).await?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let id = uuid(&mut violations, "id", &request.id);
        let name = text(&mut violations, "name", &request.name, true, 500);
        let territory = violations.check("territory", request.territory.trim().parse());
        if request.expected_version == 0 {
            violations.add("expected_version", "is required: the version read");
        }
        violations.finish().map_err(Error::from)?;
        let (Some(request_id), Some(id), Some(territory)) = (request_id, id, territory) else {
            return Err(Status::invalid_argument("invalid request"));
        };
        let mut content = request.clone();
        content.request_id.clear();
        let response = once(&self.0, "UpdateOrganization", request_id, &content, async |transaction| {
            let updated = Identity::update_organization(
                transaction,
                &actor,
                id,
                request.expected_version,
                &name,
                &territory,
                request.active,
            )
            .await?;
            Ok(pb::UpdateOrganizationResponse { organization: Some(organization_to_proto(&updated)) })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn list_organizations(
        &self,
        request: Request<pb::ListOrganizationsRequest>,
    ) -> Result<Response<pb::ListOrganizationsResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let page = page_from_proto(&mut violations, request.page.as_ref());
        let after = page.after::<Uuid>(&mut violations);
        violations.finish().map_err(Error::from)?;
        let mut organizations = self.0.store.organizations(after, page.fetch_limit()).await.map_err(Error::from)?;
        let page = finish_page(&mut organizations, &page, |last| PageStart::AfterKey(last.id.to_string()));
        Ok(Response::new(pb::ListOrganizationsResponse {
            organizations: organizations.iter().map(organization_to_proto).collect(),
            page: Some(page),
        }))
    }

    async fn create_account(
        &self,
        request: Request<pb::CreateAccountRequest>,
    ) -> Result<Response<pb::CreateAccountResponse>, Status> {
        let actor = self.administrator(&request).await?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let rnokpp = violations.check("rnokpp", request.rnokpp.parse());
        let fields = account_fields(
            &mut violations,
            &request.full_name,
            &request.organization_id,
            &request.position,
            &request.territories,
        );
        violations.finish().map_err(Error::from)?;
        let (Some(request_id), Some(rnokpp), Some(fields)) = (request_id, rnokpp, fields) else {
            return Err(Status::invalid_argument("invalid request"));
        };
        let mut content = request.clone();
        content.request_id.clear();
        let response = once(&self.0, "CreateAccount", request_id, &content, async |transaction| {
            let created = Identity::create_account(transaction, &actor, rnokpp, fields).await?;
            Ok(pb::CreateAccountResponse { account: Some(account_to_proto(&created)) })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn update_account(
        &self,
        request: Request<pb::UpdateAccountRequest>,
    ) -> Result<Response<pb::UpdateAccountResponse>, Status> {
        let actor = self.administrator(&request).await?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let id = uuid(&mut violations, "id", &request.id);
        let fields = account_fields(
            &mut violations,
            &request.full_name,
            &request.organization_id,
            &request.position,
            &request.territories,
        );
        if request.expected_version == 0 {
            violations.add("expected_version", "is required: the version read");
        }
        violations.finish().map_err(Error::from)?;
        let (Some(request_id), Some(id), Some(fields)) = (request_id, id, fields) else {
            return Err(Status::invalid_argument("invalid request"));
        };
        let mut content = request.clone();
        content.request_id.clear();
        let response = once(&self.0, "UpdateAccount", request_id, &content, async |transaction| {
            let updated = Identity::update_account(transaction, &actor, id, request.expected_version, fields).await?;
            Ok(pb::UpdateAccountResponse { account: Some(account_to_proto(&updated)) })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn set_account_status(
        &self,
        request: Request<pb::SetAccountStatusRequest>,
    ) -> Result<Response<pb::SetAccountStatusResponse>, Status> {
        let actor = self.administrator(&request).await?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let id = uuid(&mut violations, "id", &request.id);
        let status = match pb::AccountStatus::try_from(request.status) {
            Ok(pb::AccountStatus::Active) => Some(AccountStatus::Active),
            Ok(pb::AccountStatus::Suspended) => Some(AccountStatus::Suspended),
            _ => {
                violations.add("status", "must be active or suspended");
                None
            }
        };
        let reason = text(&mut violations, "reason", &request.reason, true, REASON_LENGTH_MAX);
        violations.finish().map_err(Error::from)?;
        let (Some(request_id), Some(id), Some(status)) = (request_id, id, status) else {
            return Err(Status::invalid_argument("invalid request"));
        };
        let mut content = request.clone();
        content.request_id.clear();
        let response = once(&self.0, "SetAccountStatus", request_id, &content, async |transaction| {
            let (account, revoked) = Identity::set_account_status(transaction, &actor, id, status, &reason).await?;
            Ok(pb::SetAccountStatusResponse {
                account: Some(account_to_proto(&account)),
                sessions_revoked: u32::try_from(revoked).unwrap_or(u32::MAX),
            })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn assign_roles(
        &self,
        request: Request<pb::AssignRolesRequest>,
    ) -> Result<Response<pb::AssignRolesResponse>, Status> {
        let actor = self.administrator(&request).await?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let account_id = uuid(&mut violations, "account_id", &request.account_id);
        let roles = match parse_roles(&request.roles) {
            Ok(roles) if roles.iter().any(|role| is_system_only_role(*role)) => {
                violations.add("roles", "`service` is a role of systems, not of people");
                None
            }
            Ok(roles) => Some(roles),
            Err(unknown) => {
                violations.add("roles", format!("{unknown:?} is not a role"));
                None
            }
        };
        violations.finish().map_err(Error::from)?;
        let (Some(request_id), Some(account_id), Some(roles)) = (request_id, account_id, roles) else {
            return Err(Status::invalid_argument("invalid request"));
        };
        let mut content = request.clone();
        content.request_id.clear();
        let response = once(&self.0, "AssignRoles", request_id, &content, async |transaction| {
            let account = Identity::assign_roles(transaction, &actor, account_id, roles).await?;
            Ok(pb::AssignRolesResponse { account: Some(account_to_proto(&account)) })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        let actor = Actor::of(&caller(&request)?);
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = uuid(&mut violations, "id", &request.id);
        let purpose = text(&mut violations, "purpose", &request.purpose, true, REASON_LENGTH_MAX);
        violations.finish().map_err(Error::from)?;
        let id = id.ok_or_else(|| Status::invalid_argument("invalid request"))?;
        let account = self.0.read_account(&actor, id, &purpose).await?;
        Ok(Response::new(pb::GetAccountResponse { account: Some(account_to_proto(&account)) }))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        let actor = Actor::of(&caller(&request)?);
        let request = request.into_inner();
        let mut violations = Violations::new();
        let organization = if request.organization_id.is_empty() {
            None
        } else {
            uuid(&mut violations, "organization_id", &request.organization_id)
        };
        let purpose = text(&mut violations, "purpose", &request.purpose, true, REASON_LENGTH_MAX);
        let page = page_from_proto(&mut violations, request.page.as_ref());
        let after = page.after::<Uuid>(&mut violations);
        violations.finish().map_err(Error::from)?;
        let mut accounts = self.0.read_accounts(&actor, organization, after, page.fetch_limit(), &purpose).await?;
        let page = finish_page(&mut accounts, &page, |last| PageStart::AfterKey(last.id.to_string()));
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: accounts.iter().map(account_to_proto).collect(),
            page: Some(page),
        }))
    }

    async fn register_certificate(
        &self,
        request: Request<pb::RegisterCertificateRequest>,
    ) -> Result<Response<pb::RegisterCertificateResponse>, Status> {
        let actor = self.administrator(&request).await?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let account_id = uuid(&mut violations, "account_id", &request.account_id);
        if request.certificate.is_empty() || request.certificate.len() > CERTIFICATE_BYTES_MAX {
            violations.add("certificate", format!("must be 1 to {CERTIFICATE_BYTES_MAX} bytes of DER"));
        }
        violations.finish().map_err(Error::from)?;
        let (Some(request_id), Some(account_id)) = (request_id, account_id) else {
            return Err(Status::invalid_argument("invalid request"));
        };
        let mut content = request.clone();
        content.request_id.clear();
        let identity = self.0.clone();
        let der = request.certificate.clone();
        let response = once(&self.0, "RegisterCertificate", request_id, &content, async |transaction| {
            let (registered, superseded) = identity.register_certificate(transaction, &actor, account_id, der).await?;
            Ok(pb::RegisterCertificateResponse {
                certificate: Some(certificate_to_proto(&registered)),
                superseded: superseded.as_ref().map(certificate_to_proto),
            })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn set_certificate_status(
        &self,
        request: Request<pb::SetCertificateStatusRequest>,
    ) -> Result<Response<pb::SetCertificateStatusResponse>, Status> {
        let actor = self.administrator(&request).await?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let id = uuid(&mut violations, "certificate_id", &request.certificate_id);
        let status = match pb::CertificateStatus::try_from(request.status) {
            Ok(pb::CertificateStatus::Active) => Some(CertificateStatus::Active),
            Ok(pb::CertificateStatus::Blocked) => Some(CertificateStatus::Blocked),
            Ok(pb::CertificateStatus::Revoked) => Some(CertificateStatus::Revoked),
            _ => {
                violations.add("status", "must be active, blocked or revoked");
                None
            }
        };
        let reason = text(&mut violations, "reason", &request.reason, true, REASON_LENGTH_MAX);
        violations.finish().map_err(Error::from)?;
        let (Some(request_id), Some(id), Some(status)) = (request_id, id, status) else {
            return Err(Status::invalid_argument("invalid request"));
        };
        let mut content = request.clone();
        content.request_id.clear();
        let response = once(&self.0, "SetCertificateStatus", request_id, &content, async |transaction| {
            let (certificate, revoked) =
                Identity::set_certificate_status(transaction, &actor, id, status, &reason).await?;
            Ok(pb::SetCertificateStatusResponse {
                certificate: Some(certificate_to_proto(&certificate)),
                sessions_revoked: u32::try_from(revoked).unwrap_or(u32::MAX),
            })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn list_certificates(
        &self,
        request: Request<pb::ListCertificatesRequest>,
    ) -> Result<Response<pb::ListCertificatesResponse>, Status> {
        let actor = Actor::of(&caller(&request)?);
        let request = request.into_inner();
        let mut violations = Violations::new();
        let account_id = uuid(&mut violations, "account_id", &request.account_id);
        let purpose = text(&mut violations, "purpose", &request.purpose, true, REASON_LENGTH_MAX);
        violations.finish().map_err(Error::from)?;
        let account_id = account_id.ok_or_else(|| Status::invalid_argument("invalid request"))?;
        let certificates = self.0.read_certificates(&actor, account_id, &purpose).await?;
        Ok(Response::new(pb::ListCertificatesResponse {
            certificates: certificates.iter().map(certificate_to_proto).collect(),
        }))
    }

    async fn register_system_client(
        &self,
        request: Request<pb::RegisterSystemClientRequest>,
    ) -> Result<Response<pb::RegisterSystemClientResponse>, Status> {
        let actor = self.administrator(&request).await?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let client_id = violations.check("client_id", check_new_client_id(&request.client_id));
        let name = text(&mut violations, "name", &request.name, true, NAME_LENGTH_MAX);
        let public_jwk = client_jwk_from_proto(&mut violations, "public_key", request.public_key.as_ref());
        let scopes = match parse_roles(&request.scopes) {
            Ok(scopes) if scopes.is_empty() => {
                violations.add("scopes", "at least one scope (role name) is required");
                None
            }
            Ok(scopes) if !scopes.iter().all(|scope| is_client_scope(*scope)) => {
                let allowed: Vec<&str> = CLIENT_SCOPES.iter().map(|scope| scope.as_str()).collect();
                violations.add("scopes", format!("a system client may only have {}", allowed.join(" or ")));
                None
            }
            Ok(scopes) => Some(scopes),
            Err(unknown) => {
                violations.add("scopes", format!("{unknown:?} is not a role"));
                None
            }
        };
        let mut audiences: Vec<String> = Vec::with_capacity(request.audiences.len());
        for audience in &request.audiences {
            if !self.0.settings.audiences.contains(audience) {
                violations.add(
                    "audiences",
                    format!("{audience:?} is not one of the audiences: {}", self.0.settings.audiences.join(", ")),
                );
            } else if !audiences.contains(audience) {
                audiences.push(audience.clone());
            }
        }
        violations.finish().map_err(Error::from)?;
        let (Some(request_id), Some(client_id), Some(public_jwk), Some(scopes)) =
            (request_id, client_id, public_jwk, scopes)
        else {
            return Err(Status::invalid_argument("invalid request"));
        };
        let mut content = request.clone();
        content.request_id.clear();
        let client = SystemClient { client_id, name, public_jwk, scopes, active: true, audiences, version: 1 };
        let response = once(&self.0, "RegisterSystemClient", request_id, &content, async |transaction| {
            let registered = Identity::register_system_client(transaction, &actor, client).await?;
            Ok(pb::RegisterSystemClientResponse { client: Some(client_to_proto(&registered)) })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn rotate_system_client_key(
        &self,
        request: Request<pb::RotateSystemClientKeyRequest>,
    ) -> Result<Response<pb::RotateSystemClientKeyResponse>, Status> {
        let actor = self.administrator(&request).await?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let client_id = violations.check("client_id", check_client_id(&request.client_id));
        let public_jwk = client_jwk_from_proto(&mut violations, "public_key", request.public_key.as_ref());
        violations.finish().map_err(Error::from)?;
        let (Some(request_id), Some(client_id), Some(public_jwk)) = (request_id, client_id, public_jwk) else {
            return Err(Status::invalid_argument("invalid request"));
        };
        let mut content = request.clone();
        content.request_id.clear();
        let response = once(&self.0, "RotateSystemClientKey", request_id, &content, async |transaction| {
            let client = Identity::rotate_system_client_key(transaction, &actor, &client_id, &public_jwk).await?;
            Ok(pb::RotateSystemClientKeyResponse { client: Some(client_to_proto(&client)) })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn set_system_client_status(
        &self,
        request: Request<pb::SetSystemClientStatusRequest>,
    ) -> Result<Response<pb::SetSystemClientStatusResponse>, Status> {
        let actor = self.administrator(&request).await?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let client_id = violations.check("client_id", check_client_id(&request.client_id));
        violations.finish().map_err(Error::from)?;
        let (Some(request_id), Some(client_id)) = (request_id, client_id) else {
            return Err(Status::invalid_argument("invalid request"));
        };
        let mut content = request.clone();
        content.request_id.clear();
        let response = once(&self.0, "SetSystemClientStatus", request_id, &content, async |transaction| {
            let client = Identity::set_system_client_status(transaction, &actor, &client_id, request.active).await?;
            Ok(pb::SetSystemClientStatusResponse { client: Some(client_to_proto(&client)) })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn list_system_clients(
        &self,
        request: Request<pb::ListSystemClientsRequest>,
    ) -> Result<Response<pb::ListSystemClientsResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let page = page_from_proto(&mut violations, request.page.as_ref());
        let after = page.after::<String>(&mut violations);
        violations.finish().map_err(Error::from)?;
        let mut clients =
            self.0.store.system_clients(after.as_deref(), page.fetch_limit()).await.map_err(Error::from)?;
        let page = finish_page(&mut clients, &page, |last| PageStart::AfterKey(last.client_id.clone()));
        Ok(Response::new(pb::ListSystemClientsResponse {
            clients: clients.iter().map(client_to_proto).collect(),
            page: Some(page),
        }))
    }

    async fn rotate_signing_key(
        &self,
        request: Request<pb::RotateSigningKeyRequest>,
    ) -> Result<Response<pb::RotateSigningKeyResponse>, Status> {
        let actor = self.administrator(&request).await?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        violations.finish().map_err(Error::from)?;
        let request_id = request_id.ok_or_else(|| Status::invalid_argument("invalid request"))?;
        let identity = self.0.clone();
        let response = once(
            &self.0,
            "RotateSigningKey",
            request_id,
            &pb::RotateSigningKeyRequest::default(),
            async |transaction| identity.rotate_signing_key(transaction, &actor).await,
        )
        .await?;
        self.0.keys.reload().await.map_err(Error::from)?;
        Ok(Response::new(response))
    }
}
