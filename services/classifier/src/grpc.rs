//! The `ClassifierService` gRPC handlers: validate, call the service layer,
//! convert. Mutations are idempotent by `request_id`.

use chrono::NaiveDate;
use esocial_auth::Caller;
use esocial_kit::Violations;
use esocial_kit::idempotency;
use esocial_proto::classifier::v1 as pb;
use esocial_proto::classifier::v1::classifier_service_server::ClassifierService;
use prost::Message;
use tonic::{Request, Response, Status};

use esocial_kit::paging::{PageStart, finish_page, page_from_proto};

use crate::convert::{
    as_of_date, book_code, book_from_proto, category_from_proto, reference_content_from_proto,
    reference_entry_to_proto, required_date, support_content_from_proto, support_version_to_proto, text,
    validity_from_proto,
};
use crate::domain::{Actor, SupportTypeCode, normalize_for_search};
use crate::service::{self, Error};
use crate::store::Store;

const REASON_LENGTH_MAX: usize = 2000;
const SEARCH_QUERY_LENGTH_MIN: usize = 2;
const SEARCH_QUERY_LENGTH_MAX: usize = 200;
/// Search pages are addressed by offset; deeper than this, narrow the query.
const SEARCH_OFFSET_MAX: i64 = 10_000;

#[derive(Debug, Clone)]
pub struct ClassifierApi {
    store: Store,
}

impl ClassifierApi {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn actor_of<T>(request: &Request<T>) -> Result<Actor, Status> {
    let caller =
        request.extensions().get::<Caller>().ok_or_else(|| Status::unauthenticated("a bearer token is required"))?;
    Ok(Actor { subject: caller.subject.clone(), organization: caller.organization_edrpou.clone() })
}

fn request_id(violations: &mut Violations, text: &str) -> Option<uuid::Uuid> {
    violations.check("request_id", idempotency::parse_request_id(text))
}

fn support_code(violations: &mut Violations, code: &str) -> Option<String> {
    violations.check("code", SupportTypeCode::parse(code.trim())).map(|code| code.as_str().to_owned())
}

/// Runs a mutation once per request id: the stored response answers a retry.
async fn idempotent<Req, Resp, Work>(
    store: &Store,
    method: &str,
    request_id: uuid::Uuid,
    request: &Req,
    work: Work,
) -> Result<Resp, Error>
where
    Req: Message,
    Resp: Message + Default,
    Work: for<'c> AsyncFnOnce(&'c mut sqlx::PgConnection) -> Result<Resp, Error>,
{
    idempotency::run_once(store.pool(), method, request_id, request, work).await
}

fn not_in_force(what: &str, exists: bool, as_of: NaiveDate) -> Status {
    if exists {
        Status::not_found(format!("{what} has no version in force on {as_of}"))
    } else {
        Status::not_found(format!("{what} does not exist"))
    }
}

#[tonic::async_trait]
impl ClassifierService for ClassifierApi {
    async fn get_support_type(
        &self,
        request: Request<pb::GetSupportTypeRequest>,
    ) -> Result<Response<pb::GetSupportTypeResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let code = support_code(&mut violations, &request.code);
        let as_of = as_of_date(&mut violations, "as_of", request.as_of.as_ref());
        violations.finish().map_err(Error::from)?;
        let code = code.unwrap_or_default();
        match self.store.support_type_in_force(&code, as_of).await.map_err(Error::from)? {
            Some(version) => Ok(Response::new(pb::GetSupportTypeResponse {
                support_type: Some(support_version_to_proto(&version, as_of)),
            })),
            None => {
                let exists = self.store.support_type_exists(&code).await.map_err(Error::from)?;
                Err(not_in_force(&format!("support type {code}"), exists, as_of))
            }
        }
    }

    async fn list_support_types(
        &self,
        request: Request<pb::ListSupportTypesRequest>,
    ) -> Result<Response<pb::ListSupportTypesResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let as_of = as_of_date(&mut violations, "as_of", request.as_of.as_ref());
        let category = category_from_proto(request.category);
        if category.is_none() && request.category != 0 {
            violations.add("category", "is not a support category");
        }
        let page = page_from_proto(&mut violations, request.page.as_ref());
        let after = match &page.start {
            PageStart::AfterKey(code) if SupportTypeCode::parse(code).is_ok() => Some(code.clone()),
            PageStart::First => None,
            PageStart::AfterKey(_) | PageStart::Offset(_) => {
                violations.add("page.page_token", "belongs to another method");
                None
            }
        };
        violations.finish().map_err(Error::from)?;
        let mut versions = self
            .store
            .support_types_in_force(as_of, category, after.as_deref(), page.fetch_limit())
            .await
            .map_err(Error::from)?;
        let page_response = finish_page(&mut versions, &page, |last| PageStart::AfterKey(last.code.clone()));
        Ok(Response::new(pb::ListSupportTypesResponse {
            support_types: versions.iter().map(|version| support_version_to_proto(version, as_of)).collect(),
            page: Some(page_response),
        }))
    }

    async fn list_support_type_versions(
        &self,
        request: Request<pb::ListSupportTypeVersionsRequest>,
    ) -> Result<Response<pb::ListSupportTypeVersionsResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let code = support_code(&mut violations, &request.code);
        violations.finish().map_err(Error::from)?;
        let code = code.unwrap_or_default();
        let versions = self.store.support_type_versions(&code).await.map_err(Error::from)?;
        if versions.is_empty() {
            return Err(Status::not_found(format!("support type {code} does not exist")));
        }
        let today = esocial_kit::time::kyiv_today();
        Ok(Response::new(pb::ListSupportTypeVersionsResponse {
            versions: versions.iter().map(|version| support_version_to_proto(version, today)).collect(),
        }))
    }

    async fn create_support_type_version(
        &self,
        request: Request<pb::CreateSupportTypeVersionRequest>,
    ) -> Result<Response<pb::CreateSupportTypeVersionResponse>, Status> {
        let actor = actor_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let code = support_code(&mut violations, &request.code);
        let validity = validity_from_proto(&mut violations, "validity", request.validity.as_ref());
        let content = support_content_from_proto(&mut violations, request.content.as_ref());
        let reason = text(&mut violations, "change_reason", &request.change_reason, true, REASON_LENGTH_MAX);
        violations.finish().map_err(Error::from)?;
        let (Some(request_id), Some(code), Some(validity), Some(content)) = (request_id, code, validity, content)
        else {
            return Err(Status::invalid_argument("invalid request"));
        };
        let mut fingerprinted = request.clone();
        fingerprinted.request_id.clear();
        let response =
            idempotent(&self.store, "CreateSupportTypeVersion", request_id, &fingerprinted, async |transaction| {
                let created = service::create_support_type_version(
                    transaction,
                    &actor,
                    &code,
                    validity,
                    &content,
                    &reason,
                    request.expected_latest_version,
                )
                .await?;
                Ok(pb::CreateSupportTypeVersionResponse {
                    created: Some(support_version_to_proto(&created.created, esocial_kit::time::kyiv_today())),
                    end_dated_version: created.end_dated.map(|(version, _)| version),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn retire_support_type(
        &self,
        request: Request<pb::RetireSupportTypeRequest>,
    ) -> Result<Response<pb::RetireSupportTypeResponse>, Status> {
        let actor = actor_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let code = support_code(&mut violations, &request.code);
        let effective_from = required_date(&mut violations, "effective_from", request.effective_from.as_ref());
        let reason = text(&mut violations, "reason", &request.reason, true, REASON_LENGTH_MAX);
        violations.finish().map_err(Error::from)?;
        let (Some(request_id), Some(code), Some(effective_from)) = (request_id, code, effective_from) else {
            return Err(Status::invalid_argument("invalid request"));
        };
        let mut fingerprinted = request.clone();
        fingerprinted.request_id.clear();
        let response = idempotent(&self.store, "RetireSupportType", request_id, &fingerprinted, async |transaction| {
            let end_dated = service::retire_support_type(transaction, &actor, &code, effective_from, &reason).await?;
            Ok(pb::RetireSupportTypeResponse {
                end_dated: Some(support_version_to_proto(&end_dated, esocial_kit::time::kyiv_today())),
            })
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn get_reference_entry(
        &self,
        request: Request<pb::GetReferenceEntryRequest>,
    ) -> Result<Response<pb::GetReferenceEntryResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let book = book_from_proto(&mut violations, "book", request.book);
        let code = book_code(&mut violations, "code", book, &request.code);
        let as_of = as_of_date(&mut violations, "as_of", request.as_of.as_ref());
        violations.finish().map_err(Error::from)?;
        let (Some(book), Some(code)) = (book, code) else {
            return Err(Status::invalid_argument("invalid request"));
        };
        match self.store.reference_entry_in_force(book, &code, as_of).await.map_err(Error::from)? {
            Some(entry) => Ok(Response::new(pb::GetReferenceEntryResponse {
                entry: Some(reference_entry_to_proto(&entry, as_of)),
            })),
            None => {
                let exists = self.store.reference_entry_exists(book, &code).await.map_err(Error::from)?;
                Err(not_in_force(&format!("{} entry {code}", book.as_str()), exists, as_of))
            }
        }
    }

    async fn list_reference_entries(
        &self,
        request: Request<pb::ListReferenceEntriesRequest>,
    ) -> Result<Response<pb::ListReferenceEntriesResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let book = book_from_proto(&mut violations, "book", request.book);
        let as_of = as_of_date(&mut violations, "as_of", request.as_of.as_ref());
        let parent = if request.parent_code.trim().is_empty() {
            None
        } else {
            book_code(&mut violations, "parent_code", book, &request.parent_code)
        };
        let page = page_from_proto(&mut violations, request.page.as_ref());
        let after = match &page.start {
            PageStart::AfterKey(code) if book.is_some_and(|book| book.canonical_code(code).as_deref() == Ok(code)) => {
                Some(code.clone())
            }
            PageStart::First => None,
            PageStart::AfterKey(_) | PageStart::Offset(_) => {
                violations.add("page.page_token", "belongs to another method or book");
                None
            }
        };
        violations.finish().map_err(Error::from)?;
        let Some(book) = book else { return Err(Status::invalid_argument("invalid request")) };
        let mut entries = self
            .store
            .reference_entries_in_force(book, as_of, parent.as_deref(), after.as_deref(), page.fetch_limit())
            .await
            .map_err(Error::from)?;
        let page_response = finish_page(&mut entries, &page, |last| PageStart::AfterKey(last.code.clone()));
        Ok(Response::new(pb::ListReferenceEntriesResponse {
            entries: entries.iter().map(|entry| reference_entry_to_proto(entry, as_of)).collect(),
            page: Some(page_response),
        }))
    }

    async fn search_reference_entries(
        &self,
        request: Request<pb::SearchReferenceEntriesRequest>,
    ) -> Result<Response<pb::SearchReferenceEntriesResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let book = book_from_proto(&mut violations, "book", request.book);
        let query = normalize_for_search(&request.query);
        let query_length = query.chars().count();
        if query.chars().any(char::is_control) {
            violations.add("query", "must not contain control characters");
        } else if query_length < SEARCH_QUERY_LENGTH_MIN {
            violations.add("query", format!("must have at least {SEARCH_QUERY_LENGTH_MIN} characters"));
        } else if query_length > SEARCH_QUERY_LENGTH_MAX {
            violations.add("query", format!("must have at most {SEARCH_QUERY_LENGTH_MAX} characters"));
        }
        let as_of = as_of_date(&mut violations, "as_of", request.as_of.as_ref());
        let page = page_from_proto(&mut violations, request.page.as_ref());
        let offset = match &page.start {
            PageStart::Offset(offset) if *offset <= SEARCH_OFFSET_MAX => *offset,
            PageStart::First => 0,
            PageStart::Offset(_) => {
                violations
                    .add("page.page_token", format!("goes deeper than {SEARCH_OFFSET_MAX} results: narrow the query"));
                0
            }
            PageStart::AfterKey(_) => {
                violations.add("page.page_token", "belongs to another method");
                0
            }
        };
        violations.finish().map_err(Error::from)?;
        let Some(book) = book else { return Err(Status::invalid_argument("invalid request")) };
        let mut entries = self
            .store
            .search_reference_entries(book, as_of, &query, offset, page.fetch_limit())
            .await
            .map_err(Error::from)?;
        let returned = i64::from(page.size);
        let page_response = finish_page(&mut entries, &page, |_| PageStart::Offset(offset + returned));
        Ok(Response::new(pb::SearchReferenceEntriesResponse {
            entries: entries.iter().map(|entry| reference_entry_to_proto(entry, as_of)).collect(),
            page: Some(page_response),
        }))
    }

    async fn list_reference_entry_versions(
        &self,
        request: Request<pb::ListReferenceEntryVersionsRequest>,
    ) -> Result<Response<pb::ListReferenceEntryVersionsResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let book = book_from_proto(&mut violations, "book", request.book);
        let code = book_code(&mut violations, "code", book, &request.code);
        violations.finish().map_err(Error::from)?;
        let (Some(book), Some(code)) = (book, code) else {
            return Err(Status::invalid_argument("invalid request"));
        };
        let versions = self.store.reference_entry_versions(book, &code).await.map_err(Error::from)?;
        if versions.is_empty() {
            return Err(Status::not_found(format!("{} entry {code} does not exist", book.as_str())));
        }
        let today = esocial_kit::time::kyiv_today();
        Ok(Response::new(pb::ListReferenceEntryVersionsResponse {
            versions: versions.iter().map(|entry| reference_entry_to_proto(entry, today)).collect(),
        }))
    }

    async fn create_reference_entry_version(
        &self,
        request: Request<pb::CreateReferenceEntryVersionRequest>,
    ) -> Result<Response<pb::CreateReferenceEntryVersionResponse>, Status> {
        let actor = actor_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let book = book_from_proto(&mut violations, "book", request.book);
        let code = book_code(&mut violations, "code", book, &request.code);
        let validity = validity_from_proto(&mut violations, "validity", request.validity.as_ref());
        let content = reference_content_from_proto(&mut violations, book, request.content.as_ref());
        let reason = text(&mut violations, "change_reason", &request.change_reason, true, REASON_LENGTH_MAX);
        violations.finish().map_err(Error::from)?;
        let (Some(request_id), Some(book), Some(code), Some(validity), Some(content)) =
            (request_id, book, code, validity, content)
        else {
            return Err(Status::invalid_argument("invalid request"));
        };
        let mut fingerprinted = request.clone();
        fingerprinted.request_id.clear();
        let response =
            idempotent(&self.store, "CreateReferenceEntryVersion", request_id, &fingerprinted, async |transaction| {
                let created = service::create_reference_entry_version(
                    transaction,
                    &actor,
                    book,
                    &code,
                    validity,
                    &content,
                    &reason,
                    request.expected_latest_version,
                )
                .await?;
                Ok(pb::CreateReferenceEntryVersionResponse {
                    created: Some(reference_entry_to_proto(&created.created, esocial_kit::time::kyiv_today())),
                    end_dated_version: created.end_dated.map(|(version, _)| version),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn retire_reference_entry(
        &self,
        request: Request<pb::RetireReferenceEntryRequest>,
    ) -> Result<Response<pb::RetireReferenceEntryResponse>, Status> {
        let actor = actor_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let book = book_from_proto(&mut violations, "book", request.book);
        let code = book_code(&mut violations, "code", book, &request.code);
        let effective_from = required_date(&mut violations, "effective_from", request.effective_from.as_ref());
        let reason = text(&mut violations, "reason", &request.reason, true, REASON_LENGTH_MAX);
        violations.finish().map_err(Error::from)?;
        let (Some(request_id), Some(book), Some(code), Some(effective_from)) = (request_id, book, code, effective_from)
        else {
            return Err(Status::invalid_argument("invalid request"));
        };
        let mut fingerprinted = request.clone();
        fingerprinted.request_id.clear();
        let response =
            idempotent(&self.store, "RetireReferenceEntry", request_id, &fingerprinted, async |transaction| {
                let end_dated =
                    service::retire_reference_entry(transaction, &actor, book, &code, effective_from, &reason).await?;
                Ok(pb::RetireReferenceEntryResponse {
                    end_dated: Some(reference_entry_to_proto(&end_dated, esocial_kit::time::kyiv_today())),
                })
            })
            .await?;
        Ok(Response::new(response))
    }
}
