//! The events the gateway publishes.

use esocial_events::EventType;

const fn gateway_event(entity: &'static str, event: &'static str, payload: &'static str) -> EventType {
    EventType { service: "gateway", entity, event, payload }
}

const MEMBER: &str = "esocial.gateway.v1.MemberChanged";
const ACCESS: &str = "esocial.gateway.v1.AccessChanged";
const SUBSCRIPTION: &str = "esocial.gateway.v1.SubscriptionChanged";

pub const MEMBER_REGISTERED: EventType = gateway_event("member", "registered", MEMBER);
pub const MEMBER_UPDATED: EventType = gateway_event("member", "updated", MEMBER);
pub const ACCESS_GRANTED: EventType = gateway_event("access", "granted", ACCESS);
pub const ACCESS_REVOKED: EventType = gateway_event("access", "revoked", ACCESS);
pub const ENTITLEMENTS_CHANGED: EventType =
    gateway_event("entitlements", "changed", "esocial.gateway.v1.EventEntitlementsChanged");
pub const SUBSCRIPTION_CREATED: EventType = gateway_event("subscription", "created", SUBSCRIPTION);
pub const SUBSCRIPTION_DELETED: EventType = gateway_event("subscription", "deleted", SUBSCRIPTION);
pub const LOG_CHECKPOINTED: EventType = gateway_event("log", "checkpointed", "esocial.gateway.v1.LogCheckpointed");
