//! Test support shared by every service's API tests.
//!
//! Tests run against a real PostgreSQL and a real NATS (127.0.0.1:5432 and
//! :4222 unless `ESOCIAL_TEST_DATABASE_URL` / `ESOCIAL_TEST_NATS_URL` say
//! otherwise). Each test gets its own database and its own JetStream stream
//! and subject prefix, so tests run in parallel; both are removed when the
//! test's handles drop.

#![allow(clippy::print_stdout)]

pub mod bench;
mod database;
mod events;
pub mod grpc;
mod nats_server;
mod proxy;
mod tokens;

use std::path::{Path, PathBuf};

pub use database::TestDatabase;
pub use events::TestEvents;
pub use nats_server::NatsServer;
pub use proxy::TcpProxy;
pub use tokens::{TestTokens, person_claims};

/// Installs telemetry once per test process (text logs at `RUST_LOG`,
/// default `warn`), so spans carry trace context as in production.
pub fn init_telemetry(service: &'static str) {
    static GUARD: std::sync::OnceLock<Option<esocial_kit::telemetry::TelemetryGuard>> = std::sync::OnceLock::new();
    GUARD.get_or_init(|| {
        let settings = esocial_kit::config::TelemetrySettings {
            log_format: esocial_kit::config::LogFormat::Text,
            log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            otlp_endpoint: None,
        };
        esocial_kit::telemetry::init(service, &settings).ok()
    });
}

/// The PostgreSQL server tests use (any database on it; tests create theirs).
pub fn database_server_url() -> String {
    std::env::var("ESOCIAL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The NATS server tests use.
pub fn nats_url() -> String {
    std::env::var("ESOCIAL_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A short unique name fragment: lower-case hex.
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A directory removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!("esocial-{label}-{}", unique_suffix()));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs async clean-up from `Drop`, on a thread of its own (the test's
/// runtime may be shutting down).
fn clean_up_in_background<F>(work: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let handle = std::thread::spawn(move || {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            runtime.block_on(async {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(10), work).await;
            });
        }
    });
    let _ = handle.join();
}

/// Asks `check` every 50 ms until it answers `Ok`, for what another task
/// writes a moment later (a log entry, a replicated row); after `limit` the
/// test fails with the last answer's `Err`.
pub async fn eventually<Value, Check, Answer>(limit: std::time::Duration, mut check: Check) -> Value
where
    Check: FnMut() -> Answer,
    Answer: std::future::Future<Output = Result<Value, String>>,
{
    let started = std::time::Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => assert!(started.elapsed() < limit, "not within {limit:?}: {last}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
