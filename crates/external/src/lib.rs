//! The outbound side of the exchange gateway: how esocial's processes call
//! other state systems.
//!
//! Every call to another system leaves esocial through the exchange gateway
//! (`services/gateway`), which routes it by proto package, logs it and adds
//! the member's credentials. This crate holds, for each system it talks to:
//!
//! | system | proto package | trait | gRPC adapter |
//! | --- | --- | --- | --- |
//! | civil status registry (ДРАЦС) | `esocial.external.civil_registry.v1` | [`civil_registry::CivilRegistry`] | [`grpc::GrpcCivilRegistry`] |
//! | demographic register (ЄДДР) | `esocial.external.demographic.v1` | [`demographic::DemographicRegister`] | [`grpc::GrpcDemographicRegister`] |
//! | tax register (ДРФО) | `esocial.external.tax.v1` | [`tax::TaxRegister`] | [`grpc::GrpcTaxRegister`] |
//! | e-health patients (ЕСОЗ) | `esocial.external.ehealth.v1` | [`ehealth::PatientRegister`] | [`grpc::GrpcPatientRegister`] |
//! | a bank | `esocial.external.bank.v1` | [`bank::Bank`] | [`grpc::GrpcBank`] |
//! | Diia notifications | `esocial.external.diia.v1` | [`diia::Diia`] | [`grpc::GrpcDiia`] |
//!
//! - The **contracts** are the protos under `proto/esocial/external/`.
//! - The **traits** speak domain types (the validated identifiers of
//!   `esocial-identifiers`, `NaiveDate`, [`Money`](esocial_identifiers::Money))
//!   and fail with [`Error`]; processes depend on the traits, so tests can
//!   substitute them.
//! - The **gRPC adapters** ([`GatewayClients`]) call the gateway over one
//!   channel with `authorization: Bearer <token>` from a [`TokenSource`]
//!   (the kit's `ServiceTokens` is one), map gRPC statuses to [`Error`] and
//!   parse every identifier that comes back: a malformed one is
//!   [`Error::InvalidResponse`], never a panic.
//! - The **simulators** ([`simulators`]) play all six systems in memory for
//!   the sandbox and tests, seeded with [`sandbox_adults`];
//!   [`serve_simulators`] serves them (and gRPC health) on one listener.

pub mod bank;
pub mod civil_registry;
pub mod demographic;
pub mod diia;
pub mod ehealth;
mod error;
pub mod grpc;
mod person;
pub mod sandbox;
pub mod simulators;
pub mod tax;
mod token;

pub use error::{Error, FieldProblem};
pub use grpc::GatewayClients;
pub use person::PersonName;
pub use sandbox::{SandboxAdult, sandbox_adults};
pub use simulators::{Simulators, serve_simulators};
pub use token::{FixedToken, TokenError, TokenSource};

/// The proto packages of the external systems, the gateway's routing keys.
pub const PACKAGES: &[&str] = &[
    "esocial.external.civil_registry.v1",
    "esocial.external.demographic.v1",
    "esocial.external.tax.v1",
    "esocial.external.ehealth.v1",
    "esocial.external.bank.v1",
    "esocial.external.diia.v1",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_package_has_methods_in_the_descriptor_set() {
        for package in PACKAGES {
            let methods = esocial_proto::method_paths(package);
            assert!(methods.len() >= 2, "{package} has {} methods", methods.len());
            assert!(methods.iter().all(|path| path.starts_with(&format!("/{package}."))), "{methods:?}");
        }
    }
}
