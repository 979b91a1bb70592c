//! The mapping from service errors to gRPC statuses, in one place.
//!
//! Services define their own `Error` enum and convert it into [`ApiError`],
//! which knows the status code of each kind. Invalid input carries
//! `google.rpc.BadRequest` field violations naming the offending fields;
//! internal errors are logged with their cause and the caller sees only
//! "internal error".

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// The `domain` of the `google.rpc.ErrorInfo` details esocial attaches.
pub const ERROR_DOMAIN: &str = "esocial";

/// One invalid field of a request, by its proto path (`content.name_uk`,
/// `validity.valid_from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }
}

/// Collects the violations of one request, so that all are reported at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Records the error of a parse under `field`, returning the value if it
    /// parsed.
    pub fn check<T, E: std::fmt::Display>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.add(field, error.to_string());
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One line of free text: trimmed, required or not, at most `length_max`
    /// characters, without control characters. Returns it trimmed.
    pub fn text(&mut self, field: &str, value: &str, required: bool, length_max: usize) -> String {
        let trimmed = value.trim();
        if required && trimmed.is_empty() {
            self.add(field, "is required");
        } else if trimmed.chars().count() > length_max {
            self.add(field, format!("must be at most {length_max} characters"));
        } else if trimmed.chars().any(char::is_control) {
            self.add(field, "must not contain control characters");
        }
        trimmed.to_owned()
    }

    /// `Ok(())` if nothing was found, else the invalid-argument error.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() { Ok(()) } else { Err(ApiError::InvalidArgument(self.0)) }
    }
}

/// The kinds of failure a caller can act on, each with its gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid request")]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// Already exists, with a reason and metadata (for example the id of
    /// what exists) in `google.rpc.ErrorInfo`.
    #[error("{message}")]
    AlreadyExistsAs { message: String, reason: &'static str, metadata: Vec<(&'static str, String)> },
    /// The request is valid but the system's state does not allow it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A concurrency conflict; the client should re-read and retry.
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// Unauthenticated, with a machine-readable reason (`google.rpc.ErrorInfo`
    /// in domain [`ERROR_DOMAIN`]) so clients can tell the cases apart.
    #[error("{message}")]
    Refused { reason: &'static str, message: String },
    /// Too many requests; `google.rpc.RetryInfo` says when to try again.
    #[error("{message}")]
    ResourceExhausted { message: String, retry_after: std::time::Duration },
    #[error("{0}")]
    Unavailable(String),
    /// Anything else. Logged in full; the caller sees "internal error".
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Self {
        ApiError::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(error.into())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::error!(%error, "database unavailable");
                ApiError::Unavailable("the database is unavailable; retry later".to_owned())
            }
            _ => ApiError::Internal(error.into()),
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidArgument(violations) => {
                let summary = violations
                    .iter()
                    .map(|violation| format!("{}: {}", violation.field, violation.description))
                    .collect::<Vec<_>>()
                    .join("; ");
                let details = ErrorDetails::with_bad_request(
                    violations
                        .into_iter()
                        .map(|violation| tonic_types::FieldViolation::new(violation.field, violation.description))
                        .collect::<Vec<_>>(),
                );
                Status::with_error_details(Code::InvalidArgument, format!("invalid request: {summary}"), details)
            }
            ApiError::NotFound(message) => Status::not_found(message),
            ApiError::AlreadyExists(message) => Status::already_exists(message),
            ApiError::AlreadyExistsAs { message, reason, metadata } => {
                let metadata: std::collections::HashMap<String, String> =
                    metadata.into_iter().map(|(key, value)| (key.to_owned(), value)).collect();
                Status::with_error_details(
                    Code::AlreadyExists,
                    message,
                    ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata),
                )
            }
            ApiError::FailedPrecondition(message) => Status::failed_precondition(message),
            ApiError::Aborted(message) => Status::aborted(message),
            ApiError::PermissionDenied(message) => Status::permission_denied(message),
            ApiError::Unauthenticated(message) => Status::unauthenticated(message),
            ApiError::Refused { reason, message } => Status::with_error_details(
                Code::Unauthenticated,
                message,
                ErrorDetails::with_error_info(reason.to_uppercase(), ERROR_DOMAIN, std::collections::HashMap::new()),
            ),
            ApiError::ResourceExhausted { message, retry_after } => Status::with_error_details(
                Code::ResourceExhausted,
                message,
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            ApiError::Unavailable(message) => Status::unavailable(message),
            ApiError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "internal error");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt as _;

    use super::*;

    #[test]
    fn invalid_argument_names_every_field_in_bad_request_details() {
        let mut violations = Violations::new();
        violations.add("code", "must be upper-case letters");
        violations.add("validity.valid_from", "is required");
        let status = Status::from(violations.finish().expect_err("has violations"));
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad_request = status.get_details_bad_request().expect("BadRequest details");
        let fields: Vec<_> = bad_request.field_violations.iter().map(|violation| violation.field.as_str()).collect();
        assert_eq!(fields, ["code", "validity.valid_from"]);
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let status =
            Status::from(ApiError::internal(anyhow::anyhow!("connection to 10.0.0.5 refused: password for user x")));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
    }
}
