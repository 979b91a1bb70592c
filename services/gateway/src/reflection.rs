//! The gateway's server reflection: its own services and the forwarded
//! packages, as the catalog knows them now (so a method added to a service
//! behind the gateway is described too), rebuilt after the catalog reads an
//! upstream again and a client asks.
//!
//! Deny by default here too: a member system is described only the methods
//! it may call (its access rights to forwarded methods, and the gateway's
//! own methods for members), as the metaservice lists them; the gateway's
//! administrators and auditors are described everything.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use esocial_kit::server::{BoxGrpcService, descriptors_of, reflection_services};
use prost_types::{FileDescriptorProto, FileDescriptorSet};

use crate::catalog::Catalog;
use crate::directory::MemberEntry;
use crate::domain::MethodPath;
use crate::proxy::OWN_PACKAGE;

const V1: &str = "/grpc.reflection.v1.ServerReflection/";
const V1ALPHA: &str = "/grpc.reflection.v1alpha.ServerReflection/";

/// Views built for one catalog generation, at most: members with the same
/// methods share one, so this bounds only a directory of many different
/// rights (the views are made again as they are asked for).
const VIEWS_MAX: usize = 64;

/// Whom reflection describes the gateway to.
#[derive(Debug, Clone, Copy)]
pub enum Viewer<'a> {
    /// Its administrators and auditors: every method.
    Everything,
    /// A member system: the methods it may call.
    Member(&'a MemberEntry),
}

#[derive(Debug)]
pub struct Reflection {
    catalog: Arc<Catalog>,
    /// The compiled descriptors of the gateway's own package and the
    /// forwarded ones.
    base: FileDescriptorSet,
    /// The packages routed to upstreams.
    forwarded: HashSet<String>,
    /// The gateway's own methods a member may call.
    own_for_members: HashSet<&'static str>,
    views: Mutex<Views>,
}

#[derive(Debug, Default)]
struct Views {
    generation: u64,
    /// What the upstreams describe, with the base, at `generation`.
    described: Option<Arc<FileDescriptorSet>>,
    /// By the methods shown (`None`: all of them).
    built: HashMap<Option<Vec<String>>, Built>,
}

#[derive(Clone)]
struct Built {
    v1: BoxGrpcService,
    v1alpha: BoxGrpcService,
}

impl std::fmt::Debug for Built {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Built").finish_non_exhaustive()
    }
}

impl Reflection {
    pub fn new(catalog: Arc<Catalog>, forwarded: &[String]) -> Self {
        let base = descriptors_of(std::iter::once(OWN_PACKAGE).chain(forwarded.iter().map(String::as_str)));
        Self {
            catalog,
            base,
            forwarded: forwarded.iter().cloned().collect(),
            own_for_members: crate::policy::member_methods().collect(),
            views: Mutex::new(Views::default()),
        }
    }

    /// The reflection service that answers `viewer`'s call of `path`;
    /// `None` when `path` is not reflection, or when nothing can be built
    /// (neither the described files nor the compiled ones make a reflection
    /// service).
    pub fn service_for(&self, path: &str, viewer: Viewer<'_>) -> Option<BoxGrpcService> {
        let v1 = path.starts_with(V1);
        if !v1 && !path.starts_with(V1ALPHA) {
            return None;
        }
        let generation = self.catalog.generation();
        let mut views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        if views.generation != generation || views.described.is_none() {
            *views = Views {
                generation,
                described: Some(Arc::new(self.catalog.descriptors(&self.base, OWN_PACKAGE))),
                built: HashMap::new(),
            };
        }
        let described = views.described.clone()?;
        let shown = match viewer {
            Viewer::Everything => None,
            Viewer::Member(member) => Some(self.shown_to(&described, member)),
        };
        let built = match views.built.get(&shown) {
            Some(built) => built.clone(),
            None => {
                let built = self.build(&described, shown.as_deref())?;
                if views.built.len() >= VIEWS_MAX {
                    views.built.clear();
                }
                views.built.insert(shown, built.clone());
                built
            }
        };
        Some(if v1 { built.v1 } else { built.v1alpha })
    }

    /// The full paths of the methods in `files` that `member` may call,
    /// sorted.
    fn shown_to(&self, files: &FileDescriptorSet, member: &MemberEntry) -> Vec<String> {
        let mut shown = Vec::new();
        for file in &files.file {
            let package = file.package();
            let own = package == OWN_PACKAGE;
            if !own && !self.forwarded.contains(package) {
                continue;
            }
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{package}.{}/{}", service.name(), method.name());
                    let may = if own {
                        self.own_for_members.contains(path.as_str())
                    } else {
                        MethodPath::parse(&path).is_some_and(|parsed| member.may_call(&parsed, &path))
                    };
                    if may {
                        shown.push(path);
                    }
                }
            }
        }
        shown.sort_unstable();
        shown
    }

    /// The reflection services of `described` (of the compiled files, should
    /// those the upstreams described not make one), showing only the
    /// methods `shown` when given.
    fn build(&self, described: &FileDescriptorSet, shown: Option<&[String]>) -> Option<Built> {
        let view = |files: &FileDescriptorSet| match shown {
            Some(shown) => only_methods(files, shown),
            None => files.clone(),
        };
        let services = reflection_services(view(described)).or_else(|error| {
            tracing::warn!(%error, "the described files do not make a reflection service; describing the compiled ones");
            reflection_services(view(&self.base))
        });
        match services {
            Ok((v1, v1alpha)) => Some(Built { v1, v1alpha }),
            Err(error) => {
                tracing::warn!(%error, "no reflection service of the gateway's own");
                None
            }
        }
    }
}

/// `files` with only the methods `shown` (full paths, sorted) in their
/// services: services left without a method are dropped, and so are files
/// left without a service that no kept file imports (directly or not).
/// The messages of a kept file stay, whichever methods use them.
fn only_methods(files: &FileDescriptorSet, shown: &[String]) -> FileDescriptorSet {
    let mut by_name: BTreeMap<String, FileDescriptorProto> = BTreeMap::new();
    let mut wanted: Vec<String> = Vec::new();
    for file in &files.file {
        let mut file = file.clone();
        let package = file.package().to_owned();
        for service in &mut file.service {
            let prefix = format!("/{package}.{}/", service.name());
            service.method.retain(|method| shown.binary_search(&format!("{prefix}{}", method.name())).is_ok());
        }
        file.service.retain(|service| !service.method.is_empty());
        if !file.service.is_empty() {
            wanted.push(file.name().to_owned());
        }
        by_name.insert(file.name().to_owned(), file);
    }
    let mut kept: BTreeMap<String, FileDescriptorProto> = BTreeMap::new();
    while let Some(name) = wanted.pop() {
        if kept.contains_key(&name) {
            continue;
        }
        if let Some(file) = by_name.remove(&name) {
            wanted.extend(file.dependency.iter().cloned());
            kept.insert(name, file);
        }
    }
    FileDescriptorSet { file: kept.into_values().collect() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::{MethodDescriptorProto, ServiceDescriptorProto};

    fn file(name: &str, package: &str, imports: &[&str], services: &[(&str, &[&str])]) -> FileDescriptorProto {
        FileDescriptorProto {
            name: Some(name.to_owned()),
            package: Some(package.to_owned()),
            dependency: imports.iter().map(|import| (*import).to_owned()).collect(),
            service: services
                .iter()
                .map(|(service, methods)| ServiceDescriptorProto {
                    name: Some((*service).to_owned()),
                    method: methods
                        .iter()
                        .map(|method| MethodDescriptorProto { name: Some((*method).to_owned()), ..Default::default() })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn names(files: &FileDescriptorSet) -> Vec<(String, Vec<String>)> {
        files
            .file
            .iter()
            .map(|file| {
                let methods = file
                    .service
                    .iter()
                    .flat_map(|service| {
                        service.method.iter().map(move |method| format!("{}/{}", service.name(), method.name()))
                    })
                    .collect();
                (file.name().to_owned(), methods)
            })
            .collect()
    }

    #[test]
    fn only_the_methods_shown_are_kept_with_the_files_they_need() {
        let files = FileDescriptorSet {
            file: vec![
                file("a/common.proto", "a", &["google/protobuf/timestamp.proto"], &[]),
                file("google/protobuf/timestamp.proto", "google.protobuf", &[], &[]),
                file("a/one.proto", "a", &["a/common.proto"], &[("One", &["Get", "Put"]), ("Two", &["Delete"])]),
                file("b/other.proto", "b", &[], &[("Other", &["Call"])]),
                file("c/unused.proto", "c", &[], &[]),
            ],
        };
        let shown = vec!["/a.One/Get".to_owned()];
        assert_eq!(
            names(&only_methods(&files, &shown)),
            [
                ("a/common.proto".to_owned(), vec![]),
                ("a/one.proto".to_owned(), vec!["One/Get".to_owned()]),
                ("google/protobuf/timestamp.proto".to_owned(), vec![]),
            ]
        );
        assert!(only_methods(&files, &[]).file.is_empty());
    }
}
