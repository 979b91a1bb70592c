//! The gateway's own types: member identifiers, access rights, event types,
//! limits. Each is built only by parsing, so a value in hand is valid.

use std::fmt;

use chrono::{DateTime, Utc};
use esocial_identifiers::Edrpou;

/// A member system's X-Road style identifier:
/// `UA/<class>/<registry code>/<subsystem>`, e.g. `UA/GOV/43395033/diia`.
/// The registry code is the organization's EDRPOU (check digit verified).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(String);

/// Member classes: state bodies, commercial organizations, non-profits.
pub const MEMBER_CLASSES: [&str; 3] = ["GOV", "COM", "NGO"];
const SUBSYSTEM_LENGTH_MAX: usize = 64;

impl MemberId {
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let [instance, class, code, subsystem] = parts.as_slice() else {
            return Err("must be UA/<class>/<EDRPOU>/<subsystem>, e.g. UA/GOV/43395033/diia".to_owned());
        };
        if *instance != "UA" {
            return Err("must start with the instance UA".to_owned());
        }
        if !MEMBER_CLASSES.contains(class) {
            return Err(format!("member class {class:?} is not one of {}", MEMBER_CLASSES.join(", ")));
        }
        code.parse::<Edrpou>().map_err(|error| format!("registry code: {error}"))?;
        let subsystem_ok = !subsystem.is_empty()
            && subsystem.len() <= SUBSYSTEM_LENGTH_MAX
            && subsystem.starts_with(|character: char| character.is_ascii_lowercase() || character.is_ascii_digit())
            && subsystem.chars().all(|character| {
                character.is_ascii_lowercase() || character.is_ascii_digit() || "._-".contains(character)
            });
        if !subsystem_ok {
            return Err(format!(
                "subsystem must be 1 to {SUBSYSTEM_LENGTH_MAX} lower-case letters, digits, '.', '_' or '-'"
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

fn is_identifier(text: &str) -> bool {
    // By bytes: every call's path is checked, and ASCII is all it may hold.
    text.as_bytes().first().is_some_and(|first| first.is_ascii_alphabetic() || *first == b'_')
        && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// The longest method path the gateway repeats whole, in a log entry or in
/// a refusal. gRPC method paths are short (`/package.Service/Method`), but a
/// caller may send any path: a longer one is shown cut, with its length, so
/// that no log entry outgrows what the log's indexes take (PostgreSQL
/// refuses a B-tree entry over 2,704 bytes, and a batch it refused would
/// stop the log, and with it every call) and no refusal outgrows a header.
pub const METHOD_SHOWN_MAX: usize = 256;

/// `path` as the gateway records and repeats it: whole up to
/// [`METHOD_SHOWN_MAX`] bytes, else cut there and marked with its length.
#[must_use]
pub fn method_shown(path: &str) -> std::borrow::Cow<'_, str> {
    if path.len() <= METHOD_SHOWN_MAX {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut cut = METHOD_SHOWN_MAX;
    while !path.is_char_boundary(cut) {
        cut -= 1;
    }
    std::borrow::Cow::Owned(format!("{}… ({} bytes)", &path[..cut], path.len()))
}

/// A gRPC method path `/package.Service/Method` split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodPath<'a> {
    /// `esocial.registry.v1`
    pub package: &'a str,
    /// `esocial.registry.v1.RegistryService`
    pub service: &'a str,
    /// `GetPerson`
    pub method: &'a str,
}

impl<'a> MethodPath<'a> {
    /// `None` unless `path` is `/<package>.<Service>/<Method>` with
    /// identifier characters only.
    pub fn parse(path: &'a str) -> Option<Self> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        let (package, service_name) = service.rsplit_once('.')?;
        let well_formed = is_identifier(method)
            && is_identifier(service_name)
            && package.split('.').all(is_identifier)
            && !package.is_empty();
        well_formed.then_some(Self { package, service, method })
    }
}

/// What an access right covers: one method, or every method of a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MethodRight {
    /// `/esocial.registry.v1.RegistryService/GetPerson`
    Method(String),
    /// `/esocial.registry.v1.RegistryService/*`, holding the service name.
    Service(String),
}

impl MethodRight {
    pub fn parse(text: &str) -> Result<Self, String> {
        const FORM: &str =
            "must be a full method path /package.Service/Method, or /package.Service/* for all its methods";
        if let Some(service) = text.strip_suffix("/*") {
            let probe = format!("{service}/Any");
            let path = MethodPath::parse(&probe).ok_or_else(|| FORM.to_owned())?;
            return Ok(MethodRight::Service(path.service.to_owned()));
        }
        MethodPath::parse(text).ok_or_else(|| FORM.to_owned())?;
        Ok(MethodRight::Method(text.to_owned()))
    }

    /// The form stored and shown: the path, or `/<service>/*`.
    pub fn to_text(&self) -> String {
        match self {
            MethodRight::Method(path) => path.clone(),
            MethodRight::Service(service) => format!("/{service}/*"),
        }
    }

    pub fn covers(&self, path: &MethodPath<'_>, full_path: &str) -> bool {
        match self {
            MethodRight::Method(method) => method == full_path,
            MethodRight::Service(service) => service == path.service,
        }
    }
}

/// An event type a member may subscribe to: `<service>.<entity>.<event>`
/// (the relative NATS subject), e.g. `registry.idp.certificate.revoked`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventTypeName(String);

impl EventTypeName {
    pub fn parse(text: &str) -> Result<Self, String> {
        let tokens: Vec<&str> = text.split('.').collect();
        let token_ok = |token: &&str| {
            !token.is_empty()
                && token
                    .chars()
                    .all(|character| character.is_ascii_lowercase() || character.is_ascii_digit() || character == '_')
        };
        if tokens.len() < 3 || !tokens.iter().all(token_ok) || text.len() > 200 {
            return Err(
                "must be <service>.<entity>.<event> in lower case, e.g. registry.idp.certificate.revoked".to_owned()
            );
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventTypeName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatus {
    Active,
    Suspended,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Active => "active",
            MemberStatus::Suspended => "suspended",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(MemberStatus::Active),
            "suspended" => Some(MemberStatus::Suspended),
            _ => None,
        }
    }
}

/// How much of each exchange the message log keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogMode {
    /// Metadata, sizes and digests.
    Metadata,
    /// Also the bodies.
    Full,
}

impl LogMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LogMode::Metadata => "metadata",
            LogMode::Full => "full",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "metadata" => Some(LogMode::Metadata),
            "full" => Some(LogMode::Full),
            _ => None,
        }
    }
}

/// A member's limits as registered; 0 means "the gateway's default".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub requests_per_second: u32,
    pub burst: u32,
    pub message_bytes_max: u32,
}

/// Upper bounds an administrator may set.
pub const REQUESTS_PER_SECOND_MAX: u32 = 100_000;
pub const BURST_MAX: u32 = 100_000;
pub const MESSAGE_BYTES_MAX: u32 = 256 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: MemberId,
    pub name: String,
    pub client_id: String,
    pub status: MemberStatus,
    pub contact: String,
    pub limits: Limits,
    pub log_mode: LogMode,
    /// SHA-256 of the DER of the client certificate it must present over
    /// mutual TLS; none: its token alone.
    pub client_certificate: Option<[u8; 32]>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRight {
    pub member_id: MemberId,
    pub right: MethodRight,
    pub granted_at: DateTime<Utc>,
    pub granted_by: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_follow_the_x_road_form_with_a_valid_edrpou() {
        assert!(MemberId::parse("UA/GOV/32855961/diia").is_ok());
        assert!(MemberId::parse("UA/COM/14360506/bank-1").is_ok());
        let refused = [
            "UA/GOV/32855968/diia",  // EDRPOU check digit
            "PL/GOV/32855961/diia",  // instance
            "UA/EDU/32855961/diia",  // class
            "UA/GOV/32855961/Diia",  // upper case subsystem
            "UA/GOV/32855961/",      // no subsystem
            "UA/GOV/32855961",       // three parts
            "UA/GOV/32855961/a/b",   // five parts
            "UA/GOV/32855961/d iia", // space
        ];
        for text in refused {
            assert!(MemberId::parse(text).is_err(), "{text} must be refused");
        }
    }

    #[test]
    fn a_method_path_is_shown_whole_up_to_its_limit_and_cut_with_its_length_beyond() {
        let usual = "/esocial.registry.v1.RegistryService/GetPerson";
        assert!(matches!(method_shown(usual), std::borrow::Cow::Borrowed(shown) if shown == usual));
        let at_limit = format!("/a.B/{}", "c".repeat(METHOD_SHOWN_MAX - 5));
        assert_eq!(method_shown(&at_limit), at_limit.as_str());
        let long = format!("/a.B/{}", "c".repeat(10_000));
        let shown = method_shown(&long);
        assert_eq!(shown, format!("{}… (10005 bytes)", &long[..METHOD_SHOWN_MAX]));
        assert!(shown.len() < METHOD_SHOWN_MAX + 20, "{}", shown.len());
        // Cut at a character's boundary, never inside one.
        let wide = format!("/a.B/{}", "ї".repeat(200));
        let shown = method_shown(&wide);
        let kept = shown.strip_suffix(&format!("… ({} bytes)", wide.len())).expect("marked");
        assert!(wide.starts_with(kept) && kept.len() <= METHOD_SHOWN_MAX && kept.len() >= METHOD_SHOWN_MAX - 1);
    }

    #[test]
    fn method_paths_split_into_package_service_and_method() {
        let path = MethodPath::parse("/esocial.registry.v1.RegistryService/GetPerson").expect("path");
        assert_eq!(path.package, "esocial.registry.v1");
        assert_eq!(path.service, "esocial.registry.v1.RegistryService");
        assert_eq!(path.method, "GetPerson");
        for bad in [
            "",
            "/",
            "esocial.registry.v1.RegistryService/GetPerson",
            "/RegistryService/GetPerson",
            "/a.B/",
            "/a.B/C/D",
            "/a..B/C",
            "/a.B/C-D",
        ] {
            assert_eq!(MethodPath::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rights_cover_one_method_or_a_whole_service() {
        let one = MethodRight::parse("/esocial.registry.v1.IdpService/VerifyIdpCertificate").expect("method");
        let all = MethodRight::parse("/esocial.registry.v1.IdpService/*").expect("service");
        assert_eq!(all, MethodRight::Service("esocial.registry.v1.IdpService".to_owned()));
        assert_eq!(all.to_text(), "/esocial.registry.v1.IdpService/*");
        let verify = "/esocial.registry.v1.IdpService/VerifyIdpCertificate";
        let issue = "/esocial.registry.v1.IdpService/IssueIdpCertificate";
        let person = "/esocial.registry.v1.RegistryService/GetPerson";
        let check = |right: &MethodRight, path: &str| right.covers(&MethodPath::parse(path).expect("path"), path);
        assert!(check(&one, verify));
        assert!(!check(&one, issue));
        assert!(check(&all, verify) && check(&all, issue));
        assert!(!check(&all, person));
        for bad in [
            "*",
            "/*",
            "/esocial.registry.v1.*",
            "/esocial.registry.v1.IdpService/Verify*",
            "esocial.registry.v1.IdpService/*",
        ] {
            assert!(MethodRight::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn event_types_have_at_least_three_lower_case_tokens() {
        assert!(EventTypeName::parse("registry.idp.certificate.revoked").is_ok());
        assert!(EventTypeName::parse("registry.person.registered").is_ok());
        for bad in [
            "registry.person",
            "registry.*.registered",
            "registry.>",
            "Registry.person.registered",
            "registry..registered",
        ] {
            assert!(EventTypeName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
