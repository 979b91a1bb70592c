//! The registry's state and its error type.

use esocial_kit::ApiError;

use crate::replica::{SupportTypes, Territories};
use crate::signing::RegistryKey;
use crate::store::{Store, StoreError};

#[derive(Debug)]
pub struct Registry {
    pub store: Store,
    pub territories: Territories,
    pub support_types: SupportTypes,
    pub key: RegistryKey,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        Error::Store(StoreError::Database(error))
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        let api_error = match error {
            Error::Api(api_error) => api_error,
            Error::Store(StoreError::Database(database_error)) => {
                let violated = |constraint| esocial_kit::db::is_constraint_violation(&database_error, constraint);
                if violated("persons_rnokpp") || violated("persons_unzr") {
                    ApiError::Aborted(
                        "a person with this identifier was registered at the same moment: retry".to_owned(),
                    )
                } else if violated("providers_edrpou") || violated("providers_rnokpp") {
                    ApiError::AlreadyExists("a provider with this identifier is registered".to_owned())
                } else if violated("idp_registrations_one_open") {
                    ApiError::FailedPrecondition("the person is already registered as internally displaced".to_owned())
                } else {
                    ApiError::from(database_error)
                }
            }
            Error::Store(StoreError::Corrupt(detail)) => {
                ApiError::internal(anyhow::anyhow!("stored data is not valid: {detail}"))
            }
        };
        tonic::Status::from(api_error)
    }
}
