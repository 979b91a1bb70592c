//! Who may call which registry method. Deny by default: a method missing
//! here is refused (and a test fails). Object-level rules (the territory of
//! the person, the organization of a share) are checked by the handlers.

use esocial_auth::{Access, AccessPolicy, Role};

/// Record and change persons, family links, IDP registrations.
const WRITE: Access = Access::AnyRole(&[Role::CnapAdministrator, Role::SocialSpecialist, Role::Service]);
/// Read personal data (each read is recorded).
const READ: Access = Access::AnyRole(&[
    Role::CnapAdministrator,
    Role::SocialSpecialist,
    Role::DecisionMaker,
    Role::FinanceOfficer,
    Role::RegistryAuditor,
    Role::Service,
]);
/// Decide that two records are one person, or not.
const DEDUPLICATE: Access = Access::AnyRole(&[Role::SocialSpecialist, Role::DecisionMaker]);
const IMPORT: Access = Access::AnyRole(&[Role::SocialSpecialist, Role::Service]);
const AUDIT: Access = Access::AnyRole(&[Role::RegistryAuditor]);
/// Extracts also need a qualified e-signature sign-in (checked by the handler).
const EXTRACT: Access = Access::AnyRole(&[Role::SocialSpecialist, Role::DecisionMaker, Role::RegistryAuditor]);
/// Decisions about support and the providers' register.
const DECIDE: Access = Access::AnyRole(&[Role::SocialSpecialist, Role::DecisionMaker, Role::Service]);
/// Certificates are issued and revoked by the body's specialists.
const CERTIFY: Access = Access::AnyRole(&[Role::SocialSpecialist, Role::DecisionMaker, Role::Service]);
/// Organizations registered in the gateway, and the gateway itself.
const ORGANIZATION: Access = Access::AnyRole(&[Role::Integrator, Role::Service]);

pub const METHOD_ACCESS: &[(&str, Access)] = &[
    ("/esocial.registry.v1.RegistryService/RegisterPerson", WRITE),
    ("/esocial.registry.v1.RegistryService/UpdatePerson", WRITE),
    ("/esocial.registry.v1.RegistryService/GetPerson", READ),
    ("/esocial.registry.v1.RegistryService/GetPersonHistory", READ),
    ("/esocial.registry.v1.RegistryService/SearchPersons", READ),
    ("/esocial.registry.v1.RegistryService/FindDuplicates", DEDUPLICATE),
    ("/esocial.registry.v1.RegistryService/MergePersons", DEDUPLICATE),
    ("/esocial.registry.v1.RegistryService/MarkDistinct", DEDUPLICATE),
    ("/esocial.registry.v1.RegistryService/LinkFamily", WRITE),
    ("/esocial.registry.v1.RegistryService/ImportPersons", IMPORT),
    ("/esocial.registry.v1.RegistryService/GetImportReport", IMPORT),
    ("/esocial.registry.v1.RegistryService/ListAccessLog", AUDIT),
    ("/esocial.registry.v1.RegistryService/RequestExtract", EXTRACT),
    ("/esocial.registry.v1.RegistryService/VerifyExtract", Access::Public),
    ("/esocial.registry.v1.RegistryService/GetSigningKeys", Access::Public),
    ("/esocial.registry.v1.ProviderService/RegisterProvider", DECIDE),
    ("/esocial.registry.v1.ProviderService/UpdateProvider", DECIDE),
    ("/esocial.registry.v1.ProviderService/GetProvider", Access::Authenticated),
    ("/esocial.registry.v1.ProviderService/ListProviders", Access::Authenticated),
    ("/esocial.registry.v1.ProviderService/AssignSupport", DECIDE),
    ("/esocial.registry.v1.ProviderService/ChangeSupport", DECIDE),
    ("/esocial.registry.v1.ProviderService/ListSupport", READ),
    ("/esocial.registry.v1.IdpService/RegisterIdp", WRITE),
    ("/esocial.registry.v1.IdpService/DeregisterIdp", WRITE),
    ("/esocial.registry.v1.IdpService/GetIdpRegistration", READ),
    ("/esocial.registry.v1.IdpService/IssueIdpCertificate", CERTIFY),
    ("/esocial.registry.v1.IdpService/RevokeIdpCertificate", CERTIFY),
    ("/esocial.registry.v1.IdpService/VerifyIdpCertificate", Access::Public),
    ("/esocial.registry.v1.IdpService/CreateShareRequest", ORGANIZATION),
    ("/esocial.registry.v1.IdpService/DecideShareRequest", Access::AnyRole(&[Role::Service])),
    ("/esocial.registry.v1.IdpService/GetSharedCopy", ORGANIZATION),
    ("/esocial.registry.v1.IdpService/ListShares", READ),
];

pub fn access_policy() -> AccessPolicy {
    AccessPolicy::new(METHOD_ACCESS.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registry_method_has_exactly_one_access_rule() {
        let declared = esocial_proto::method_paths("esocial.registry.v1");
        let mut listed: Vec<String> = METHOD_ACCESS.iter().map(|(path, _)| (*path).to_owned()).collect();
        listed.sort();
        assert_eq!(listed, declared, "the access table must list exactly the methods of the proto");
    }
}
