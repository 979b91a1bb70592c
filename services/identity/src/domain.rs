//! The identity service's own types.

use chrono::{DateTime, Utc};
use esocial_auth::Role;
use esocial_identifiers::{Edrpou, Katottg, Rnokpp};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrganizationKind {
    SocialProtectionBody,
    AdministrativeServiceCentre,
    Provider,
    MinistryUnit,
    StateSystem,
}

impl OrganizationKind {
    pub const ALL: [OrganizationKind; 5] = [
        Self::SocialProtectionBody,
        Self::AdministrativeServiceCentre,
        Self::Provider,
        Self::MinistryUnit,
        Self::StateSystem,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SocialProtectionBody => "social_protection_body",
            Self::AdministrativeServiceCentre => "administrative_service_centre",
            Self::Provider => "provider",
            Self::MinistryUnit => "ministry_unit",
            Self::StateSystem => "state_system",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: Uuid,
    pub edrpou: Edrpou,
    pub name: String,
    pub kind: OrganizationKind,
    pub territory: Katottg,
    pub active: bool,
    pub version: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    Suspended,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: Uuid,
    pub rnokpp: Rnokpp,
    pub full_name: String,
    pub organization_id: Uuid,
    pub position: String,
    pub roles: Vec<Role>,
    pub territories: Vec<Katottg>,
    pub status: AccountStatus,
    pub version: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateStatus {
    Active,
    Blocked,
    Revoked,
}

impl CertificateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Blocked => "blocked",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "blocked" => Some(Self::Blocked),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    pub id: Uuid,
    pub account_id: Uuid,
    pub fingerprint: String,
    pub subject: String,
    pub issuer: String,
    pub serial_number: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub status: CertificateStatus,
    pub status_reason: String,
    pub replaces: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SystemClient {
    pub client_id: String,
    pub name: String,
    pub public_jwk: jsonwebtoken::jwk::Jwk,
    pub scopes: Vec<Role>,
    pub active: bool,
}

/// Who is making a change or reading data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub subject: String,
    pub organization: Option<String>,
}

/// A system client id: lower-case letters, digits, `.`, `-`, `_`, 2 to 100.
pub fn check_client_id(text: &str) -> Result<String, &'static str> {
    let valid = (2..=100).contains(&text.len())
        && text.starts_with(|character: char| character.is_ascii_lowercase() || character.is_ascii_digit())
        && text.chars().all(|character| {
            character.is_ascii_lowercase() || character.is_ascii_digit() || matches!(character, '.' | '-' | '_')
        });
    if valid { Ok(text.to_owned()) } else { Err("must be 2 to 100 lower-case letters, digits, `.`, `-` or `_`") }
}

/// Roles from their names, each at most once, or the first unknown name.
pub fn parse_roles(names: &[String]) -> Result<Vec<Role>, String> {
    let mut roles = Vec::with_capacity(names.len());
    for name in names {
        let role = Role::parse(name.trim()).ok_or_else(|| name.clone())?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    roles.sort_by_key(|role| role.as_str());
    Ok(roles)
}
