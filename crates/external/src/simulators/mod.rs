//! In-memory simulators of the six external systems, for the sandbox and
//! tests: tonic servers that behave like the real systems as far as esocial
//! can tell (validation with field violations, generated identifiers valid
//! and unique, idempotent repeats, the documented refusals).
//!
//! The systems share one `World`, as the real ones share data through
//! Trembita: the demographic register reads the civil registry's birth
//! records, the tax register the demographic register's records, e-health
//! the birth records again. Each system's state has its own mutex, and no
//! code holds two at once, so there is no lock order to get wrong.
//!
//! Nothing here checks tokens: the gateway in front does.

mod bank;
mod civil_registry;
mod demographic;
mod diia;
mod ehealth;
mod tax;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use esocial_proto::external::bank::v1::bank_service_server::BankServiceServer;
use esocial_proto::external::civil_registry::v1::civil_registry_service_server::CivilRegistryServiceServer;
use esocial_proto::external::demographic::v1::demographic_register_service_server::DemographicRegisterServiceServer;
use esocial_proto::external::diia::v1::diia_notification_service_server::DiiaNotificationServiceServer;
use esocial_proto::external::ehealth::v1::patient_register_service_server::PatientRegisterServiceServer;
use esocial_proto::external::tax::v1::tax_register_service_server::TaxRegisterServiceServer;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_types::{ErrorDetails, StatusExt as _};
use uuid::Uuid;

use crate::sandbox::SandboxAdult;

pub use bank::BankSimulator;
pub use civil_registry::CivilRegistrySimulator;
pub use demographic::DemographicRegisterSimulator;
pub use diia::DiiaSimulator;
pub use ehealth::PatientRegisterSimulator;
pub use tax::TaxRegisterSimulator;

/// The `google.rpc.ErrorInfo` domain of the simulators' errors.
const ERROR_DOMAIN: &str = "external.sandbox.esocial";

/// The state of all six systems.
#[derive(Debug, Default)]
pub(crate) struct World {
    civil_registry: Mutex<civil_registry::CivilRegistryState>,
    demographic: Mutex<demographic::DemographicState>,
    tax: Mutex<tax::TaxState>,
    ehealth: Mutex<ehealth::PatientRegisterState>,
    bank: Mutex<bank::BankState>,
    diia: Mutex<diia::DiiaState>,
}

/// The six simulators over one shared world of state.
#[derive(Debug, Clone)]
pub struct Simulators {
    world: Arc<World>,
}

impl Simulators {
    /// Systems that know nobody.
    pub fn empty() -> Self {
        Self { world: Arc::default() }
    }

    /// Systems that know the given adults: their demographic records, their
    /// taxpayer cards and incomes, their bank accounts.
    pub fn with_adults(adults: &[SandboxAdult]) -> Self {
        let world = World::default();
        for adult in adults {
            lock(&world.demographic).add_adult(adult);
            lock(&world.tax).add_adult(adult);
            lock(&world.bank).add_adult(adult);
        }
        Self { world: Arc::new(world) }
    }

    /// Systems that know the [`sandbox_adults`](crate::sandbox_adults).
    pub fn with_sandbox_data() -> Self {
        Self::with_adults(crate::sandbox_adults())
    }

    pub fn civil_registry(&self) -> CivilRegistrySimulator {
        CivilRegistrySimulator::new(Arc::clone(&self.world))
    }

    pub fn demographic(&self) -> DemographicRegisterSimulator {
        DemographicRegisterSimulator::new(Arc::clone(&self.world))
    }

    pub fn tax(&self) -> TaxRegisterSimulator {
        TaxRegisterSimulator::new(Arc::clone(&self.world))
    }

    pub fn ehealth(&self) -> PatientRegisterSimulator {
        PatientRegisterSimulator::new(Arc::clone(&self.world))
    }

    pub fn bank(&self) -> BankSimulator {
        BankSimulator::new(Arc::clone(&self.world))
    }

    pub fn diia(&self) -> DiiaSimulator {
        DiiaSimulator::new(Arc::clone(&self.world))
    }

    /// Serves the six systems and gRPC health (each service `SERVING`, and
    /// the server as a whole under `""`) on `listener` until `shutdown`
    /// completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter.set_serving::<CivilRegistryServiceServer<CivilRegistrySimulator>>().await;
        health_reporter.set_serving::<DemographicRegisterServiceServer<DemographicRegisterSimulator>>().await;
        health_reporter.set_serving::<TaxRegisterServiceServer<TaxRegisterSimulator>>().await;
        health_reporter.set_serving::<PatientRegisterServiceServer<PatientRegisterSimulator>>().await;
        health_reporter.set_serving::<BankServiceServer<BankSimulator>>().await;
        health_reporter.set_serving::<DiiaNotificationServiceServer<DiiaSimulator>>().await;
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, "external system simulators listening");
        }
        // Reflection describes the six systems (and the types they use),
        // as a real system's might: the gateway and grpcurl read it.
        let mut descriptors = esocial_proto::file_descriptor_set();
        descriptors.file.retain(|file| file.service.is_empty() || file.package().starts_with("esocial.external."));
        let reflection = tonic_reflection::server::Builder::configure()
            .register_file_descriptor_set(descriptors)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(CivilRegistryServiceServer::new(self.civil_registry()))
            .add_service(DemographicRegisterServiceServer::new(self.demographic()))
            .add_service(TaxRegisterServiceServer::new(self.tax()))
            .add_service(PatientRegisterServiceServer::new(self.ehealth()))
            .add_service(BankServiceServer::new(self.bank()))
            .add_service(DiiaNotificationServiceServer::new(self.diia()))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
            .await?;
        Ok(())
    }
}

/// Serves the simulators of all six systems, seeded with the
/// [`sandbox_adults`](crate::sandbox_adults), with gRPC health, on
/// `listener` until `shutdown` completes.
pub async fn serve_simulators(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Simulators::with_sandbox_data().serve(listener, shutdown).await
}

/// The guard of a system's state. A panic while it was held cannot leave
/// the state half-changed (every change is a few inserts after all checks),
/// so a poisoned mutex is used as it is.
fn lock<State>(mutex: &Mutex<State>) -> MutexGuard<'_, State> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A status with a `google.rpc.ErrorInfo` naming the reason and, in its
/// metadata, the record concerned.
fn status_with_info(code: tonic::Code, message: String, reason: &str, metadata: &[(&str, &str)]) -> tonic::Status {
    let metadata: HashMap<String, String> =
        metadata.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect();
    tonic::Status::with_error_details(code, message, ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata))
}

/// SplitMix64: a fixed permutation of the 64-bit numbers that scatters
/// consecutive inputs.
fn split_mix(mut value: u64) -> u64 {
    value = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    value ^ (value >> 31)
}

/// The `counter`-th id of a `stream` (one per kind of id): a version 4 UUID
/// in form, the same on every run; its 122 free bits are scattered from the
/// counter, so a repeat is as unlikely as between random UUIDs.
fn deterministic_uuid(stream: u64, counter: u64) -> Uuid {
    let high = split_mix(stream ^ split_mix(counter));
    let low = split_mix(high ^ counter);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.to_be_bytes());
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn deterministic_uuids_are_version_4_stable_and_distinct() {
        let first = deterministic_uuid(1, 1);
        assert_eq!(first, deterministic_uuid(1, 1));
        assert_eq!(first.get_version_num(), 4);
        let ids: HashSet<Uuid> = (0..10_000).map(|counter| deterministic_uuid(1, counter)).collect();
        assert_eq!(ids.len(), 10_000);
        assert_ne!(deterministic_uuid(1, 1), deterministic_uuid(2, 1));
    }
}
