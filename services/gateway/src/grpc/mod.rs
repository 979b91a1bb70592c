//! The gateway's own gRPC methods: administration, metaservices, the
//! message log and subscriptions. Handlers check the input (every problem
//! named by its field) and convert; changes are idempotent by `request_id`.

mod admin;
mod log;
mod meta;
mod subscriptions;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use esocial_auth::Caller;
use esocial_kit::{ApiError, Violations, idempotency};
use esocial_proto::common::v1 as common;
use esocial_proto::gateway::v1 as pb;
use sqlx::PgPool;
use tonic::{Request, Status};
use uuid::Uuid;

pub use admin::AdminApi;
pub use log::LogApi;
pub use meta::MetaApi;
pub use subscriptions::SubscriptionApi;

use crate::directory::{Directory, MemberEntry};
use crate::domain::{Limits, LogMode, Member, MemberStatus};
use crate::proxy::Upstreams;
use crate::verify::LogKeys;

/// What every handler reaches.
#[derive(Debug)]
pub struct GatewayState {
    pub pool: PgPool,
    pub directory: Arc<Directory>,
    pub upstreams: Upstreams,
    pub catalog: Arc<crate::catalog::Catalog>,
    pub subscriptions: Arc<crate::subscriptions::Subscriptions>,
    pub log_keys: LogKeys,
    pub checkpoint_copies: crate::verify::CheckpointCopies,
    /// The bodies a page of `SearchMessageLog` may carry: half the
    /// server's message size limit, so that the page can be sent.
    pub search_body_bytes_max: usize,
    /// Identity's list of system clients: a member is registered only with
    /// a client identity has.
    pub client_list: crate::clients::ClientList,
}

impl GatewayState {
    /// Runs a change once per request id, bound to the caller.
    async fn once<Req, Resp, Work>(
        &self,
        caller: &Caller,
        method: &str,
        request_id: Uuid,
        fingerprinted: &Req,
        work: Work,
    ) -> Result<Resp, Status>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
        Work: for<'c> AsyncFnOnce(&'c mut sqlx::PgConnection) -> Result<Resp, ApiError>,
    {
        let scope = format!("{method} {}", caller.subject);
        Ok(idempotency::run_once(&self.pool, &scope, request_id, fingerprinted, work).await?)
    }

    /// The member system the caller authenticated as. (The door turns an
    /// inactive member away before this; one suspended meanwhile is refused
    /// the same way.)
    fn member_of(&self, caller: &Caller) -> Result<Arc<MemberEntry>, Status> {
        let entry =
            esocial_auth::system_client_of(&caller.subject).and_then(|client_id| self.directory.by_client(client_id));
        match entry {
            Some(entry) if entry.is_active() => Ok(entry),
            Some(entry) => Err(crate::proxy::inactive(&entry)),
            None => Err(Status::permission_denied(format!("{} is not a registered member system", caller.subject))),
        }
    }

    /// Reloads the directory after this replica changed it, so the next
    /// call sees the change (other replicas follow their notification).
    async fn reload_directory(&self) {
        if let Err(error) = self.directory.reload().await {
            tracing::warn!(%error, "directory not reloaded after a change; the periodic reload will catch up");
        }
    }
}

fn caller_of<T>(request: &Request<T>) -> Result<Caller, Status> {
    request.extensions().get::<Caller>().cloned().ok_or_else(|| Status::unauthenticated("a bearer token is required"))
}

fn request_id(violations: &mut Violations, text: &str) -> Uuid {
    violations.check("request_id", idempotency::parse_request_id(text)).unwrap_or_default()
}

/// Ends validation: the violations as INVALID_ARGUMENT, else the value
/// (which the checks produce whenever they found nothing wrong).
fn validated<T>(violations: Violations, value: Option<T>) -> Result<T, Status> {
    violations.finish()?;
    value.ok_or_else(|| ApiError::internal(anyhow::anyhow!("a checked value is missing without a violation")).into())
}

/// Event type names, each checked (violations under `event_types[i]`),
/// sorted and without repeats.
fn event_types(violations: &mut Violations, names: &[String], max: usize) -> Vec<crate::domain::EventTypeName> {
    if names.len() > max {
        violations.add("event_types", format!("at most {max}"));
    }
    let mut event_types: Vec<crate::domain::EventTypeName> = names
        .iter()
        .enumerate()
        .filter_map(|(index, name)| {
            violations.check(&format!("event_types[{index}]"), crate::domain::EventTypeName::parse(name.trim()))
        })
        .collect();
    event_types.sort();
    event_types.dedup();
    event_types
}

pub(crate) fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn from_timestamp(
    violations: &mut Violations,
    field: &str,
    value: Option<&prost_types::Timestamp>,
) -> Option<DateTime<Utc>> {
    let value = value?;
    let converted = u32::try_from(value.nanos).ok().and_then(|nanos| DateTime::from_timestamp(value.seconds, nanos));
    if converted.is_none() {
        violations.add(field, "is not a valid time");
    }
    converted
}

fn actor(caller: &Caller) -> common::Actor {
    crate::changes::Author::from(caller).actor()
}

fn status_to_proto(status: MemberStatus) -> pb::MemberStatus {
    match status {
        MemberStatus::Active => pb::MemberStatus::Active,
        MemberStatus::Suspended => pb::MemberStatus::Suspended,
    }
}

fn log_mode_to_proto(mode: LogMode) -> pb::LogMode {
    match mode {
        LogMode::Metadata => pb::LogMode::Metadata,
        LogMode::Full => pb::LogMode::Full,
    }
}

fn limits_to_proto(limits: Limits) -> pb::Limits {
    pb::Limits {
        requests_per_second: limits.requests_per_second,
        burst: limits.burst,
        message_bytes_max: limits.message_bytes_max,
    }
}

/// A member as the admin methods and events show it; whether its system
/// client is deactivated is identity's word, read beside it
/// ([`crate::store::deactivated_clients`]).
pub(crate) fn member_to_proto(member: &Member, client_deactivated: bool) -> pb::Member {
    pb::Member {
        member_id: member.member_id.to_string(),
        name: member.name.clone(),
        client_id: member.client_id.clone(),
        status: status_to_proto(member.status).into(),
        contact: member.contact.clone(),
        limits: Some(limits_to_proto(member.limits)),
        log_mode: log_mode_to_proto(member.log_mode).into(),
        created_at: Some(timestamp(member.created_at)),
        updated_at: Some(timestamp(member.updated_at)),
        client_certificate_sha256: member
            .client_certificate
            .map(|digest| crate::message_log::hex(&digest))
            .unwrap_or_default(),
        client_deactivated,
    }
}
