//! `GatewayAdminService`: members, their rights, limits and entitlements.
//! Every change is one transaction with its event and its record in
//! `admin_changes`.

use std::sync::Arc;

use chrono::Utc;
use esocial_kit::paging::{PageStart, finish_page, page_from_proto};
use esocial_kit::{ApiError, Violations};
use esocial_proto::gateway::v1 as pb;
use esocial_proto::gateway::v1::gateway_admin_service_server::GatewayAdminService;
use serde_json::json;
use tonic::{Request, Response, Status};

use super::{GatewayState, actor, caller_of, event_types, member_to_proto, request_id, timestamp, validated};
use crate::catalog::{self, Catalog};
use crate::changes::{self, Author, existing_member};
use crate::domain::{
    AccessRight, BURST_MAX, Limits, LogMode, MESSAGE_BYTES_MAX, Member, MemberId, MemberStatus, MethodRight,
    REQUESTS_PER_SECOND_MAX,
};
use crate::message_log::hex;
use crate::proxy::OWN_PACKAGE;
use crate::{events, store};

const NAME_LENGTH_MAX: usize = 300;
const CONTACT_LENGTH_MAX: usize = 300;
const REASON_LENGTH_MAX: usize = 1000;
const EVENT_TYPES_MAX: usize = 200;

#[derive(Debug, Clone)]
pub struct AdminApi(pub Arc<GatewayState>);

fn member_id(violations: &mut Violations, text: &str) -> Option<MemberId> {
    violations.check("member_id", MemberId::parse(text.trim()))
}

/// A system client id as the identity service defines it.
fn client_id(violations: &mut Violations, text: &str) -> String {
    let valid = (2..=100).contains(&text.len())
        && text
            .chars()
            .all(|character| character.is_ascii_lowercase() || character.is_ascii_digit() || ".-_".contains(character));
    if !valid {
        violations.add("client_id", "must be 2 to 100 lower-case letters, digits, '.', '-' or '_'");
    }
    text.to_owned()
}

fn limits(violations: &mut Violations, limits: Option<&pb::Limits>) -> Limits {
    let limits = limits.cloned().unwrap_or_default();
    for (field, value, max) in [
        ("limits.requests_per_second", limits.requests_per_second, REQUESTS_PER_SECOND_MAX),
        ("limits.burst", limits.burst, BURST_MAX),
        ("limits.message_bytes_max", limits.message_bytes_max, MESSAGE_BYTES_MAX),
    ] {
        if value > max {
            violations.add(field, format!("must be at most {max} (0: the gateway's default)"));
        }
    }
    if limits.message_bytes_max != 0 && limits.message_bytes_max < 1024 {
        violations.add("limits.message_bytes_max", "must be at least 1024 (0: the gateway's default)");
    }
    Limits {
        requests_per_second: limits.requests_per_second,
        burst: limits.burst,
        message_bytes_max: limits.message_bytes_max,
    }
}

/// A client certificate fingerprint: 64 hex digits (either case), or empty
/// for none.
fn certificate_fingerprint(violations: &mut Violations, text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    match crate::message_log::from_hex(text).and_then(|digits| <[u8; 32]>::try_from(digits).ok()) {
        Some(digest) => Some(digest),
        None => {
            violations.add("client_certificate_sha256", "must be the SHA-256 of the certificate's DER: 64 hex digits");
            None
        }
    }
}

fn log_mode(violations: &mut Violations, value: i32) -> Option<LogMode> {
    match pb::LogMode::try_from(value) {
        Ok(pb::LogMode::Unspecified) => None,
        Ok(pb::LogMode::Metadata) => Some(LogMode::Metadata),
        Ok(pb::LogMode::Full) => Some(LogMode::Full),
        Err(_) => {
            violations.add("log_mode", "is not a log mode");
            None
        }
    }
}

/// An access right that names a method or service that exists (as the
/// catalog knows it, or learns it now from the service), outside the
/// gateway's own package (whose methods go by roles).
async fn method_right(catalog: &Arc<Catalog>, violations: &mut Violations, text: &str) -> Option<MethodRight> {
    let right = violations.check("method", MethodRight::parse(text.trim()))?;
    let (name, service) = match &right {
        MethodRight::Method(path) => {
            (path.as_str(), path.trim_start_matches('/').split('/').next().unwrap_or_default())
        }
        MethodRight::Service(service) => (service.as_str(), service.as_str()),
    };
    if !catalog.learn_exists(name, std::time::Duration::ZERO).await {
        violations.add("method", "no such gRPC method or service");
        return None;
    }
    if catalog::package_of(service) == OWN_PACKAGE {
        violations.add("method", "the gateway's own methods are granted by role, not by access right");
        return None;
    }
    Some(right)
}

fn right_to_proto(right: &AccessRight) -> pb::AccessRight {
    pb::AccessRight {
        member_id: right.member_id.to_string(),
        method: right.right.to_text(),
        granted_at: Some(timestamp(right.granted_at)),
        granted_by: right.granted_by.clone(),
    }
}

#[tonic::async_trait]
impl GatewayAdminService for AdminApi {
    async fn register_member(
        &self,
        request: Request<pb::RegisterMemberRequest>,
    ) -> Result<Response<pb::RegisterMemberResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = request_id(&mut violations, &request.request_id);
        let member_id = member_id(&mut violations, &request.member_id);
        let name = violations.text("name", &request.name, true, NAME_LENGTH_MAX);
        let client_id = client_id(&mut violations, request.client_id.trim());
        let contact = violations.text("contact", &request.contact, false, CONTACT_LENGTH_MAX);
        let limits = limits(&mut violations, request.limits.as_ref());
        let log_mode = log_mode(&mut violations, request.log_mode).unwrap_or(LogMode::Metadata);
        let client_certificate = certificate_fingerprint(&mut violations, &request.client_certificate_sha256);
        let member_id = validated(violations, member_id)?;
        // Asked last, of a request otherwise good: it may wait for identity.
        if !crate::clients::at_identity(&self.0.pool, &self.0.client_list, &client_id).await? {
            return Err(ApiError::invalid_field("client_id", "identity has no system client with this id").into());
        }
        let now = Utc::now();
        let member = Member {
            member_id,
            name,
            client_id,
            status: MemberStatus::Active,
            contact,
            limits,
            log_mode,
            client_certificate,
            created_at: now,
            updated_at: now,
        };
        let fingerprinted = pb::RegisterMemberRequest { request_id: String::new(), ..request };
        let response = self
            .0
            .once(&caller, "RegisterMember", id, &fingerprinted, async |connection| {
                let proto = changes::register_member(connection, &Author::from(&caller), &member).await?;
                Ok(pb::RegisterMemberResponse { member: Some(proto) })
            })
            .await?;
        self.0.reload_directory().await;
        Ok(Response::new(response))
    }

    async fn update_member(
        &self,
        request: Request<pb::UpdateMemberRequest>,
    ) -> Result<Response<pb::UpdateMemberResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = request_id(&mut violations, &request.request_id);
        let member_id = member_id(&mut violations, &request.member_id);
        let name = request.name.as_deref().map(|name| violations.text("name", name, true, NAME_LENGTH_MAX));
        let contact =
            request.contact.as_deref().map(|contact| violations.text("contact", contact, false, CONTACT_LENGTH_MAX));
        let status = match pb::MemberStatus::try_from(request.status) {
            Ok(pb::MemberStatus::Unspecified) => None,
            Ok(pb::MemberStatus::Active) => Some(MemberStatus::Active),
            Ok(pb::MemberStatus::Suspended) => Some(MemberStatus::Suspended),
            Err(_) => {
                violations.add("status", "is not a member status");
                None
            }
        };
        let new_limits = request.limits.as_ref().map(|given| limits(&mut violations, Some(given)));
        let new_log_mode = log_mode(&mut violations, request.log_mode);
        let new_certificate = request
            .client_certificate_sha256
            .as_deref()
            .map(|fingerprint| certificate_fingerprint(&mut violations, fingerprint));
        let reason = violations.text("reason", &request.reason, status.is_some(), REASON_LENGTH_MAX);
        let member_id = validated(violations, member_id)?;
        let fingerprinted = pb::UpdateMemberRequest { request_id: String::new(), ..request };
        let response = self
            .0
            .once(&caller, "UpdateMember", id, &fingerprinted, async |connection| {
                let before = existing_member(connection, &member_id, true).await?;
                let mut member = before.clone();
                if let Some(name) = name {
                    member.name = name;
                }
                if let Some(contact) = contact {
                    member.contact = contact;
                }
                if let Some(status) = status {
                    member.status = status;
                }
                if let Some(limits) = new_limits {
                    member.limits = limits;
                }
                if let Some(mode) = new_log_mode {
                    member.log_mode = mode;
                }
                if let Some(certificate) = new_certificate {
                    member.client_certificate = certificate;
                }
                member.updated_at = Utc::now();
                store::update_member(connection, &member).await?;
                Author::from(&caller)
                    .record(
                    connection,
                    "UpdateMember",
                    &member_id,
                    json!({
                        "reason": reason,
                        "before": { "name": before.name, "status": before.status.as_str(), "contact": before.contact,
                                    "limits": [before.limits.requests_per_second, before.limits.burst, before.limits.message_bytes_max],
                                    "log_mode": before.log_mode.as_str(),
                                    "client_certificate_sha256": before.client_certificate.map(|digest| hex(&digest)) },
                        "after": { "name": member.name, "status": member.status.as_str(), "contact": member.contact,
                                   "limits": [member.limits.requests_per_second, member.limits.burst, member.limits.message_bytes_max],
                                   "log_mode": member.log_mode.as_str(),
                                   "client_certificate_sha256": member.client_certificate.map(|digest| hex(&digest)) },
                    }),
                )
                .await?;
                let deactivated = store::client_deactivated(connection, &member.client_id).await?;
                let proto = member_to_proto(&member, deactivated);
                let event = pb::MemberChanged { member: Some(proto.clone()), changed_by: Some(actor(&caller)), reason: reason.clone() };
                esocial_events::outbox::enqueue(connection, &events::MEMBER_UPDATED, Some(member_id.as_str()), &event).await?;
                Ok(pb::UpdateMemberResponse { member: Some(proto) })
            })
            .await?;
        self.0.reload_directory().await;
        Ok(Response::new(response))
    }

    async fn get_member(
        &self,
        request: Request<pb::GetMemberRequest>,
    ) -> Result<Response<pb::GetMemberResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let member_id = member_id(&mut violations, &request.member_id);
        let member_id = validated(violations, member_id)?;
        let mut connection = self.0.pool.acquire().await.map_err(ApiError::from)?;
        let member = existing_member(&mut connection, &member_id, false).await?;
        let rights = store::rights(&mut connection, &member_id).await.map_err(ApiError::from)?;
        let event_types = store::entitlements(&mut connection, &member_id).await.map_err(ApiError::from)?;
        let deactivated =
            store::client_deactivated(&mut connection, &member.client_id).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::GetMemberResponse {
            member: Some(member_to_proto(&member, deactivated)),
            rights: rights.iter().map(right_to_proto).collect(),
            event_types,
        }))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let page = page_from_proto(&mut violations, request.page.as_ref());
        let after = page.after::<String>(&mut violations);
        violations.finish()?;
        let mut members =
            store::members_page(&self.0.pool, after.as_deref(), page.fetch_limit()).await.map_err(ApiError::from)?;
        let page = finish_page(&mut members, &page, |last| PageStart::AfterKey(last.member_id.to_string()));
        let clients: Vec<&str> = members.iter().map(|member| member.client_id.as_str()).collect();
        let mut connection = self.0.pool.acquire().await.map_err(ApiError::from)?;
        let deactivated = store::deactivated_clients(&mut connection, &clients).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::ListMembersResponse {
            members: members
                .iter()
                .map(|member| member_to_proto(member, deactivated.contains(&member.client_id)))
                .collect(),
            page: Some(page),
        }))
    }

    async fn grant_access(
        &self,
        request: Request<pb::GrantAccessRequest>,
    ) -> Result<Response<pb::GrantAccessResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = request_id(&mut violations, &request.request_id);
        let member_id = member_id(&mut violations, &request.member_id);
        let right = method_right(&self.0.catalog, &mut violations, &request.method).await;
        let (member_id, right) = validated(violations, member_id.zip(right))?;
        let fingerprinted = pb::GrantAccessRequest { request_id: String::new(), ..request };
        let response = self
            .0
            .once(&caller, "GrantAccess", id, &fingerprinted, async |connection| {
                let granted = changes::grant_access(connection, &Author::from(&caller), &member_id, &right).await?;
                Ok(pb::GrantAccessResponse { right: Some(right_to_proto(&granted)) })
            })
            .await?;
        self.0.reload_directory().await;
        Ok(Response::new(response))
    }

    async fn revoke_access(
        &self,
        request: Request<pb::RevokeAccessRequest>,
    ) -> Result<Response<pb::RevokeAccessResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = request_id(&mut violations, &request.request_id);
        let member_id = member_id(&mut violations, &request.member_id);
        let right = violations.check("method", MethodRight::parse(request.method.trim()));
        let reason = violations.text("reason", &request.reason, true, REASON_LENGTH_MAX);
        let (member_id, right) = validated(violations, member_id.zip(right))?;
        let fingerprinted = pb::RevokeAccessRequest { request_id: String::new(), ..request };
        let response = self
            .0
            .once(&caller, "RevokeAccess", id, &fingerprinted, async |connection| {
                existing_member(connection, &member_id, true).await?;
                if !store::revoke(connection, &member_id, &right).await? {
                    return Err(ApiError::NotFound(format!("member {member_id} has no right {}", right.to_text())));
                }
                Author::from(&caller)
                    .record(
                        connection,
                        "RevokeAccess",
                        &member_id,
                        json!({ "method": right.to_text(), "reason": reason }),
                    )
                    .await?;
                let event = pb::AccessChanged {
                    member_id: member_id.to_string(),
                    method: right.to_text(),
                    changed_by: Some(actor(&caller)),
                    reason: reason.clone(),
                };
                esocial_events::outbox::enqueue(connection, &events::ACCESS_REVOKED, Some(member_id.as_str()), &event)
                    .await?;
                Ok(pb::RevokeAccessResponse {})
            })
            .await?;
        self.0.reload_directory().await;
        Ok(Response::new(response))
    }

    async fn list_access_rights(
        &self,
        request: Request<pb::ListAccessRightsRequest>,
    ) -> Result<Response<pb::ListAccessRightsResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let member_id = member_id(&mut violations, &request.member_id);
        let member_id = validated(violations, member_id)?;
        let mut connection = self.0.pool.acquire().await.map_err(ApiError::from)?;
        existing_member(&mut connection, &member_id, false).await?;
        let rights = store::rights(&mut connection, &member_id).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::ListAccessRightsResponse { rights: rights.iter().map(right_to_proto).collect() }))
    }

    async fn set_event_entitlements(
        &self,
        request: Request<pb::SetEventEntitlementsRequest>,
    ) -> Result<Response<pb::SetEventEntitlementsResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = request_id(&mut violations, &request.request_id);
        let member_id = member_id(&mut violations, &request.member_id);
        let event_types = event_types(&mut violations, &request.event_types, EVENT_TYPES_MAX);
        let member_id = validated(violations, member_id)?;
        let fingerprinted = pb::SetEventEntitlementsRequest { request_id: String::new(), ..request };
        let response = self
            .0
            .once(&caller, "SetEventEntitlements", id, &fingerprinted, async |connection| {
                let names =
                    changes::set_entitlements(connection, &Author::from(&caller), &member_id, &event_types).await?;
                Ok(pb::SetEventEntitlementsResponse { event_types: names })
            })
            .await?;
        self.0.reload_directory().await;
        Ok(Response::new(response))
    }

    async fn list_admin_changes(
        &self,
        request: Request<pb::ListAdminChangesRequest>,
    ) -> Result<Response<pb::ListAdminChangesResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let member_id =
            if request.member_id.trim().is_empty() { None } else { member_id(&mut violations, &request.member_id) };
        let page = page_from_proto(&mut violations, request.page.as_ref());
        let after = page.after::<i64>(&mut violations);
        violations.finish()?;
        let mut changes =
            store::changes(&self.0.pool, member_id.as_ref().map(MemberId::as_str), after, page.fetch_limit())
                .await
                .map_err(ApiError::from)?;
        let page = finish_page(&mut changes, &page, |(position, _)| PageStart::AfterKey(position.to_string()));
        Ok(Response::new(pb::ListAdminChangesResponse {
            changes: changes
                .iter()
                .map(|(_, change)| pb::AdminChange {
                    change_id: change.change_id.to_string(),
                    changed_at: Some(timestamp(change.changed_at)),
                    changed_by: Some(esocial_proto::common::v1::Actor {
                        subject: change.changed_by.clone(),
                        organization_edrpou: change.changed_by_edrpou.clone(),
                    }),
                    action: change.action.clone(),
                    member_id: change.member_id.clone(),
                    details: change.details.to_string(),
                })
                .collect(),
            page: Some(page),
        }))
    }
}
