//! Calling services under test: bearer tokens, dates, request ids and the
//! fields an `INVALID_ARGUMENT` names.

use chrono::Datelike as _;
use esocial_proto::common::v1 as common;

/// Adds `authorization: Bearer …` (when there is a token) to every call.
#[derive(Debug, Clone)]
pub struct BearerToken(pub Option<String>);

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            let value = format!("Bearer {token}").parse().map_err(|_| tonic::Status::internal("bad token"))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// A `YYYY-MM-DD` text as a protobuf date; panics on a bad test literal.
pub fn date(text: &str) -> common::Date {
    let parsed: chrono::NaiveDate = text.parse().expect("test date");
    common::Date {
        year: parsed.year(),
        month: i32::try_from(parsed.month()).expect("month"),
        day: i32::try_from(parsed.day()).expect("day"),
    }
}

pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The fields named in a status's `BadRequest` details.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    status
        .get_details_bad_request()
        .map(|details| details.field_violations.into_iter().map(|violation| violation.field).collect())
        .unwrap_or_default()
}
