//! Who may call which identity method. Deny by default.

use esocial_auth::{Access, AccessPolicy, Role};

// Changes need the role here and, checked by the handler, a person's token
// (signed in with a qualified e-signature, session open): a system client
// never administers, whatever its scopes.
const ADMIN: Access = Access::AnyRole(&[Role::SecurityAdmin]);
const READER: Access = Access::AnyRole(&[Role::SecurityAdmin, Role::RegistryAuditor]);

pub const METHOD_ACCESS: &[(&str, Access)] = &[
    ("/esocial.identity.v1.IdentityService/BeginLogin", Access::Public),
    ("/esocial.identity.v1.IdentityService/CompleteLogin", Access::Public),
    ("/esocial.identity.v1.IdentityService/RefreshSession", Access::Public),
    // The handler checks that the caller is a person signed in with a
    // qualified e-signature whose session it is, or a security administrator.
    ("/esocial.identity.v1.IdentityService/RevokeSession", Access::Authenticated),
    ("/esocial.identity.v1.IdentityService/IssueServiceToken", Access::Public),
    ("/esocial.identity.v1.IdentityService/GetJwks", Access::Public),
    ("/esocial.identity.v1.IdentityService/ExchangeToken", Access::AnyRole(&[Role::Gateway])),
    ("/esocial.identity.v1.IdentityAdminService/CreateOrganization", ADMIN),
    ("/esocial.identity.v1.IdentityAdminService/UpdateOrganization", ADMIN),
    ("/esocial.identity.v1.IdentityAdminService/ListOrganizations", READER),
    ("/esocial.identity.v1.IdentityAdminService/CreateAccount", ADMIN),
    ("/esocial.identity.v1.IdentityAdminService/UpdateAccount", ADMIN),
    ("/esocial.identity.v1.IdentityAdminService/SetAccountStatus", ADMIN),
    ("/esocial.identity.v1.IdentityAdminService/AssignRoles", ADMIN),
    ("/esocial.identity.v1.IdentityAdminService/GetAccount", READER),
    ("/esocial.identity.v1.IdentityAdminService/ListAccounts", READER),
    ("/esocial.identity.v1.IdentityAdminService/RegisterCertificate", ADMIN),
    ("/esocial.identity.v1.IdentityAdminService/SetCertificateStatus", ADMIN),
    ("/esocial.identity.v1.IdentityAdminService/ListCertificates", READER),
    ("/esocial.identity.v1.IdentityAdminService/RegisterSystemClient", ADMIN),
    ("/esocial.identity.v1.IdentityAdminService/RotateSystemClientKey", ADMIN),
    ("/esocial.identity.v1.IdentityAdminService/SetSystemClientStatus", ADMIN),
    // The exchange gateway follows the clients' status by it.
    (
        "/esocial.identity.v1.IdentityAdminService/ListSystemClients",
        Access::AnyRole(&[Role::SecurityAdmin, Role::Gateway]),
    ),
    ("/esocial.identity.v1.IdentityAdminService/RotateSigningKey", ADMIN),
];

pub fn access_policy() -> AccessPolicy {
    AccessPolicy::new(METHOD_ACCESS.iter().copied())
}
