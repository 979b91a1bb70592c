//! The sandbox's member systems: registered, with their rights and event
//! entitlements, through the same operations as the admin API (each change
//! recorded and published, author `esocial-sandbox`). Idempotent: a member
//! that exists is left as it is.

use chrono::Utc;

use crate::changes::{self, Author};
use crate::domain::{EventTypeName, Limits, LogMode, Member, MemberId, MemberStatus, MethodRight};
use crate::store;

/// A member system of the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxMember {
    pub member_id: String,
    pub name: String,
    pub client_id: String,
    pub rights: Vec<String>,
    pub event_types: Vec<String>,
}

const AUTHOR: &str = "esocial-sandbox";

/// Migrates the gateway's schema and registers the members that are
/// missing. Returns how many were added. A running gateway sees them at its
/// next directory reload (at once: the tables notify it).
pub async fn ensure_members(
    common: &esocial_kit::config::CommonSettings,
    members: &[SandboxMember],
) -> anyhow::Result<usize> {
    crate::migrate(common).await?;
    let pool = esocial_kit::db::pool(&common.database_url, crate::NAME, "esocial-gateway-sandbox", 1)?;
    let added = add_missing(&pool, members).await;
    pool.close().await;
    added
}

async fn add_missing(pool: &sqlx::PgPool, members: &[SandboxMember]) -> anyhow::Result<usize> {
    let author = Author { subject: AUTHOR.to_owned(), organization_edrpou: String::new() };
    let mut added = 0;
    for spec in members {
        let member_id =
            MemberId::parse(&spec.member_id).map_err(|problem| anyhow::anyhow!("{}: {problem}", spec.member_id))?;
        let rights = spec
            .rights
            .iter()
            .map(|right| MethodRight::parse(right).map_err(|problem| anyhow::anyhow!("{right}: {problem}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let event_types = spec
            .event_types
            .iter()
            .map(|name| EventTypeName::parse(name).map_err(|problem| anyhow::anyhow!("{name}: {problem}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut transaction = pool.begin().await?;
        if store::member(&mut transaction, &member_id, true).await?.is_some() {
            continue;
        }
        let now = Utc::now();
        let member = Member {
            member_id: member_id.clone(),
            name: spec.name.clone(),
            client_id: spec.client_id.clone(),
            status: MemberStatus::Active,
            contact: "sandbox".to_owned(),
            limits: Limits::default(),
            log_mode: LogMode::Full,
            client_certificate: None,
            created_at: now,
            updated_at: now,
        };
        changes::register_member(&mut transaction, &author, &member).await?;
        for right in &rights {
            changes::grant_access(&mut transaction, &author, &member_id, right).await?;
        }
        if !event_types.is_empty() {
            changes::set_entitlements(&mut transaction, &author, &member_id, &event_types).await?;
        }
        transaction.commit().await?;
        added += 1;
    }
    Ok(added)
}
