//! Who may call which classifier method. Deny by default: a method missing
//! here is refused (and a test fails).

use esocial_auth::{Access, AccessPolicy, Role};

const ADMIN: Access = Access::AnyRole(&[Role::ClassifierAdmin]);

pub const METHOD_ACCESS: &[(&str, Access)] = &[
    ("/esocial.classifier.v1.ClassifierService/GetSupportType", Access::Authenticated),
    ("/esocial.classifier.v1.ClassifierService/ListSupportTypes", Access::Authenticated),
    ("/esocial.classifier.v1.ClassifierService/ListSupportTypeVersions", Access::Authenticated),
    ("/esocial.classifier.v1.ClassifierService/CreateSupportTypeVersion", ADMIN),
    ("/esocial.classifier.v1.ClassifierService/RetireSupportType", ADMIN),
    ("/esocial.classifier.v1.ClassifierService/GetReferenceEntry", Access::Authenticated),
    ("/esocial.classifier.v1.ClassifierService/ListReferenceEntries", Access::Authenticated),
    ("/esocial.classifier.v1.ClassifierService/SearchReferenceEntries", Access::Authenticated),
    ("/esocial.classifier.v1.ClassifierService/ListReferenceEntryVersions", Access::Authenticated),
    ("/esocial.classifier.v1.ClassifierService/CreateReferenceEntryVersion", ADMIN),
    ("/esocial.classifier.v1.ClassifierService/RetireReferenceEntry", ADMIN),
];

pub fn access_policy() -> AccessPolicy {
    AccessPolicy::new(METHOD_ACCESS.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_classifier_method_has_exactly_one_access_rule() {
        let declared = esocial_proto::method_paths("esocial.classifier.v1");
        let mut listed: Vec<String> = METHOD_ACCESS.iter().map(|(path, _)| (*path).to_owned()).collect();
        listed.sort();
        assert_eq!(listed, declared, "the access table must list exactly the methods of the proto");
    }
}
