//! Typed settings from environment variables.
//!
//! Settings are read from an [`Env`] (the process environment, or a map in
//! tests) by a [`Reader`] that records every problem instead of stopping at
//! the first, so a bad deployment is told everything wrong at once, before any
//! port is bound. Every variable a service reads is listed in [`VARIABLES`]
//! or in the service's own table, with its default and meaning; the README
//! table and the compose file check are built from those lists.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// A documented environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

pub const DATABASE_URL: Variable = Variable {
    name: "DATABASE_URL",
    default: "postgres://postgres@127.0.0.1:5432/esocial",
    meaning: "PostgreSQL database; each service uses its own schema in it",
};
pub const DATABASE_MAX_CONNECTIONS: Variable =
    Variable { name: "ESOCIAL_DATABASE_MAX_CONNECTIONS", default: "10", meaning: "connection pool size per service" };
pub const NATS_URL: Variable =
    Variable { name: "NATS_URL", default: "nats://127.0.0.1:4222", meaning: "NATS server with JetStream" };
pub const EVENT_STREAM: Variable =
    Variable { name: "ESOCIAL_EVENT_STREAM", default: "ESOCIAL", meaning: "JetStream stream holding all events" };
pub const EVENT_SUBJECT_PREFIX: Variable = Variable {
    name: "ESOCIAL_EVENT_SUBJECT_PREFIX",
    default: "esocial",
    meaning: "first token of every event subject (the stream captures `<prefix>.>`)",
};
pub const EVENT_DUPLICATE_WINDOW_SECONDS: Variable = Variable {
    name: "ESOCIAL_EVENT_DUPLICATE_WINDOW_SECONDS",
    default: "600",
    meaning: "JetStream de-duplication window for `Nats-Msg-Id`",
};
pub const EVENT_STREAM_REPLICAS: Variable =
    Variable { name: "ESOCIAL_EVENT_STREAM_REPLICAS", default: "1", meaning: "stream replicas (3 in a NATS cluster)" };
pub const GRPC_TIMEOUT_MS: Variable =
    Variable { name: "ESOCIAL_GRPC_TIMEOUT_MS", default: "30000", meaning: "longest a call may run on the server" };
pub const GRPC_MESSAGE_BYTES_MAX: Variable = Variable {
    name: "ESOCIAL_GRPC_MESSAGE_BYTES_MAX",
    default: "4194304",
    meaning: "largest request or response message",
};
pub const SHUTDOWN_GRACE_MS: Variable = Variable {
    name: "ESOCIAL_SHUTDOWN_GRACE_MS",
    default: "10000",
    meaning: "how long in-flight calls may finish after SIGTERM/SIGINT",
};
pub const TOKEN_ISSUER: Variable = Variable {
    name: "ESOCIAL_TOKEN_ISSUER",
    default: "http://127.0.0.1:50057",
    meaning: "the only accepted `iss` of access tokens: the identity service's public HTTP base URL",
};
pub const IDENTITY_URL: Variable = Variable {
    name: "ESOCIAL_IDENTITY_URL",
    default: "http://127.0.0.1:50056",
    meaning: "the identity service's gRPC endpoint; token verification keys come from it",
};
pub const CLIENT_ID: Variable = Variable {
    name: "ESOCIAL_CLIENT_ID",
    default: "",
    meaning: "this service's system client id, for calls to other services (client credentials)",
};
pub const CLIENT_KEY_FILE: Variable =
    Variable { name: "ESOCIAL_CLIENT_KEY_FILE", default: "", meaning: "PKCS#8 PEM Ed25519 key of that system client" };
pub const DATA_DIR: Variable = Variable {
    name: "ESOCIAL_DATA_DIR",
    default: ".esocial",
    meaning: "local state of the sandbox: its test CA, identity master key, people's certificates",
};
pub const LOG_FORMAT: Variable =
    Variable { name: "ESOCIAL_LOG_FORMAT", default: "text", meaning: "`text` or `json` (one object per line)" };
pub const LOG_FILTER: Variable =
    Variable { name: "RUST_LOG", default: "info", meaning: "log filter, tracing-subscriber syntax" };
pub const OTLP_ENDPOINT: Variable = Variable {
    name: "OTEL_EXPORTER_OTLP_ENDPOINT",
    default: "",
    meaning: "OTLP/gRPC collector; traces and metrics are exported when set",
};

/// The variables of the kit, shared by every service.
pub const VARIABLES: &[Variable] = &[
    DATABASE_URL,
    DATABASE_MAX_CONNECTIONS,
    NATS_URL,
    EVENT_STREAM,
    EVENT_SUBJECT_PREFIX,
    EVENT_DUPLICATE_WINDOW_SECONDS,
    EVENT_STREAM_REPLICAS,
    GRPC_TIMEOUT_MS,
    GRPC_MESSAGE_BYTES_MAX,
    SHUTDOWN_GRACE_MS,
    TOKEN_ISSUER,
    IDENTITY_URL,
    CLIENT_ID,
    CLIENT_KEY_FILE,
    DATA_DIR,
    LOG_FORMAT,
    LOG_FILTER,
    OTLP_ENDPOINT,
];

/// Environment variables, from the process or from a map (tests).
#[derive(Debug, Clone, Default)]
pub struct Env {
    values: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Self { values: std::env::vars().collect() }
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self { values: pairs.into_iter().map(|(key, value)| (key.into(), value.into())).collect() }
    }

    /// A copy with some values replaced.
    #[must_use]
    pub fn with<K: Into<String>, V: Into<String>>(mut self, pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        self.values.extend(pairs.into_iter().map(|(key, value)| (key.into(), value.into())));
        self
    }

    /// The value of a variable; unset and empty are the same.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str).filter(|value| !value.is_empty())
    }
}

/// Everything wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  {}", .problems.join("\n  "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// Reads variables and collects problems.
#[derive(Debug)]
pub struct Reader<'a> {
    env: &'a Env,
    problems: Vec<String>,
}

impl<'a> Reader<'a> {
    pub fn new(env: &'a Env) -> Self {
        Self { env, problems: Vec::new() }
    }

    /// The raw text of a variable or its default.
    pub fn text(&self, variable: Variable) -> String {
        self.env.get(variable.name).unwrap_or(variable.default).to_owned()
    }

    /// Parses a variable; on failure records a problem and returns the
    /// default's parse (which the variable tables guarantee to succeed).
    pub fn parse<T>(&mut self, variable: Variable) -> T
    where
        T: FromStr + Default,
        T::Err: Display,
    {
        let text = self.text(variable);
        match text.parse() {
            Ok(value) => value,
            Err(error) => {
                self.problems.push(format!("{}={text:?}: {error}", variable.name));
                variable.default.parse().unwrap_or_default()
            }
        }
    }

    /// A whole number within `range`.
    pub fn number_in(&mut self, variable: Variable, range: std::ops::RangeInclusive<u64>) -> u64 {
        let value: u64 = self.parse(variable);
        if !range.contains(&value) {
            self.problems.push(format!(
                "{}={value}: must be between {} and {}",
                variable.name,
                range.start(),
                range.end()
            ));
        }
        value
    }

    pub fn milliseconds(&mut self, variable: Variable, range: std::ops::RangeInclusive<u64>) -> Duration {
        Duration::from_millis(self.number_in(variable, range))
    }

    pub fn socket_addr(&mut self, variable: Variable) -> SocketAddr {
        let text = self.text(variable);
        text.parse().unwrap_or_else(|error| {
            self.problems
                .push(format!("{}={text:?}: not a socket address such as 127.0.0.1:50051 ({error})", variable.name));
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    /// A URL with one of the given schemes. A refused value is shown with
    /// any user and password hidden.
    pub fn url(&mut self, variable: Variable, schemes: &[&str]) -> String {
        let text = self.text(variable);
        let scheme_ok =
            text.split_once("://").is_some_and(|(scheme, rest)| schemes.contains(&scheme) && !rest.is_empty());
        if !scheme_ok {
            self.problems.push(format!(
                "{}={:?}: must be a URL starting with {}://",
                variable.name,
                without_credentials(&text),
                schemes.join("://, ")
            ));
        }
        text
    }

    /// Text limited to the given characters (names that end up in SQL
    /// identifiers or subjects).
    pub fn identifier(&mut self, variable: Variable, allowed: fn(char) -> bool) -> String {
        let text = self.text(variable);
        if text.is_empty() || !text.chars().all(allowed) {
            self.problems.push(format!("{}={text:?}: contains characters that are not allowed", variable.name));
        }
        text
    }

    pub fn path(&self, variable: Variable) -> PathBuf {
        PathBuf::from(self.text(variable))
    }

    /// Records a problem found by the caller.
    pub fn problem(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }

    pub fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() { Ok(()) } else { Err(ConfigError { problems: self.problems }) }
    }
}

/// A URL with its `user:password@` part replaced by `***@`.
pub fn without_credentials(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => format!("{}***{}", &url[..scheme_end + 3], &url[at..]),
        (None, Some(at)) => format!("***{}", &url[at..]),
        _ => url.to_owned(),
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("must be `text` or `json`".to_owned()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    pub log_filter: String,
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSettings {
    pub stream_name: String,
    pub subject_prefix: String,
    pub duplicate_window: Duration,
    pub stream_replicas: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcSettings {
    pub request_timeout: Duration,
    pub message_bytes_max: usize,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub token_issuer: String,
    pub identity_url: String,
    /// This service's own credentials for calling others, when configured.
    pub client: Option<ClientCredentials>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    pub client_id: String,
    pub key_file: PathBuf,
}

/// Settings every service has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonSettings {
    pub database_url: String,
    pub database_max_connections: u32,
    pub nats_url: String,
    pub events: EventSettings,
    pub grpc: GrpcSettings,
    pub auth: AuthSettings,
    pub telemetry: TelemetrySettings,
    pub data_dir: PathBuf,
}

impl CommonSettings {
    /// Reads the kit's variables; problems are recorded in `reader`.
    pub fn read(reader: &mut Reader<'_>) -> Self {
        let subject_token = |character: char| character.is_ascii_alphanumeric() || character == '_' || character == '-';
        let stream_name = |character: char| character.is_ascii_alphanumeric() || character == '_' || character == '-';
        let otlp_endpoint = Some(reader.text(OTLP_ENDPOINT)).filter(|endpoint| !endpoint.is_empty());
        if otlp_endpoint.is_some() {
            reader.url(OTLP_ENDPOINT, &["http", "https"]);
        }
        Self {
            database_url: reader.url(DATABASE_URL, &["postgres", "postgresql"]),
            database_max_connections: u32::try_from(reader.number_in(DATABASE_MAX_CONNECTIONS, 1..=1000)).unwrap_or(10),
            nats_url: reader.url(NATS_URL, &["nats", "tls"]),
            events: EventSettings {
                stream_name: reader.identifier(EVENT_STREAM, stream_name),
                subject_prefix: reader.identifier(EVENT_SUBJECT_PREFIX, subject_token),
                duplicate_window: Duration::from_secs(reader.number_in(EVENT_DUPLICATE_WINDOW_SECONDS, 1..=86_400)),
                stream_replicas: usize::try_from(reader.number_in(EVENT_STREAM_REPLICAS, 1..=5)).unwrap_or(1),
            },
            grpc: GrpcSettings {
                request_timeout: reader.milliseconds(GRPC_TIMEOUT_MS, 1..=600_000),
                message_bytes_max: usize::try_from(reader.number_in(GRPC_MESSAGE_BYTES_MAX, 1024..=268_435_456))
                    .unwrap_or(4 << 20),
                shutdown_grace: reader.milliseconds(SHUTDOWN_GRACE_MS, 0..=600_000),
            },
            auth: AuthSettings {
                token_issuer: reader.url(TOKEN_ISSUER, &["http", "https"]),
                identity_url: reader.url(IDENTITY_URL, &["http", "https"]),
                client: Self::client_credentials(reader),
            },
            telemetry: TelemetrySettings {
                log_format: reader.parse(LOG_FORMAT),
                log_filter: reader.text(LOG_FILTER),
                otlp_endpoint,
            },
            data_dir: reader.path(DATA_DIR),
        }
    }

    fn client_credentials(reader: &mut Reader<'_>) -> Option<ClientCredentials> {
        let client_id = reader.text(CLIENT_ID);
        let key_file = reader.text(CLIENT_KEY_FILE);
        match (client_id.is_empty(), key_file.is_empty()) {
            (true, true) => None,
            (false, false) => Some(ClientCredentials { client_id, key_file: PathBuf::from(key_file) }),
            _ => {
                reader.problem(format!("{} and {} go together", CLIENT_ID.name, CLIENT_KEY_FILE.name));
                None
            }
        }
    }

    /// Reads only the kit's variables.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut reader = Reader::new(env);
        let settings = Self::read(&mut reader);
        reader.finish()?;
        Ok(settings)
    }
}

/// The exit code for bad configuration (EX_CONFIG would be 78; 64 is
/// EX_USAGE, which linkerd and others use for "bad input to the program").
pub const EXIT_BAD_CONFIGURATION: i32 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_work_for_a_local_run() {
        let settings = CommonSettings::from_env(&Env::default()).expect("defaults are valid");
        assert_eq!(settings.database_url, "postgres://postgres@127.0.0.1:5432/esocial");
        assert_eq!(settings.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(settings.events.stream_name, "ESOCIAL");
        assert_eq!(settings.grpc.request_timeout, Duration::from_secs(30));
        assert_eq!(settings.telemetry.otlp_endpoint, None);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_the_variable_name() {
        let env = Env::from_pairs([
            ("DATABASE_URL", "mysql://localhost/esocial"),
            ("ESOCIAL_GRPC_TIMEOUT_MS", "soon"),
            ("ESOCIAL_LOG_FORMAT", "xml"),
            ("ESOCIAL_EVENT_SUBJECT_PREFIX", "a.b"),
            ("ESOCIAL_DATABASE_MAX_CONNECTIONS", "0"),
        ]);
        let error = CommonSettings::from_env(&env).expect_err("invalid");
        let joined = error.problems.join("\n");
        for name in [
            "DATABASE_URL",
            "ESOCIAL_GRPC_TIMEOUT_MS",
            "ESOCIAL_LOG_FORMAT",
            "ESOCIAL_EVENT_SUBJECT_PREFIX",
            "ESOCIAL_DATABASE_MAX_CONNECTIONS",
        ] {
            assert!(joined.contains(name), "{name} missing from:\n{joined}");
        }
        assert_eq!(error.problems.len(), 5, "{joined}");
    }

    #[test]
    fn credentials_never_appear_in_configuration_errors() {
        let env = Env::from_pairs([("DATABASE_URL", "postgress://esocial:s3cret@db:5432/esocial")]);
        let error = CommonSettings::from_env(&env).expect_err("bad scheme");
        let message = error.to_string();
        assert!(!message.contains("s3cret"), "{message}");
        assert!(message.contains("postgress://***@db:5432/esocial"), "{message}");
    }

    #[test]
    fn every_default_in_the_table_parses() {
        // `Reader::parse` falls back to the default; it must itself be valid.
        let settings = CommonSettings::from_env(&Env::from_pairs(
            VARIABLES.iter().map(|variable| (variable.name, variable.default)),
        ));
        assert!(settings.is_ok(), "{settings:?}");
    }
}
