//! The registry's gRPC handlers: check the input (every problem named by
//! its field), call the registry, convert. Mutations are idempotent by
//! `request_id`; a request id is bound to the caller who used it first.

mod idp;
mod persons;
mod providers;

use std::sync::Arc;

use esocial_auth::Caller;
use esocial_kit::{ApiError, Violations, idempotency};
use esocial_proto::registry::v1 as pb;
use prost::Message;
use tonic::{Request, Status};
use uuid::Uuid;

use crate::service::{Error, Registry};

const REASON_LENGTH_MAX: usize = 2000;

#[derive(Debug, Clone)]
pub struct RegistryApi {
    registry: Arc<Registry>,
}

impl RegistryApi {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    /// Runs a mutation once per request id: a retry gets the stored
    /// response. The fingerprint is the request without its id; the id is
    /// bound to the method and the caller, so nobody else replays someone's
    /// response.
    async fn once<Req, Resp, Work>(
        &self,
        caller: &Caller,
        method: &str,
        request_id: Uuid,
        request: &Req,
        work: Work,
    ) -> Result<Resp, Status>
    where
        Req: Mutation,
        Resp: Message + Default,
        Work: for<'c> AsyncFnOnce(&'c mut sqlx::PgConnection) -> Result<Resp, Error>,
    {
        let scope = format!("{method} {}", caller.subject);
        let fingerprinted = request.without_request_id();
        Ok(idempotency::run_once(self.registry.store.pool(), &scope, request_id, &fingerprinted, work).await?)
    }
}

/// A request that changes something and carries a `request_id`.
trait Mutation: Message + Sized {
    fn without_request_id(&self) -> Self;
}

macro_rules! mutations {
    ($($request:ty),* $(,)?) => {
        $(impl Mutation for $request {
            fn without_request_id(&self) -> Self {
                Self { request_id: String::new(), ..self.clone() }
            }
        })*
    };
}

mutations!(
    pb::RegisterPersonRequest,
    pb::UpdatePersonRequest,
    pb::MergePersonsRequest,
    pb::MarkDistinctRequest,
    pb::LinkFamilyRequest,
    pb::RequestExtractRequest,
    pb::RegisterProviderRequest,
    pb::UpdateProviderRequest,
    pb::AssignSupportRequest,
    pb::ChangeSupportRequest,
    pb::RegisterIdpRequest,
    pb::DeregisterIdpRequest,
    pb::IssueIdpCertificateRequest,
    pb::RevokeIdpCertificateRequest,
    pb::CreateShareRequestRequest,
    pb::DecideShareRequestRequest,
);

fn caller_of<T>(request: &Request<T>) -> Result<Caller, Status> {
    request.extensions().get::<Caller>().cloned().ok_or_else(|| Status::unauthenticated("a bearer token is required"))
}

fn invalid(violations: Violations) -> Result<(), Status> {
    violations.finish().map_err(|error| Status::from(Error::from(error)))
}

fn request_id(violations: &mut Violations, text: &str) -> Uuid {
    violations.check("request_id", idempotency::parse_request_id(text)).unwrap_or_default()
}

fn id(violations: &mut Violations, field: &str, text: &str) -> Uuid {
    if text.trim().is_empty() {
        violations.add(field, "is required");
        return Uuid::nil();
    }
    violations.check(field, text.trim().parse::<Uuid>()).unwrap_or_default()
}

/// Free text: trimmed, without control characters, at most `max` characters.
fn text(violations: &mut Violations, field: &str, value: &str, required: bool, max: usize) -> String {
    violations.text(field, value, required, max)
}

fn reason(violations: &mut Violations, value: &str) -> String {
    text(violations, "reason", value, true, REASON_LENGTH_MAX)
}

/// Text that goes onto a printed document: letters of the scripts the
/// documents' font has, digits, spaces and common punctuation.
fn printable(violations: &mut Violations, field: &str, value: &str) {
    let printable = |character: char| {
        (character.is_alphanumeric() && u32::from(character) < 0x0530)
            || character == ' '
            || ".,;:!?()[]\"'’ʼ«»-–—/№%+&@#*_".contains(character)
    };
    if let Some(bad) = value.chars().find(|character| !printable(*character)) {
        violations.add(field, format!("contains {bad:?}, which cannot be printed on the document"));
    }
}

fn internal(error: impl Into<anyhow::Error>) -> Status {
    Status::from(Error::from(ApiError::internal(error)))
}
