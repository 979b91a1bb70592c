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
    forwarded: Vec<String>,
    /// The gateway's own methods a member may call.
    own_for_members: Vec<&'static str>,
    /// `None` until reflection is first asked for.
    views: Mutex<Option<Views>>,
}

/// The views of one catalog generation.
#[derive(Debug)]
struct Views {
    generation: u64,
    /// What the upstreams describe, with the base.
    described: FileDescriptorSet,
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
            forwarded: forwarded.to_vec(),
            own_for_members: crate::policy::member_methods().collect(),
            views: Mutex::new(None),
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
        let Views { described, built, .. } = match &mut *views {
            Some(views) if views.generation == generation => views,
            stale => stale.insert(Views {
                generation,
                described: self.catalog.descriptors(&self.base, OWN_PACKAGE),
                built: HashMap::new(),
            }),
        };
        let shown = match viewer {
            Viewer::Everything => None,
            Viewer::Member(member) => Some(self.shown_to(member)),
        };
        let built = match built.get(&shown) {
            Some(known) => known.clone(),
            None => {
                let made = self.build(described, shown.as_deref())?;
                if built.len() >= VIEWS_MAX {
                    built.clear();
                }
                built.insert(shown, made.clone());
                made
            }
        };
        Some(if v1 { built.v1 } else { built.v1alpha })
    }

    /// The full paths of the methods `member` may call (as the metaservice
    /// lists them, and the gateway's own for members), sorted.
    fn shown_to(&self, member: &MemberEntry) -> Vec<String> {
        let services = self.catalog.services();
        let mut shown: Vec<String> = crate::catalog::allowed(&services, &self.forwarded, member, None)
            .map(|method| method.path.clone())
            .chain(self.own_for_members.iter().map(|path| (*path).to_owned()))
            .collect();
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
/// left without a service that no kept file imports (directly or not), and
/// the messages and enums the kept methods do not use (their requests and
/// answers, and what those hold, field by field).
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
    let mut files: Vec<FileDescriptorProto> = kept.into_values().collect();
    only_types_used(&mut files);
    FileDescriptorSet { file: files }
}

/// Removes from `files` the top-level messages and enums that their
/// services' methods do not use, directly or through the fields of what
/// they use (a nested type keeps the message it is declared in).
fn only_types_used(files: &mut [FileDescriptorProto]) {
    // Every type's full name (without the leading dot), nested ones too,
    // with the top-level type it belongs to, and each top-level message's
    // field types.
    let mut owner: HashMap<String, String> = HashMap::new();
    let mut uses: HashMap<String, Vec<String>> = HashMap::new();
    for file in files.iter() {
        let prefix = if file.package().is_empty() { String::new() } else { format!("{}.", file.package()) };
        for message in &file.message_type {
            let top = format!("{prefix}{}", message.name());
            let mut used = Vec::new();
            declare_message(message, &top, &top, &mut owner, &mut used);
            uses.insert(top, used);
        }
        for declared in &file.enum_type {
            let top = format!("{prefix}{}", declared.name());
            owner.insert(top.clone(), top);
        }
    }
    let mut reached: HashSet<String> = HashSet::new();
    let mut next: Vec<String> = files
        .iter()
        .flat_map(|file| file.service.iter())
        .flat_map(|service| service.method.iter())
        .flat_map(|method| [method.input_type(), method.output_type()])
        // Extensions declared at a file's top level stay, and with them
        // the types they name.
        .chain(
            files.iter().flat_map(|file| file.extension.iter()).flat_map(|field| [field.type_name(), field.extendee()]),
        )
        .map(|name| name.trim_start_matches('.').to_owned())
        .collect();
    while let Some(name) = next.pop() {
        let Some(top) = owner.get(&name) else { continue };
        if reached.insert(top.clone()) {
            next.extend(uses.get(top).into_iter().flatten().cloned());
        }
    }
    for file in files.iter_mut() {
        let prefix = if file.package().is_empty() { String::new() } else { format!("{}.", file.package()) };
        file.message_type.retain(|message| reached.contains(&format!("{prefix}{}", message.name())));
        file.enum_type.retain(|declared| reached.contains(&format!("{prefix}{}", declared.name())));
    }
}

/// Records `message` (named `full`, within the top-level type `top`) and
/// its nested types in `owner`, and the types its fields name in `used`.
fn declare_message(
    message: &prost_types::DescriptorProto,
    full: &str,
    top: &str,
    owner: &mut HashMap<String, String>,
    used: &mut Vec<String>,
) {
    owner.insert(full.to_owned(), top.to_owned());
    used.extend(
        message
            .field
            .iter()
            .filter(|field| !field.type_name().is_empty())
            .map(|field| field.type_name().trim_start_matches('.').to_owned()),
    );
    for nested in &message.nested_type {
        declare_message(nested, &format!("{full}.{}", nested.name()), top, owner, used);
    }
    for declared in &message.enum_type {
        owner.insert(format!("{full}.{}", declared.name()), top.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::{
        DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, MethodDescriptorProto, ServiceDescriptorProto,
    };

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

    fn message(name: &str, field_types: &[&str], nested: Vec<DescriptorProto>) -> DescriptorProto {
        DescriptorProto {
            name: Some(name.to_owned()),
            field: field_types
                .iter()
                .map(|type_name| FieldDescriptorProto {
                    type_name: Some((*type_name).to_owned()),
                    ..Default::default()
                })
                .collect(),
            nested_type: nested,
            ..Default::default()
        }
    }

    fn method(name: &str, input: &str, output: &str) -> MethodDescriptorProto {
        MethodDescriptorProto {
            name: Some(name.to_owned()),
            input_type: Some(input.to_owned()),
            output_type: Some(output.to_owned()),
            ..Default::default()
        }
    }

    fn types(files: &FileDescriptorSet) -> Vec<String> {
        let mut names: Vec<String> = files
            .file
            .iter()
            .flat_map(|file| {
                let package = file.package().to_owned();
                file.message_type
                    .iter()
                    .map(|message| message.name().to_owned())
                    .chain(file.enum_type.iter().map(|declared| declared.name().to_owned()))
                    .map(move |name| format!("{package}.{name}"))
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn only_the_types_the_methods_shown_use_are_kept() {
        let enumeration = |name: &str| EnumDescriptorProto { name: Some(name.to_owned()), ..Default::default() };
        let common = FileDescriptorProto {
            name: Some("a/common.proto".to_owned()),
            package: Some("a".to_owned()),
            message_type: vec![message("Shared", &[".a.Kind"], vec![]), message("Other", &[], vec![])],
            enum_type: vec![enumeration("Kind"), enumeration("Unused")],
            ..Default::default()
        };
        let one = FileDescriptorProto {
            name: Some("a/one.proto".to_owned()),
            package: Some("a".to_owned()),
            dependency: vec!["a/common.proto".to_owned()],
            message_type: vec![
                message("GetRequest", &["", ".a.GetRequest.Inner"], vec![message("Inner", &[".a.Shared"], vec![])]),
                message("GetReply", &[".a.GetReply"], vec![]),
                message("PutRequest", &[".a.Other"], vec![]),
            ],
            service: vec![ServiceDescriptorProto {
                name: Some("One".to_owned()),
                method: vec![
                    method("Get", ".a.GetRequest", ".a.GetReply"),
                    method("Put", ".a.PutRequest", ".a.GetReply"),
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let files = FileDescriptorSet { file: vec![common, one] };
        assert_eq!(
            types(&only_methods(&files, &["/a.One/Get".to_owned()])),
            ["a.GetReply", "a.GetRequest", "a.Kind", "a.Shared"]
        );
        assert_eq!(
            types(&only_methods(&files, &["/a.One/Get".to_owned(), "/a.One/Put".to_owned()])),
            ["a.GetReply", "a.GetRequest", "a.Kind", "a.Other", "a.PutRequest", "a.Shared"]
        );
    }
}
