//! `RegistryService`: persons, imports, the access log, extracts.

use esocial_identifiers::{Rnokpp, Unzr};
use esocial_kit::paging::{PageStart, finish_page, page_from_proto};
use esocial_kit::{ApiError, Violations, dates};
use esocial_proto::registry::v1 as pb;
use esocial_proto::registry::v1::registry_service_server::RegistryService;
use tonic::{Request, Response, Status, Streaming};

use super::{RegistryApi, caller_of, id, internal, invalid, reason, request_id, text};
use crate::access::purpose;
use crate::convert::{person_input, person_to_proto, relation_from_proto, version_to_proto};
use crate::domain::DuplicateCandidate;
use crate::import::{Format, Import, problem_to_proto};
use crate::persons::SearchQuery;
use crate::service::Error;
use crate::store::Identifier;
use crate::validate::person_data;

/// Search pages go no deeper than this; narrow the query instead.
const SEARCH_OFFSET_MAX: i64 = 10_000;
const SOURCE_DOCUMENT_LENGTH_MAX: usize = 300;

fn candidate_to_proto(candidate: &DuplicateCandidate) -> pb::DuplicateCandidate {
    pb::DuplicateCandidate {
        person_id: candidate.person_id.to_string(),
        score: candidate.score,
        reasons: candidate.reasons.iter().map(|reason| (*reason).to_owned()).collect(),
    }
}

#[tonic::async_trait]
impl RegistryService for RegistryApi {
    async fn register_person(
        &self,
        request: Request<pb::RegisterPersonRequest>,
    ) -> Result<Response<pb::RegisterPersonResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let today = esocial_kit::time::kyiv_today();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let valid_from = dates::or_default(&mut violations, "valid_from", request.valid_from.as_ref(), today);
        if valid_from > today {
            violations.add("valid_from", "must not be in the future: a change is recorded once it applies");
        }
        let reason = text(&mut violations, "reason", &request.reason, false, super::REASON_LENGTH_MAX);
        let source_document =
            text(&mut violations, "source_document", &request.source_document, false, SOURCE_DOCUMENT_LENGTH_MAX);
        let data = match &request.data {
            Some(data) => {
                person_data(&mut violations, "data.", &person_input(data), &self.registry.territories, today).await
            }
            None => {
                violations.add("data", "is required");
                None
            }
        };
        if let Some(data) = &data
            && valid_from < data.birth_date
        {
            violations.add("valid_from", "must not be before the birth date");
        }
        invalid(violations)?;
        let Some(data) = data else { return Err(internal(anyhow::anyhow!("validated data missing"))) };
        let reason = if reason.is_empty() { "registration".to_owned() } else { reason };
        let response = self
            .once(&caller, "RegisterPerson", request_id, &request, async |transaction| {
                let (person, duplicates) = self
                    .registry
                    .register_person(transaction, &caller, data, valid_from, &reason, &source_document, today)
                    .await?;
                Ok(pb::RegisterPersonResponse {
                    person: Some(person_to_proto(&person)),
                    probable_duplicates: duplicates.iter().map(candidate_to_proto).collect(),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn update_person(
        &self,
        request: Request<pb::UpdatePersonRequest>,
    ) -> Result<Response<pb::UpdatePersonResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let today = esocial_kit::time::kyiv_today();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let person_id = id(&mut violations, "person_id", &request.person_id);
        if request.expected_version == 0 {
            violations.add("expected_version", "is required: the version the change is based on");
        }
        let valid_from = dates::or_default(&mut violations, "valid_from", request.valid_from.as_ref(), today);
        if valid_from > today {
            violations.add("valid_from", "must not be in the future: a change is recorded once it applies");
        }
        let reason = reason(&mut violations, &request.reason);
        let source_document =
            text(&mut violations, "source_document", &request.source_document, false, SOURCE_DOCUMENT_LENGTH_MAX);
        let data = match &request.data {
            Some(data) => {
                person_data(&mut violations, "data.", &person_input(data), &self.registry.territories, today).await
            }
            None => {
                violations.add("data", "is required");
                None
            }
        };
        invalid(violations)?;
        let Some(data) = data else { return Err(internal(anyhow::anyhow!("validated data missing"))) };
        let response = self
            .once(&caller, "UpdatePerson", request_id, &request, async |transaction| {
                let person = self
                    .registry
                    .update_person(
                        transaction,
                        &caller,
                        person_id,
                        request.expected_version,
                        data,
                        valid_from,
                        &reason,
                        &source_document,
                        today,
                    )
                    .await?;
                Ok(pb::UpdatePersonResponse { person: Some(person_to_proto(&person)) })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn get_person(
        &self,
        request: Request<pb::GetPersonRequest>,
    ) -> Result<Response<pb::GetPersonResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let today = esocial_kit::time::kyiv_today();
        let mut violations = Violations::new();
        let as_of = dates::or_default(&mut violations, "as_of", request.as_of.as_ref(), today);
        let purpose = purpose(&mut violations, &request.purpose);
        let key = match &request.key {
            Some(pb::get_person_request::Key::PersonId(text)) => {
                Some(KeyText::Id(id(&mut violations, "person_id", text)))
            }
            Some(pb::get_person_request::Key::Rnokpp(text)) => {
                violations.check("rnokpp", text.parse::<Rnokpp>()).map(|rnokpp| KeyText::Rnokpp(rnokpp.to_string()))
            }
            Some(pb::get_person_request::Key::Unzr(text)) => {
                violations.check("unzr", text.parse::<Unzr>()).map(|unzr| KeyText::Unzr(unzr.to_string()))
            }
            None => {
                violations.add("key", "is required: person_id, rnokpp or unzr");
                None
            }
        };
        invalid(violations)?;
        let Some(key) = key else { return Err(internal(anyhow::anyhow!("validated key missing"))) };
        let (person, redirected_from) =
            self.registry.read_person(&caller, key.identifier(), as_of, "GetPerson", &purpose).await?;
        Ok(Response::new(pb::GetPersonResponse {
            person: Some(person_to_proto(&person)),
            redirected_from: redirected_from.map(|id| id.to_string()).unwrap_or_default(),
        }))
    }

    async fn get_person_history(
        &self,
        request: Request<pb::GetPersonHistoryRequest>,
    ) -> Result<Response<pb::GetPersonHistoryResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let person_id = id(&mut violations, "person_id", &request.person_id);
        let purpose = purpose(&mut violations, &request.purpose);
        invalid(violations)?;
        let (versions, merged) = self.registry.history(&caller, person_id, &purpose).await?;
        Ok(Response::new(pb::GetPersonHistoryResponse {
            versions: versions.iter().map(version_to_proto).collect(),
            merged_ids: merged.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn search_persons(
        &self,
        request: Request<pb::SearchPersonsRequest>,
    ) -> Result<Response<pb::SearchPersonsResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let purpose = purpose(&mut violations, &request.purpose);
        let page = page_from_proto(&mut violations, request.page.as_ref());
        let offset = page.offset(&mut violations, SEARCH_OFFSET_MAX);
        let query = match &request.query {
            Some(pb::search_persons_request::Query::Rnokpp(text)) => {
                violations.check("rnokpp", text.parse::<Rnokpp>()).map(|rnokpp| SearchQuery::Rnokpp(rnokpp.to_string()))
            }
            Some(pb::search_persons_request::Query::Unzr(text)) => {
                violations.check("unzr", text.parse::<Unzr>()).map(|unzr| SearchQuery::Unzr(unzr.to_string()))
            }
            Some(pb::search_persons_request::Query::PassportNumber(text)) => violations
                .check("passport_number", text.parse::<esocial_identifiers::PassportNumber>())
                .map(|passport| SearchQuery::Passport(passport.to_string())),
            Some(pb::search_persons_request::Query::NameAndBirthDate(query)) => {
                let name = text(&mut violations, "name_and_birth_date.name", &query.name, true, 300);
                let key = esocial_people::comparable_key(&name);
                if !name.is_empty() && key.chars().filter(|character| character.is_alphanumeric()).count() < 2 {
                    violations.add("name_and_birth_date.name", "must have at least two letters");
                }
                let birth_date =
                    dates::required(&mut violations, "name_and_birth_date.birth_date", query.birth_date.as_ref());
                birth_date.map(|birth_date| SearchQuery::NameAndBirthDate { key, birth_date })
            }
            None => {
                violations.add("query", "is required: rnokpp, unzr, passport_number or name_and_birth_date");
                None
            }
        };
        invalid(violations)?;
        let Some(query) = query else { return Err(internal(anyhow::anyhow!("validated query missing"))) };
        let mut found = self.registry.search(&caller, &query, offset, page.fetch_limit(), &purpose).await?;
        let size = i64::from(page.size);
        let page_response = finish_page(&mut found, &page, |_| PageStart::Offset(offset + size));
        Ok(Response::new(pb::SearchPersonsResponse {
            matches: found
                .iter()
                .map(|(person, score)| pb::PersonMatch { person: Some(person_to_proto(person)), score: *score })
                .collect(),
            page: Some(page_response),
        }))
    }

    async fn find_duplicates(
        &self,
        request: Request<pb::FindDuplicatesRequest>,
    ) -> Result<Response<pb::FindDuplicatesResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let person_id = id(&mut violations, "person_id", &request.person_id);
        invalid(violations)?;
        let candidates = self.registry.duplicates_of(&caller, person_id).await?;
        Ok(Response::new(pb::FindDuplicatesResponse {
            candidates: candidates.iter().map(candidate_to_proto).collect(),
        }))
    }

    async fn merge_persons(
        &self,
        request: Request<pb::MergePersonsRequest>,
    ) -> Result<Response<pb::MergePersonsResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let surviving = id(&mut violations, "surviving_person_id", &request.surviving_person_id);
        let merged = id(&mut violations, "merged_person_id", &request.merged_person_id);
        let reason = reason(&mut violations, &request.reason);
        invalid(violations)?;
        let response = self
            .once(&caller, "MergePersons", request_id, &request, async |transaction| {
                let person = self.registry.merge(transaction, &caller, surviving, merged, &reason).await?;
                Ok(pb::MergePersonsResponse { person: Some(person_to_proto(&person)) })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn mark_distinct(
        &self,
        request: Request<pb::MarkDistinctRequest>,
    ) -> Result<Response<pb::MarkDistinctResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let one = id(&mut violations, "person_id", &request.person_id);
        let other = id(&mut violations, "other_person_id", &request.other_person_id);
        let reason = reason(&mut violations, &request.reason);
        invalid(violations)?;
        let response = self
            .once(&caller, "MarkDistinct", request_id, &request, async |transaction| {
                self.registry.mark_distinct(transaction, &caller, one, other, &reason).await?;
                Ok(pb::MarkDistinctResponse {})
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn link_family(
        &self,
        request: Request<pb::LinkFamilyRequest>,
    ) -> Result<Response<pb::LinkFamilyResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let today = esocial_kit::time::kyiv_today();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let person_id = id(&mut violations, "person_id", &request.person_id);
        let related = id(&mut violations, "related_person_id", &request.related_person_id);
        let relation = relation_from_proto(request.relation);
        if relation.is_none() {
            violations.add("relation", "must be parent, child, spouse, guardian or ward");
        }
        let valid_from = dates::or_default(&mut violations, "valid_from", request.valid_from.as_ref(), today);
        if valid_from > today {
            violations.add("valid_from", "must not be in the future: a change is recorded once it applies");
        }
        invalid(violations)?;
        let Some(relation) = relation else { return Err(internal(anyhow::anyhow!("validated relation missing"))) };
        let response = self
            .once(&caller, "LinkFamily", request_id, &request, async |transaction| {
                let person =
                    self.registry.link_family(transaction, &caller, person_id, related, relation, valid_from).await?;
                Ok(pb::LinkFamilyResponse { person: Some(person_to_proto(&person)) })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn import_persons(
        &self,
        request: Request<Streaming<pb::ImportPersonsChunk>>,
    ) -> Result<Response<pb::ImportPersonsResponse>, Status> {
        let caller = caller_of(&request)?;
        let mut stream = request.into_inner();
        let Some(first) = stream.message().await? else {
            return Err(Status::from(Error::from(ApiError::invalid_field("data", "the stream has no chunks"))));
        };
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &first.request_id);
        let format = match pb::ImportFormat::try_from(first.format) {
            Ok(pb::ImportFormat::Csv) => Some(Format::Csv),
            Ok(pb::ImportFormat::Ndjson) => Some(Format::Ndjson),
            _ => {
                violations.add("format", "must be CSV or NDJSON");
                None
            }
        };
        let source_document =
            text(&mut violations, "source_document", &first.source_document, false, SOURCE_DOCUMENT_LENGTH_MAX);
        invalid(violations)?;
        let Some(format) = format else { return Err(internal(anyhow::anyhow!("validated format missing"))) };
        let mut import = match Import::start(&self.registry, &caller, request_id, format, &source_document).await? {
            Ok(import) => import,
            // The same request id finished before: its outcome.
            Err(finished) => return Ok(Response::new(finished)),
        };
        tracing::info!(import_id = %import.id, "import started");
        import.feed(&first.data).await?;
        while let Some(chunk) = stream.message().await? {
            import.feed(&chunk.data).await?;
        }
        let response = import.finish().await?;
        tracing::info!(
            import_id = %response.import_id,
            rows = response.rows,
            accepted = response.accepted,
            rejected = response.rejected,
            duplicates = response.duplicates,
            seconds = response.seconds,
            "import finished"
        );
        Ok(Response::new(response))
    }

    async fn get_import_report(
        &self,
        request: Request<pb::GetImportReportRequest>,
    ) -> Result<Response<pb::GetImportReportResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let import_id = id(&mut violations, "import_id", &request.import_id);
        let page = page_from_proto(&mut violations, request.page.as_ref());
        let after = page.after::<i64>(&mut violations);
        invalid(violations)?;
        let mut rows = self
            .registry
            .import_report(&caller, import_id, request.problems_only, after.unwrap_or(0), page.fetch_limit())
            .await?;
        let page_response = finish_page(&mut rows, &page, |last| PageStart::AfterKey(last.row.to_string()));
        Ok(Response::new(pb::GetImportReportResponse {
            rows: rows.iter().map(problem_to_proto).collect(),
            page: Some(page_response),
        }))
    }

    async fn list_access_log(
        &self,
        request: Request<pb::ListAccessLogRequest>,
    ) -> Result<Response<pb::ListAccessLogResponse>, Status> {
        let _caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let person_id = id(&mut violations, "person_id", &request.person_id);
        let page = page_from_proto(&mut violations, request.page.as_ref());
        let after = page.after::<i64>(&mut violations);
        invalid(violations)?;
        let mut ids = vec![person_id];
        ids.extend(self.registry.store.merged_into(person_id).await.map_err(Error::from)?);
        let mut entries = self.registry.store.access_log(&ids, after, page.fetch_limit()).await.map_err(Error::from)?;
        let page_response = finish_page(&mut entries, &page, |last| PageStart::AfterKey(last.id.to_string()));
        Ok(Response::new(pb::ListAccessLogResponse {
            entries: entries
                .iter()
                .map(|entry| pb::AccessLogEntry {
                    occurred_at: entry.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    reader: Some(esocial_proto::common::v1::Actor {
                        subject: entry.reader.clone(),
                        organization_edrpou: entry.reader_org.clone().unwrap_or_default(),
                    }),
                    method: entry.method.clone(),
                    purpose: entry.purpose.clone(),
                })
                .collect(),
            page: Some(page_response),
        }))
    }

    async fn request_extract(
        &self,
        request: Request<pb::RequestExtractRequest>,
    ) -> Result<Response<pb::RequestExtractResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let request_id = request_id(&mut violations, &request.request_id);
        let person_id = id(&mut violations, "person_id", &request.person_id);
        let purpose = purpose(&mut violations, &request.purpose);
        super::printable(&mut violations, "purpose", &purpose);
        invalid(violations)?;
        if !caller.used_qualified_signature() {
            return Err(Status::from(Error::from(ApiError::PermissionDenied(
                "an extract needs a sign-in with a qualified electronic signature (qes)".to_owned(),
            ))));
        }
        let response = self
            .once(&caller, "RequestExtract", request_id, &request, async |transaction| {
                let extract = self.registry.extract(transaction, &caller, person_id, &purpose).await?;
                Ok(pb::RequestExtractResponse {
                    extract: Some(pb::Extract {
                        number: extract.number,
                        person_id: extract.person_id.to_string(),
                        generated_at: extract.generated_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        json: extract.json,
                        signature: extract.signature,
                        pdf: extract.pdf,
                        qr_svg: extract.qr_svg,
                    }),
                })
            })
            .await?;
        Ok(Response::new(response))
    }

    async fn verify_extract(
        &self,
        request: Request<pb::VerifyExtractRequest>,
    ) -> Result<Response<pb::VerifyExtractResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let number = text(&mut violations, "number", &request.number, true, 40);
        let digest = request.json_sha256.trim();
        if !digest.is_empty() && (digest.len() != 64 || !digest.bytes().all(|byte| byte.is_ascii_hexdigit())) {
            violations.add("json_sha256", "must be 64 hexadecimal digits");
        }
        invalid(violations)?;
        let found = self.registry.verify_extract(&number, Some(digest).filter(|digest| !digest.is_empty())).await?;
        Ok(Response::new(match found {
            Some((generated_at, content_matches)) => pb::VerifyExtractResponse {
                genuine: true,
                generated_at: generated_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                content_matches,
            },
            None => pb::VerifyExtractResponse::default(),
        }))
    }

    async fn get_signing_keys(
        &self,
        _request: Request<pb::GetSigningKeysRequest>,
    ) -> Result<Response<pb::GetSigningKeysResponse>, Status> {
        let key = &self.registry.key;
        let jwk = serde_json::to_value(key.public_jwk()).map_err(internal)?;
        let x = jwk.get("x").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
        Ok(Response::new(pb::GetSigningKeysResponse {
            keys: vec![pb::SigningKey {
                kid: key.key_id().to_owned(),
                kty: "OKP".to_owned(),
                crv: "Ed25519".to_owned(),
                x,
                alg: "EdDSA".to_owned(),
            }],
        }))
    }
}

/// A validated lookup key, owning its text.
enum KeyText {
    Id(uuid::Uuid),
    Rnokpp(String),
    Unzr(String),
}

impl KeyText {
    fn identifier(&self) -> Identifier<'_> {
        match self {
            KeyText::Id(id) => Identifier::Id(*id),
            KeyText::Rnokpp(text) => Identifier::Rnokpp(text),
            KeyText::Unzr(text) => Identifier::Unzr(text),
        }
    }
}
