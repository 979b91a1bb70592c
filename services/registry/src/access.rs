//! Who may read and change which person: roles by method (in `policy.rs`),
//! and here the object-level rule: operators who serve a territory act only
//! on persons registered in it. National roles act everywhere.

use esocial_auth::{Caller, Role};
use esocial_kit::ApiError;

use crate::domain::Actor;
use crate::replica::Territories;

/// Roles that are not tied to a territory.
const NATIONAL: &[Role] = &[Role::RegistryAuditor, Role::Service];

pub fn actor(caller: &Caller) -> Actor {
    Actor { subject: caller.subject.clone(), organization: caller.organization_edrpou.clone() }
}

pub fn is_national(caller: &Caller) -> bool {
    NATIONAL.iter().any(|role| caller.has_role(*role))
}

/// Refuses unless the caller may act on a person registered in `territory`.
pub async fn require_territory(territories: &Territories, caller: &Caller, territory: &str) -> Result<(), ApiError> {
    if is_national(caller) {
        return Ok(());
    }
    for scope in &caller.territories {
        if territories.within(territory, scope).await {
            return Ok(());
        }
    }
    Err(ApiError::PermissionDenied(if caller.territories.is_empty() {
        "the caller serves no territory".to_owned()
    } else {
        "the person is registered outside the territories the caller serves".to_owned()
    }))
}

/// A required purpose of a read, checked.
pub fn purpose(violations: &mut esocial_kit::Violations, text: &str) -> String {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        violations.add("purpose", "is required: why the personal data is read (it is recorded)");
    } else if trimmed.chars().count() > 300 || trimmed.chars().any(char::is_control) {
        violations.add("purpose", "must be at most 300 characters of text");
    }
    trimmed.to_owned()
}
