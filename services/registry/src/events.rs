//! The events the registry publishes.

use esocial_events::EventType;

const fn registry_event(entity: &'static str, event: &'static str, payload: &'static str) -> EventType {
    EventType { service: "registry", entity, event, payload }
}

const PERSON: &str = "esocial.registry.v1.PersonChanged";
const IDP: &str = "esocial.registry.v1.IdpChanged";
const CERTIFICATE: &str = "esocial.registry.v1.IdpCertificateChanged";
const SUPPORT: &str = "esocial.registry.v1.SupportChanged";
const PROVIDER: &str = "esocial.registry.v1.ProviderChanged";

pub const PERSON_REGISTERED: EventType = registry_event("person", "registered", PERSON);
pub const PERSON_UPDATED: EventType = registry_event("person", "updated", PERSON);
pub const PERSON_MERGED: EventType = registry_event("person", "merged", "esocial.registry.v1.PersonMerged");
pub const PERSONS_IMPORTED: EventType = registry_event("persons", "imported", "esocial.registry.v1.PersonsImported");
pub const IDP_REGISTERED: EventType = registry_event("idp", "registered", IDP);
pub const IDP_DEREGISTERED: EventType = registry_event("idp", "deregistered", IDP);
pub const IDP_CERTIFICATE_ISSUED: EventType = registry_event("idp.certificate", "issued", CERTIFICATE);
pub const IDP_CERTIFICATE_REVOKED: EventType = registry_event("idp.certificate", "revoked", CERTIFICATE);
pub const SUPPORT_ASSIGNED: EventType = registry_event("support", "assigned", SUPPORT);
pub const SUPPORT_CHANGED: EventType = registry_event("support", "changed", SUPPORT);
pub const PROVIDER_REGISTERED: EventType = registry_event("provider", "registered", PROVIDER);
pub const PROVIDER_UPDATED: EventType = registry_event("provider", "updated", PROVIDER);
