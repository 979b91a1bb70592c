//! Protobuf messages and gRPC services of every esocial service, generated at
//! build time from `proto/` without a system `protoc`.
//!
//! Services import their own package (`esocial_proto::classifier::v1`) and the
//! shared types (`esocial_proto::common::v1`). [`FILE_DESCRIPTOR_SET`] feeds
//! gRPC server reflection and the tests that check every method is covered by
//! an authorization rule.

#![allow(clippy::all, missing_debug_implementations, unreachable_pub)]

mod generated {
    include!(concat!(env!("OUT_DIR"), "/esocial.rs"));
}

pub use generated::esocial::*;

/// The encoded `google.protobuf.FileDescriptorSet` of all esocial protos,
/// with their imports and source comments.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/esocial_descriptor.bin"));

/// Decodes [`FILE_DESCRIPTOR_SET`].
///
/// # Panics
/// Never in practice: the bytes were encoded by the build script from the
/// same prost types.
#[must_use]
pub fn file_descriptor_set() -> prost_types::FileDescriptorSet {
    <prost_types::FileDescriptorSet as prost::Message>::decode(FILE_DESCRIPTOR_SET)
        .unwrap_or_else(|error| panic!("embedded descriptor set does not decode: {error}"))
}

/// The fully qualified gRPC method paths (`/package.Service/Method`) of every
/// service in the given proto package, for example `esocial.classifier.v1`.
#[must_use]
pub fn method_paths(package: &str) -> Vec<String> {
    let descriptor_set = file_descriptor_set();
    let mut paths = Vec::new();
    for file in descriptor_set.file.iter().filter(|file| file.package() == package) {
        for service in &file.service {
            for method in &service.method {
                paths.push(format!("/{package}.{}/{}", service.name(), method.name()));
            }
        }
    }
    paths.sort();
    paths
}
