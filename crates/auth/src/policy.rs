use std::collections::HashMap;

use crate::{Caller, INFRASTRUCTURE_METHODS, Role};

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token (health, reflection, public verification).
    Public,
    /// Any caller with a valid token.
    Authenticated,
    /// A caller with a valid token holding at least one of these roles.
    AnyRole(&'static [Role]),
}

impl Access {
    pub fn allows(self, caller: &Caller) -> bool {
        match self {
            Access::Public | Access::Authenticated => true,
            Access::AnyRole(roles) => roles.iter().any(|role| caller.has_role(*role)),
        }
    }
}

/// The per-method table. Deny by default: a method path that is not in the
/// table is refused for everyone.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    rules: HashMap<String, Access>,
}

impl AccessPolicy {
    /// A table of `(method path, access)` pairs; the health and reflection
    /// methods are added as public.
    pub fn new<'a>(rules: impl IntoIterator<Item = (&'a str, Access)>) -> Self {
        let mut table: HashMap<String, Access> =
            INFRASTRUCTURE_METHODS.iter().map(|path| ((*path).to_owned(), Access::Public)).collect();
        for (path, access) in rules {
            table.insert(path.to_owned(), access);
        }
        Self { rules: table }
    }

    /// Joins tables (the all-in-one process serves several services).
    #[must_use]
    pub fn merge(mut self, other: &AccessPolicy) -> Self {
        self.rules.extend(other.rules.iter().map(|(path, access)| (path.clone(), *access)));
        self
    }

    pub fn access_for(&self, method_path: &str) -> Option<Access> {
        self.rules.get(method_path).copied()
    }

    pub fn method_paths(&self) -> impl Iterator<Item = &str> {
        self.rules.keys().map(String::as_str)
    }
}
