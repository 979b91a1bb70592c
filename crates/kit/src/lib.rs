//! The service kit: what every esocial service stands on.
//!
//! A service reads its [`config`], initialises [`telemetry`], opens its
//! [`db`] pool and runs its migrations, connects to [`nats`], builds its
//! routes and hands them with an already bound listener to
//! [`server::GrpcServer::serve`]. Errors become gRPC statuses through
//! [`error::ApiError`]; retried mutations use [`idempotency`].

pub mod config;
pub mod dates;
pub mod db;
pub mod error;
pub mod idempotency;
pub mod identity;
pub mod keyfile;
pub mod nats;
pub mod paging;
pub mod rate;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod time;

pub use error::{ApiError, FieldViolation, Violations};
