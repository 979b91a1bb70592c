//! The gRPC methods that exist, from the descriptors of every proto in the
//! repository: access rights are checked against them, and metaservices
//! list them.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// One method of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodInfo {
    /// `/esocial.registry.v1.RegistryService/GetPerson`
    pub path: String,
    pub client_streaming: bool,
    pub server_streaming: bool,
}

/// Service name (`esocial.registry.v1.RegistryService`) → its methods.
pub fn services() -> &'static BTreeMap<String, Vec<MethodInfo>> {
    static SERVICES: OnceLock<BTreeMap<String, Vec<MethodInfo>>> = OnceLock::new();
    SERVICES.get_or_init(|| {
        let mut services = BTreeMap::new();
        for file in esocial_proto::file_descriptor_set().file {
            for service in &file.service {
                let name = format!("{}.{}", file.package(), service.name());
                let methods = service
                    .method
                    .iter()
                    .map(|method| MethodInfo {
                        path: format!("/{name}/{}", method.name()),
                        client_streaming: method.client_streaming(),
                        server_streaming: method.server_streaming(),
                    })
                    .collect();
                services.insert(name, methods);
            }
        }
        services
    })
}

/// The package of a service name.
pub fn package_of(service: &str) -> &str {
    service.rsplit_once('.').map_or("", |(package, _)| package)
}

pub fn method_exists(path: &str) -> bool {
    let Some((service, _)) = path.strip_prefix('/').and_then(|rest| rest.split_once('/')) else { return false };
    services().get(service).is_some_and(|methods| methods.iter().any(|method| method.path == path))
}

pub fn service_exists(service: &str) -> bool {
    services().contains_key(service)
}

/// Every method that streams in either direction.
pub fn streaming_methods() -> Vec<&'static str> {
    services()
        .values()
        .flatten()
        .filter(|method| method.client_streaming || method.server_streaming)
        .map(|method| method.path.as_str())
        .collect()
}

/// Whether the method at `path` streams in either direction.
pub fn is_streaming(path: &str) -> bool {
    static STREAMING: OnceLock<std::collections::HashSet<&'static str>> = OnceLock::new();
    STREAMING.get_or_init(|| streaming_methods().into_iter().collect()).contains(path)
}
