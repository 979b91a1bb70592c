//! The events the classifier publishes.

use esocial_events::EventType;

const fn classifier_event(entity: &'static str, event: &'static str, payload: &'static str) -> EventType {
    EventType { service: "classifier", entity, event, payload }
}

pub const SUPPORT_TYPE_VERSION_CREATED: EventType =
    classifier_event("support_type", "version_created", "esocial.classifier.v1.SupportTypeVersionCreated");
pub const SUPPORT_TYPE_RETIRED: EventType =
    classifier_event("support_type", "retired", "esocial.classifier.v1.SupportTypeRetired");
pub const REFERENCE_ENTRY_VERSION_CREATED: EventType =
    classifier_event("reference_entry", "version_created", "esocial.classifier.v1.ReferenceEntryVersionCreated");
pub const REFERENCE_ENTRY_RETIRED: EventType =
    classifier_event("reference_entry", "retired", "esocial.classifier.v1.ReferenceEntryRetired");

pub const ALL: [EventType; 4] =
    [SUPPORT_TYPE_VERSION_CREATED, SUPPORT_TYPE_RETIRED, REFERENCE_ENTRY_VERSION_CREATED, REFERENCE_ENTRY_RETIRED];
