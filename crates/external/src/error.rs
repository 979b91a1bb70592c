//! What a call to an external system can end in, for a caller to branch on.

use tonic::Code;
use tonic_types::StatusExt as _;

use crate::TokenError;

/// The `google.rpc.ErrorInfo` metadata keys under which the external systems
/// name the record that already exists (see the protos' service comments).
const EXISTING_RECORD_KEYS: &[&str] = &["act_record_number", "register_id", "unzr", "rnokpp", "patient_id"];

/// One problem with a field, as named by the remote system
/// (`google.rpc.BadRequest`) or found in its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// The proto field path, e.g. `registration.mother_rnokpp`.
    pub field: String,
    pub description: String,
}

impl std::fmt::Display for FieldProblem {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: {}", self.field, self.description)
    }
}

fn summary(problems: &[FieldProblem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// The outcome of a failed call to an external system.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The remote system has no such record.
    #[error("not found: {message}")]
    NotFound { message: String },
    /// The record exists already; `existing_record` is its identifier when
    /// the remote system named it (an act record number, a register id).
    #[error("already exists: {message}")]
    AlreadyExists { message: String, existing_record: Option<String> },
    /// The request is valid but the remote system's rules do not allow it
    /// (`FAILED_PRECONDITION`); `reason` is the machine-readable reason of
    /// its `google.rpc.ErrorInfo`, when given.
    #[error("refused: {message}")]
    Refused { reason: Option<String>, message: String },
    /// The remote system found the request invalid (`INVALID_ARGUMENT`).
    #[error("the request was refused as invalid: {message}")]
    InvalidRequest { message: String, problems: Vec<FieldProblem> },
    /// The gateway or the remote system did not accept esocial's credentials
    /// or rights (`UNAUTHENTICATED`, `PERMISSION_DENIED`).
    #[error("access denied: {message}")]
    AccessDenied { message: String },
    /// Temporarily unable to answer (`UNAVAILABLE`, `RESOURCE_EXHAUSTED`,
    /// `ABORTED`); worth retrying later.
    #[error("unavailable: {message}")]
    Unavailable { message: String },
    /// No answer within the call's deadline; the call may or may not have
    /// taken effect.
    #[error("deadline exceeded: {message}")]
    DeadlineExceeded { message: String },
    /// The remote system answered with something that does not hold
    /// together: a malformed identifier, a missing field, a UNZR that does
    /// not carry the birth date.
    #[error("invalid response from {system}: {problems}", problems = summary(problems))]
    InvalidResponse { system: &'static str, problems: Vec<FieldProblem> },
    /// Any other status (`INTERNAL`, `UNIMPLEMENTED`, …).
    #[error("remote error {code:?}: {message}")]
    Remote { code: Code, message: String },
    /// No access token could be obtained for the gateway.
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl Error {
    /// An invalid response with one problem.
    pub fn invalid_response(system: &'static str, field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidResponse {
            system,
            problems: vec![FieldProblem { field: field.into(), description: description.into() }],
        }
    }

    /// Whether the same call may succeed later without any change.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::DeadlineExceeded { .. } | Error::Token(_))
    }

    /// The error for a gRPC status, with the details the external systems
    /// attach (`google.rpc.ErrorInfo`, `google.rpc.BadRequest`).
    pub fn from_status(status: &tonic::Status) -> Self {
        let message = status.message().to_owned();
        let details = status.get_error_details();
        match status.code() {
            Code::NotFound => Error::NotFound { message },
            Code::AlreadyExists => {
                let existing_record = details
                    .error_info()
                    .and_then(|info| EXISTING_RECORD_KEYS.iter().find_map(|key| info.metadata.get(*key).cloned()));
                Error::AlreadyExists { message, existing_record }
            }
            Code::FailedPrecondition => {
                Error::Refused { reason: details.error_info().map(|info| info.reason.clone()), message }
            }
            Code::InvalidArgument | Code::OutOfRange => {
                let problems = details
                    .bad_request()
                    .map(|bad_request| {
                        bad_request
                            .field_violations
                            .iter()
                            .map(|violation| FieldProblem {
                                field: violation.field.clone(),
                                description: violation.description.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Error::InvalidRequest { message, problems }
            }
            Code::Unauthenticated | Code::PermissionDenied => Error::AccessDenied { message },
            Code::Unavailable | Code::ResourceExhausted | Code::Aborted => Error::Unavailable { message },
            Code::DeadlineExceeded | Code::Cancelled => Error::DeadlineExceeded { message },
            code => Error::Remote { code, message },
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Error::from_status(&status)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tonic_types::ErrorDetails;

    use super::*;

    #[test]
    fn already_exists_names_the_existing_record_from_error_info() {
        let metadata = HashMap::from([("act_record_number".to_owned(), "2026-000001".to_owned())]);
        let status = tonic::Status::with_error_details(
            Code::AlreadyExists,
            "registered",
            ErrorDetails::with_error_info("BIRTH_ALREADY_REGISTERED", "civil-registry", metadata),
        );
        match Error::from(status) {
            Error::AlreadyExists { existing_record, message } => {
                assert_eq!(existing_record.as_deref(), Some("2026-000001"));
                assert_eq!(message, "registered");
            }
            other => panic!("unexpected {other:?}"),
        }
        let plain = Error::from(tonic::Status::already_exists("exists"));
        assert!(matches!(plain, Error::AlreadyExists { existing_record: None, .. }));
    }

    #[test]
    fn failed_precondition_keeps_the_reason_and_bad_request_keeps_the_fields() {
        let status = tonic::Status::with_error_details(
            Code::FailedPrecondition,
            "court",
            ErrorDetails::with_error_info("BIRTH_ESTABLISHED_BY_COURT", "ehealth", HashMap::new()),
        );
        assert!(matches!(
            Error::from(status),
            Error::Refused { reason: Some(reason), .. } if reason == "BIRTH_ESTABLISHED_BY_COURT"
        ));
        let status = tonic::Status::with_error_details(
            Code::InvalidArgument,
            "invalid",
            ErrorDetails::with_bad_request_violation("iban", "check digit does not match"),
        );
        match Error::from(status) {
            Error::InvalidRequest { problems, .. } => {
                assert_eq!(
                    problems,
                    vec![FieldProblem {
                        field: "iban".to_owned(),
                        description: "check digit does not match".to_owned()
                    }]
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn transport_codes_are_retryable_and_the_rest_are_not() {
        assert!(Error::from(tonic::Status::unavailable("down")).is_retryable());
        assert!(Error::from(tonic::Status::deadline_exceeded("slow")).is_retryable());
        assert!(Error::from(tonic::Status::resource_exhausted("busy")).is_retryable());
        assert!(!Error::from(tonic::Status::not_found("none")).is_retryable());
        assert!(matches!(Error::from(tonic::Status::permission_denied("no")), Error::AccessDenied { .. }));
        assert!(matches!(Error::from(tonic::Status::internal("boom")), Error::Remote { code: Code::Internal, .. }));
    }
}
