//! Who may call the gateway's own methods. Deny by default: a method
//! missing here is refused (and a test fails). Forwarded methods are not
//! here: they go by the members' access rights.

use esocial_auth::{Access, AccessPolicy, Role};

const ADMIN: Access = Access::AnyRole(&[Role::SecurityAdmin]);
/// Member systems (the handler checks the caller is one).
const MEMBER: Access = Access::Authenticated;
const AUDIT: Access = Access::AnyRole(&[Role::RegistryAuditor]);
/// Checking the log, and who searched it.
const VERIFY: Access = Access::AnyRole(&[Role::RegistryAuditor, Role::SecurityAdmin]);

pub const METHOD_ACCESS: &[(&str, Access)] = &[
    ("/esocial.gateway.v1.GatewayAdminService/RegisterMember", ADMIN),
    ("/esocial.gateway.v1.GatewayAdminService/UpdateMember", ADMIN),
    ("/esocial.gateway.v1.GatewayAdminService/GetMember", ADMIN),
    ("/esocial.gateway.v1.GatewayAdminService/ListMembers", ADMIN),
    ("/esocial.gateway.v1.GatewayAdminService/GrantAccess", ADMIN),
    ("/esocial.gateway.v1.GatewayAdminService/RevokeAccess", ADMIN),
    ("/esocial.gateway.v1.GatewayAdminService/ListAccessRights", ADMIN),
    ("/esocial.gateway.v1.GatewayAdminService/SetEventEntitlements", ADMIN),
    ("/esocial.gateway.v1.GatewayAdminService/ListAdminChanges", ADMIN),
    ("/esocial.gateway.v1.MetaService/ListServices", MEMBER),
    ("/esocial.gateway.v1.MetaService/ListAllowedMethods", MEMBER),
    ("/esocial.gateway.v1.MessageLogService/SearchMessageLog", AUDIT),
    ("/esocial.gateway.v1.MessageLogService/VerifyMessageLog", VERIFY),
    ("/esocial.gateway.v1.MessageLogService/ListLogSearches", VERIFY),
    ("/esocial.gateway.v1.SubscriptionService/CreateSubscription", MEMBER),
    ("/esocial.gateway.v1.SubscriptionService/ListSubscriptions", MEMBER),
    ("/esocial.gateway.v1.SubscriptionService/DeleteSubscription", MEMBER),
    ("/esocial.gateway.v1.SubscriptionService/Subscribe", MEMBER),
    ("/esocial.gateway.v1.SubscriptionService/AcknowledgeEvents", MEMBER),
];

pub fn access_policy() -> AccessPolicy {
    AccessPolicy::new(METHOD_ACCESS.iter().copied())
}

/// The gateway's own methods for member systems.
pub fn member_methods() -> impl Iterator<Item = &'static str> {
    METHOD_ACCESS.iter().filter(|(_, access)| *access == MEMBER).map(|(path, _)| *path)
}

/// Whether `caller` may call one of the gateway's own methods that are not
/// for member systems: its administrators and auditors.
pub fn administers(caller: &esocial_auth::Caller) -> bool {
    METHOD_ACCESS.iter().any(|(_, access)| *access != MEMBER && access.allows(caller))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gateway_method_has_exactly_one_access_rule() {
        let declared = esocial_proto::method_paths("esocial.gateway.v1");
        let mut listed: Vec<String> = METHOD_ACCESS.iter().map(|(path, _)| (*path).to_owned()).collect();
        listed.sort();
        assert_eq!(listed, declared, "the access table must list exactly the methods of the proto");
    }
}
