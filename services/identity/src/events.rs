//! The events the identity service publishes.

use esocial_events::EventType;

const fn identity_event(entity: &'static str, event: &'static str, payload: &'static str) -> EventType {
    EventType { service: "identity", entity, event, payload }
}

const ORGANIZATION: &str = "esocial.identity.v1.OrganizationChanged";
const ACCOUNT: &str = "esocial.identity.v1.AccountChanged";
const CERTIFICATE: &str = "esocial.identity.v1.CertificateChanged";
const SYSTEM_CLIENT: &str = "esocial.identity.v1.SystemClientChanged";

pub const ORGANIZATION_CREATED: EventType = identity_event("organization", "created", ORGANIZATION);
pub const ORGANIZATION_UPDATED: EventType = identity_event("organization", "updated", ORGANIZATION);
pub const ACCOUNT_CREATED: EventType = identity_event("account", "created", ACCOUNT);
pub const ACCOUNT_UPDATED: EventType = identity_event("account", "updated", ACCOUNT);
pub const ACCOUNT_STATUS_CHANGED: EventType = identity_event("account", "status_changed", ACCOUNT);
pub const ACCOUNT_ROLES_ASSIGNED: EventType = identity_event("account", "roles_assigned", ACCOUNT);
pub const CERTIFICATE_REGISTERED: EventType = identity_event("certificate", "registered", CERTIFICATE);
pub const CERTIFICATE_SUPERSEDED: EventType = identity_event("certificate", "superseded", CERTIFICATE);
pub const CERTIFICATE_STATUS_CHANGED: EventType = identity_event("certificate", "status_changed", CERTIFICATE);
pub const SYSTEM_CLIENT_REGISTERED: EventType = identity_event("system_client", "registered", SYSTEM_CLIENT);
pub const SYSTEM_CLIENT_KEY_ROTATED: EventType = identity_event("system_client", "key_rotated", SYSTEM_CLIENT);
pub const SYSTEM_CLIENT_STATUS_CHANGED: EventType = identity_event("system_client", "status_changed", SYSTEM_CLIENT);
pub const SIGNING_KEY_ROTATED: EventType =
    identity_event("signing_key", "rotated", "esocial.identity.v1.SigningKeyRotated");
pub const LOGIN_SUCCEEDED: EventType = identity_event("login", "succeeded", "esocial.identity.v1.LoginSucceeded");
pub const LOGIN_FAILED: EventType = identity_event("login", "failed", "esocial.identity.v1.LoginFailed");
pub const SESSION_REVOKED: EventType = identity_event("session", "revoked", "esocial.identity.v1.SessionRevoked");
