//! Changes to the directory (members, their rights and entitlements), each
//! in the caller's transaction with its record in `admin_changes` and its
//! event: one implementation for the admin API and the sandbox.

use chrono::Utc;
use esocial_auth::Caller;
use esocial_kit::ApiError;
use esocial_proto::common::v1 as common;
use esocial_proto::gateway::v1 as pb;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{AccessRight, EventTypeName, Member, MemberId, MethodRight};
use crate::grpc::member_to_proto;
use crate::{events, store};

/// Who makes a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub subject: String,
    pub organization_edrpou: String,
}

impl From<&Caller> for Author {
    fn from(caller: &Caller) -> Self {
        Self {
            subject: caller.subject.clone(),
            organization_edrpou: caller.organization_edrpou.clone().unwrap_or_default(),
        }
    }
}

impl Author {
    pub fn actor(&self) -> common::Actor {
        common::Actor { subject: self.subject.clone(), organization_edrpou: self.organization_edrpou.clone() }
    }

    pub async fn record(
        &self,
        connection: &mut PgConnection,
        action: &str,
        member_id: &MemberId,
        details: serde_json::Value,
    ) -> Result<(), ApiError> {
        store::record_change(
            connection,
            &store::AdminChange {
                change_id: Uuid::now_v7(),
                changed_at: Utc::now(),
                changed_by: self.subject.clone(),
                changed_by_edrpou: self.organization_edrpou.clone(),
                action: action.to_owned(),
                member_id: member_id.to_string(),
                details,
            },
        )
        .await?;
        Ok(())
    }
}

/// The member, or NOT_FOUND.
pub async fn existing_member(
    connection: &mut PgConnection,
    member_id: &MemberId,
    for_update: bool,
) -> Result<Member, ApiError> {
    store::member(connection, member_id, for_update)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no member {member_id}")))
}

/// Registers a member; ALREADY_EXISTS for a member id or a system client
/// already registered.
pub async fn register_member(
    connection: &mut PgConnection,
    author: &Author,
    member: &Member,
) -> Result<pb::Member, ApiError> {
    if let Some(holder) = store::member_with_client(connection, &member.client_id).await? {
        return Err(ApiError::AlreadyExists(format!(
            "system client {} already belongs to member {holder}",
            member.client_id
        )));
    }
    if store::member(connection, &member.member_id, false).await?.is_some() {
        return Err(ApiError::AlreadyExists(format!("member {} is already registered", member.member_id)));
    }
    // A registration of the same member or client that committed since the
    // checks above is found by the unique keys.
    store::insert_member(connection, member).await.map_err(|error| match &error {
        sqlx::Error::Database(database) if database.is_unique_violation() => ApiError::AlreadyExists(format!(
            "member {} or system client {} was registered meanwhile",
            member.member_id, member.client_id
        )),
        _ => ApiError::from(error),
    })?;
    author
        .record(
            connection,
            "RegisterMember",
            &member.member_id,
            json!({ "name": member.name, "client_id": member.client_id, "contact": member.contact,
                    "limits": [member.limits.requests_per_second, member.limits.burst, member.limits.message_bytes_max],
                    "log_mode": member.log_mode.as_str(),
                    "client_certificate_sha256": member.client_certificate.map(|digest| crate::message_log::hex(&digest)) }),
        )
        .await?;
    // Identity may have deactivated the client before it was registered here.
    let proto = member_to_proto(member, store::client_deactivated(connection, &member.client_id).await?);
    let event =
        pb::MemberChanged { member: Some(proto.clone()), changed_by: Some(author.actor()), reason: String::new() };
    esocial_events::outbox::enqueue(connection, &events::MEMBER_REGISTERED, Some(member.member_id.as_str()), &event)
        .await?;
    Ok(proto)
}

/// Grants a right; a right the member has already is returned unchanged.
pub async fn grant_access(
    connection: &mut PgConnection,
    author: &Author,
    member_id: &MemberId,
    right: &MethodRight,
) -> Result<AccessRight, ApiError> {
    existing_member(connection, member_id, true).await?;
    let Some(granted) = store::grant(connection, member_id, right, &author.subject).await? else {
        return store::rights(connection, member_id)
            .await?
            .into_iter()
            .find(|existing| existing.right == *right)
            .ok_or_else(|| ApiError::Aborted("the right changed meanwhile; retry".to_owned()));
    };
    author.record(connection, "GrantAccess", member_id, json!({ "method": right.to_text() })).await?;
    let event = pb::AccessChanged {
        member_id: member_id.to_string(),
        method: right.to_text(),
        changed_by: Some(author.actor()),
        reason: String::new(),
    };
    esocial_events::outbox::enqueue(connection, &events::ACCESS_GRANTED, Some(member_id.as_str()), &event).await?;
    Ok(granted)
}

/// Replaces the event types a member may subscribe to; returns them.
pub async fn set_entitlements(
    connection: &mut PgConnection,
    author: &Author,
    member_id: &MemberId,
    event_types: &[EventTypeName],
) -> Result<Vec<String>, ApiError> {
    existing_member(connection, member_id, true).await?;
    let before = store::entitlements(connection, member_id).await?;
    store::set_entitlements(connection, member_id, event_types).await?;
    let names: Vec<String> = event_types.iter().map(ToString::to_string).collect();
    author.record(connection, "SetEventEntitlements", member_id, json!({ "before": before, "after": names })).await?;
    let event = pb::EventEntitlementsChanged {
        member_id: member_id.to_string(),
        event_types: names.clone(),
        changed_by: Some(author.actor()),
    };
    esocial_events::outbox::enqueue(connection, &events::ENTITLEMENTS_CHANGED, Some(member_id.as_str()), &event)
        .await?;
    Ok(names)
}
