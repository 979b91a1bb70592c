//! The identity service's own types.

use chrono::{DateTime, Utc};
use esocial_auth::{Caller, Role};
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
    /// The services its tokens are good for; empty: every service.
    pub audiences: Vec<String>,
    /// 1 when registered, one more with each change, in the order the
    /// changes committed (what a new client is registered with is ignored).
    pub version: i64,
}

/// Who is making a change or reading data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub subject: String,
    pub organization: Option<String>,
}

impl Actor {
    /// The caller of a request, as an actor.
    pub fn of(caller: &Caller) -> Self {
        Self { subject: caller.subject.clone(), organization: caller.organization_edrpou.clone() }
    }
}

/// What a system client may be given as scopes: the roles of systems. A
/// person's role (an administrator's above all) is never a client's, so a
/// client's token cannot stand in for a person.
pub const CLIENT_SCOPES: [Role; 3] = [Role::Integrator, Role::Service, Role::Gateway];

/// Whether a role may be a system client's scope.
pub fn is_client_scope(role: Role) -> bool {
    CLIENT_SCOPES.contains(&role)
}

/// Roles that only systems hold; an account is never given one.
pub fn is_system_only_role(role: Role) -> bool {
    matches!(role, Role::Service | Role::Gateway)
}

/// A system client id: lower-case letters, digits, `.`, `-`, `_`, 2 to 100.
/// Lookups of existing clients use this; new ones also pass
/// [`check_new_client_id`].
pub fn check_client_id(text: &str) -> Result<String, &'static str> {
    let valid = (2..=100).contains(&text.len())
        && text.starts_with(|character: char| character.is_ascii_lowercase() || character.is_ascii_digit())
        && text.chars().all(|character| {
            character.is_ascii_lowercase() || character.is_ascii_digit() || matches!(character, '.' | '-' | '_')
        });
    if valid { Ok(text.to_owned()) } else { Err("must be 2 to 100 lower-case letters, digits, `.`, `-` or `_`") }
}

/// The id of a client being registered: a valid client id that cannot be
/// mistaken for an account id (no UUID, in any of its spellings).
pub fn check_new_client_id(text: &str) -> Result<String, &'static str> {
    let client_id = check_client_id(text)?;
    if Uuid::try_parse(&client_id).is_ok() {
        return Err("must not be a UUID: account ids are UUIDs");
    }
    Ok(client_id)
}

/// The account and session of a caller who is a person signed in with a
/// qualified e-signature; `None` for system clients (and any token without
/// `amr` `qes`, a session id and an account id as subject).
pub fn signed_in_person(caller: &Caller) -> Option<(Uuid, Uuid)> {
    if !caller.used_qualified_signature() {
        return None;
    }
    let account_id = Uuid::try_parse(&caller.subject).ok()?;
    let session_id = Uuid::try_parse(caller.session_id.as_deref()?).ok()?;
    Some((account_id, session_id))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(subject: &str, methods: &[&str], session: Option<&str>) -> Caller {
        Caller {
            subject: subject.to_owned(),
            roles: vec![Role::SecurityAdmin],
            organization_edrpou: None,
            territories: Vec::new(),
            authentication_methods: methods.iter().map(|method| (*method).to_owned()).collect(),
            token_id: "jti".to_owned(),
            session_id: session.map(str::to_owned),
            actor: None,
            token_accepted_until: u64::MAX,
        }
    }

    #[test]
    fn a_new_client_id_is_never_a_uuid() {
        let account = Uuid::now_v7();
        assert!(check_new_client_id(&account.to_string()).is_err(), "hyphenated");
        assert!(check_new_client_id(&account.simple().to_string()).is_err(), "32 hex digits");
        assert_eq!(check_new_client_id("ua.gov.diia"), Ok("ua.gov.diia".to_owned()));
        assert!(check_new_client_id("Registry").is_err(), "still the client id rules");
        // Existing clients are still found by their ids, whatever they are.
        assert!(check_client_id(&account.to_string()).is_ok());
    }

    #[test]
    fn only_the_roles_of_systems_are_client_scopes_and_service_is_no_persons_role() {
        let scopes: Vec<Role> = Role::ALL.into_iter().filter(|role| is_client_scope(*role)).collect();
        assert_eq!(scopes, [Role::Integrator, Role::Service, Role::Gateway]);
        let system_only: Vec<Role> = Role::ALL.into_iter().filter(|role| is_system_only_role(*role)).collect();
        assert_eq!(system_only, [Role::Service, Role::Gateway]);
    }

    #[test]
    fn a_signed_in_person_has_qes_a_session_and_an_account_id() {
        let account = Uuid::now_v7();
        let session = Uuid::now_v7();
        let person = caller(&account.to_string(), &["qes"], Some(&session.to_string()));
        assert_eq!(signed_in_person(&person), Some((account, session)));
        let client = caller("client:ops", &[], None);
        assert_eq!(signed_in_person(&client), None, "a system client");
        let without_session = caller(&account.to_string(), &["qes"], None);
        assert_eq!(signed_in_person(&without_session), None);
        let without_qes = caller(&account.to_string(), &[], Some(&session.to_string()));
        assert_eq!(signed_in_person(&without_qes), None);
        let client_with_claims = caller("client:ops", &["qes"], Some(&session.to_string()));
        assert_eq!(signed_in_person(&client_with_claims), None, "the subject is no account id");
    }
}
