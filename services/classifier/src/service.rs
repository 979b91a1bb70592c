//! The classifier's operations, on a transaction the caller owns, so that a
//! change, its event and (for gRPC calls) its idempotency record commit
//! together. Used by the gRPC handlers and by the seed.

use chrono::NaiveDate;
use esocial_kit::ApiError;
use esocial_proto::classifier::v1 as pb;
use sqlx::PgConnection;

use crate::convert::{date_to_proto, reference_entry_to_proto, support_version_to_proto};
use crate::domain::{
    Actor, ReferenceBook, ReferenceEntry, ReferenceEntryContent, SupportTypeContent, SupportTypeVersion, Validity,
    VersioningRejection, plan_new_version, plan_retirement,
};
use crate::events;
use crate::store::{Store, StoreError};

/// The classifier's error: what the caller did wrong, or a storage failure.
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
                if esocial_kit::db::is_constraint_violation(&database_error, "support_types_pkey")
                    || esocial_kit::db::is_constraint_violation(&database_error, "reference_entries_pkey")
                {
                    ApiError::Aborted("the entry was created concurrently: re-read and retry".to_owned())
                } else if esocial_kit::db::is_constraint_violation(&database_error, "support_type_versions_no_overlap")
                    || esocial_kit::db::is_constraint_violation(&database_error, "reference_entry_versions_no_overlap")
                {
                    ApiError::FailedPrecondition("the validity period overlaps another version".to_owned())
                } else {
                    ApiError::from(database_error)
                }
            }
            Error::Store(corrupt @ StoreError::Corrupt(_)) => ApiError::internal(corrupt),
        };
        tonic::Status::from(api_error)
    }
}

fn actor_to_proto(actor: &Actor) -> esocial_proto::common::v1::Actor {
    esocial_proto::common::v1::Actor {
        subject: actor.subject.clone(),
        organization_edrpou: actor.organization.clone().unwrap_or_default(),
    }
}

fn rejection(rejection: &VersioningRejection, what: &str) -> Error {
    let message = format!("{what}: {rejection}");
    Error::Api(match rejection {
        VersioningRejection::Stale { .. } => ApiError::Aborted(message),
        VersioningRejection::Unknown => ApiError::NotFound(format!("{what} does not exist")),
        VersioningRejection::NotAfterLatest { .. }
        | VersioningRejection::Overlaps { .. }
        | VersioningRejection::AlreadyEnds { .. } => ApiError::FailedPrecondition(message),
    })
}

/// The result of adding a version.
#[derive(Debug)]
pub struct Created<T> {
    pub created: T,
    /// The version end-dated by it, with its new last day.
    pub end_dated: Option<(u32, NaiveDate)>,
}

pub async fn create_support_type_version(
    transaction: &mut PgConnection,
    actor: &Actor,
    code: &str,
    validity: Validity,
    content: &SupportTypeContent,
    change_reason: &str,
    expected_latest: u32,
) -> Result<Created<SupportTypeVersion>, Error> {
    let what = format!("support type {code}");
    let latest = Store::lock_support_type(transaction, code).await?;
    let plan = plan_new_version(latest, expected_latest, validity).map_err(|reason| rejection(&reason, &what))?;
    if let Some((version, last_day)) = plan.end_date {
        Store::end_date_support_type_version(transaction, code, version, last_day, actor, change_reason).await?;
    }
    let created = Store::insert_support_type_version(
        transaction,
        code,
        plan.new_version,
        validity,
        content,
        change_reason,
        actor,
    )
    .await?;
    let event = pb::SupportTypeVersionCreated {
        version: Some(support_version_to_proto(&created, created.validity.valid_from)),
        end_dated_version: plan.end_date.map(|(version, _)| version),
        end_dated_valid_to: plan.end_date.map(|(_, last_day)| date_to_proto(last_day)),
    };
    esocial_events::outbox::enqueue(transaction, &events::SUPPORT_TYPE_VERSION_CREATED, Some(code), &event).await?;
    Ok(Created { created, end_dated: plan.end_date })
}

pub async fn retire_support_type(
    transaction: &mut PgConnection,
    actor: &Actor,
    code: &str,
    effective_from: NaiveDate,
    reason: &str,
) -> Result<SupportTypeVersion, Error> {
    let what = format!("support type {code}");
    let latest = Store::lock_support_type(transaction, code).await?;
    let (version, last_day) = plan_retirement(latest, effective_from).map_err(|reason| rejection(&reason, &what))?;
    let end_dated = Store::end_date_support_type_version(transaction, code, version, last_day, actor, reason).await?;
    let event = pb::SupportTypeRetired {
        code: code.to_owned(),
        end_dated_version: version,
        valid_to: Some(date_to_proto(last_day)),
        reason: reason.to_owned(),
        recorded_by: Some(actor_to_proto(actor)),
    };
    esocial_events::outbox::enqueue(transaction, &events::SUPPORT_TYPE_RETIRED, Some(code), &event).await?;
    Ok(end_dated)
}

/// Checks a territorial unit's parent: in force on the first day of the
/// version, one level up or more, in the same oblast.
async fn check_territorial_parent(
    transaction: &mut PgConnection,
    code: &str,
    validity: Validity,
    content: &ReferenceEntryContent,
) -> Result<(), Error> {
    let (Some(parent_code), Some(details)) = (&content.parent_code, content.territorial) else {
        return Ok(());
    };
    let Some(parent) = Store::reference_entry_in_force_on(
        transaction,
        ReferenceBook::TerritorialUnits,
        parent_code,
        validity.valid_from,
    )
    .await?
    else {
        return Err(ApiError::FailedPrecondition(format!(
            "parent territorial unit {parent_code} is not in force on {}",
            validity.valid_from
        ))
        .into());
    };
    let parent_level = parent.content.territorial.map(|parent_details| parent_details.level);
    if parent_level.is_none_or(|parent_level| parent_level >= details.level) {
        return Err(ApiError::invalid_field(
            "content.parent_code",
            format!("{parent_code} is not above a {} in the codifier", details.level.as_str()),
        )
        .into());
    }
    if parent_code.get(2..4) != code.get(2..4) {
        return Err(ApiError::invalid_field(
            "content.parent_code",
            format!("{parent_code} is in another first-level unit than {code}"),
        )
        .into());
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub async fn create_reference_entry_version(
    transaction: &mut PgConnection,
    actor: &Actor,
    book: ReferenceBook,
    code: &str,
    validity: Validity,
    content: &ReferenceEntryContent,
    change_reason: &str,
    expected_latest: u32,
) -> Result<Created<ReferenceEntry>, Error> {
    let what = format!("{} entry {code}", book.as_str());
    check_territorial_parent(transaction, code, validity, content).await?;
    let latest = Store::lock_reference_entry(transaction, book, code).await?;
    let plan = plan_new_version(latest, expected_latest, validity).map_err(|reason| rejection(&reason, &what))?;
    if let Some((version, last_day)) = plan.end_date {
        Store::end_date_reference_entry_version(transaction, book, code, version, last_day, actor, change_reason)
            .await?;
    }
    let created = Store::insert_reference_entry_version(
        transaction,
        book,
        code,
        plan.new_version,
        validity,
        content,
        change_reason,
        actor,
    )
    .await?;
    let event = pb::ReferenceEntryVersionCreated {
        entry: Some(reference_entry_to_proto(&created, created.validity.valid_from)),
        end_dated_version: plan.end_date.map(|(version, _)| version),
        end_dated_valid_to: plan.end_date.map(|(_, last_day)| date_to_proto(last_day)),
    };
    let subject = format!("{}/{code}", book.as_str());
    esocial_events::outbox::enqueue(transaction, &events::REFERENCE_ENTRY_VERSION_CREATED, Some(&subject), &event)
        .await?;
    Ok(Created { created, end_dated: plan.end_date })
}

pub async fn retire_reference_entry(
    transaction: &mut PgConnection,
    actor: &Actor,
    book: ReferenceBook,
    code: &str,
    effective_from: NaiveDate,
    reason: &str,
) -> Result<ReferenceEntry, Error> {
    let what = format!("{} entry {code}", book.as_str());
    let latest = Store::lock_reference_entry(transaction, book, code).await?;
    let (version, last_day) = plan_retirement(latest, effective_from).map_err(|reason| rejection(&reason, &what))?;
    let end_dated =
        Store::end_date_reference_entry_version(transaction, book, code, version, last_day, actor, reason).await?;
    let event = pb::ReferenceEntryRetired {
        book: crate::convert::book_to_proto(book).into(),
        code: code.to_owned(),
        end_dated_version: version,
        valid_to: Some(date_to_proto(last_day)),
        reason: reason.to_owned(),
        recorded_by: Some(actor_to_proto(actor)),
    };
    let subject = format!("{}/{code}", book.as_str());
    esocial_events::outbox::enqueue(transaction, &events::REFERENCE_ENTRY_RETIRED, Some(&subject), &event).await?;
    Ok(end_dated)
}
