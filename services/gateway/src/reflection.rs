//! The gateway's server reflection: its own services and the forwarded
//! packages, as the catalog knows them now (so a method added to a service
//! behind the gateway is described too), rebuilt after the catalog reads an
//! upstream again and a client asks.

use std::sync::{Arc, Mutex, PoisonError};

use esocial_kit::server::{BoxGrpcService, descriptors_of, reflection_services};

use crate::catalog::Catalog;
use crate::proxy::OWN_PACKAGE;

const V1: &str = "/grpc.reflection.v1.ServerReflection/";
const V1ALPHA: &str = "/grpc.reflection.v1alpha.ServerReflection/";

#[derive(Debug)]
pub struct Reflection {
    catalog: Arc<Catalog>,
    /// The compiled descriptors of the gateway's own package and the
    /// forwarded ones.
    base: prost_types::FileDescriptorSet,
    built: Mutex<Option<Built>>,
}

struct Built {
    generation: u64,
    v1: BoxGrpcService,
    v1alpha: BoxGrpcService,
}

impl std::fmt::Debug for Built {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Built").field("generation", &self.generation).finish_non_exhaustive()
    }
}

impl Reflection {
    pub fn new(catalog: Arc<Catalog>, forwarded: &[String]) -> Self {
        let base = descriptors_of(std::iter::once(OWN_PACKAGE).chain(forwarded.iter().map(String::as_str)));
        Self { catalog, base, built: Mutex::new(None) }
    }

    /// The reflection service that answers a call of `path`; `None` when
    /// `path` is not reflection (or, should the described files not make a
    /// reflection service, nothing can be built: the server's own, of the
    /// compiled files, answers then).
    pub fn service_for(&self, path: &str) -> Option<BoxGrpcService> {
        let v1 = path.starts_with(V1);
        if !v1 && !path.starts_with(V1ALPHA) {
            return None;
        }
        let generation = self.catalog.generation();
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        if built.as_ref().is_none_or(|built| built.generation != generation) {
            let services = reflection_services(self.catalog.descriptors(&self.base, OWN_PACKAGE)).or_else(|error| {
                tracing::warn!(%error, "the described files do not make a reflection service; describing the compiled ones");
                reflection_services(self.base.clone())
            });
            match services {
                Ok((v1, v1alpha)) => *built = Some(Built { generation, v1, v1alpha }),
                Err(error) => {
                    tracing::warn!(%error, "no reflection service of the gateway's own");
                    return None;
                }
            }
        }
        built.as_ref().map(|built| if v1 { built.v1.clone() } else { built.v1alpha.clone() })
    }
}
