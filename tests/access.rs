//! Every RPC of every service has exactly one access rule, in the table of
//! the service that serves it. A new method without a rule fails here (and
//! would be refused to everyone at run time: deny by default).
//!
//! The `esocial.external.*` packages are other state systems' contracts:
//! esocial calls them and does not serve them, and the gateway lets through
//! only members granted a right to each method.

use std::collections::BTreeMap;

#[test]
fn every_method_of_every_service_appears_in_its_access_table() {
    let tables: BTreeMap<&str, &[(&str, esocial_auth::Access)]> = BTreeMap::from([
        ("esocial.classifier.v1", esocial_classifier::policy::METHOD_ACCESS),
        ("esocial.gateway.v1", esocial_gateway::policy::METHOD_ACCESS),
        ("esocial.identity.v1", esocial_identity::policy::METHOD_ACCESS),
        ("esocial.registry.v1", esocial_registry::policy::METHOD_ACCESS),
    ]);
    let descriptor = esocial_proto::file_descriptor_set();
    let mut packages: Vec<&str> = descriptor
        .file
        .iter()
        .filter(|file| !file.service.is_empty())
        .map(|file| file.package())
        .filter(|package| package.starts_with("esocial.") && !package.starts_with("esocial.external."))
        .collect();
    packages.sort_unstable();
    packages.dedup();
    assert_eq!(packages, tables.keys().copied().collect::<Vec<_>>(), "every package with services has a table");

    for (package, table) in &tables {
        let declared = esocial_proto::method_paths(package);
        let mut listed: Vec<String> = table.iter().map(|(path, _)| (*path).to_owned()).collect();
        listed.sort();
        let duplicates = listed.windows(2).filter(|pair| pair[0] == pair[1]).count();
        assert_eq!(duplicates, 0, "{package}: a method listed twice");
        assert_eq!(listed, declared, "{package}: the table must list exactly the proto's methods");
    }
}
