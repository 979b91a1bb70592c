//! Person operations: registration with duplicate detection, versions,
//! reads "as of" a date (each recorded), search, merges, family links.

use chrono::NaiveDate;
use esocial_auth::Caller;
use esocial_kit::ApiError;
use esocial_proto::registry::v1 as pb;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::access::{actor, require_territory};
use crate::convert::{actor_to_proto, person_to_proto};
use crate::domain::{Actor, DuplicateCandidate, FamilyRelation, Person, PersonData};
use crate::events;
use crate::service::{Error, Registry};
use crate::store::{Found, Identifier, Store};

/// Candidates scoring below this are not reported.
const DUPLICATE_SCORE_MIN: f64 = 0.6;

fn not_found(what: impl std::fmt::Display) -> Error {
    ApiError::NotFound(format!("{what} is not in the register")).into()
}

async fn person_event(
    connection: &mut PgConnection,
    event: &esocial_events::EventType,
    person: &Person,
    actor: &Actor,
    reason: &str,
) -> Result<(), Error> {
    let payload = pb::PersonChanged {
        person: Some(person_to_proto(person)),
        changed_by: Some(actor_to_proto(actor)),
        reason: reason.to_owned(),
    };
    esocial_events::outbox::enqueue(connection, event, Some(&person.id.to_string()), &payload).await?;
    Ok(())
}

impl Registry {
    /// Whether the register holds anyone.
    pub async fn has_persons(&self) -> Result<bool, Error> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM persons)").fetch_one(self.store.pool()).await?)
    }

    /// The RNOKPP of some person registered in `scope` (the sandbox shows
    /// one in its instructions).
    pub async fn some_rnokpp_within(&self, scope: &str) -> Result<Option<String>, Error> {
        let units = self.territories.units_within(scope).await;
        Ok(sqlx::query_scalar(
            "SELECT rnokpp FROM persons WHERE status = 'active' AND rnokpp IS NOT NULL AND registered_territory = ANY($1)
             ORDER BY id LIMIT 1",
        )
        .bind(&units)
        .fetch_optional(self.store.pool())
        .await?)
    }

    /// Scores the stored candidates against a person's name.
    fn score(candidates: Vec<crate::store::MatchRow>, key: &str, passport: Option<&str>) -> Vec<DuplicateCandidate> {
        let mut scored: Vec<DuplicateCandidate> = candidates
            .into_iter()
            .filter_map(|candidate| {
                let mut reasons = Vec::new();
                let name_score = esocial_people::similarity(&candidate.name_key, key);
                let mut score = 0.0f64;
                if candidate.same_birth_date && name_score >= DUPLICATE_SCORE_MIN {
                    reasons.push("name and birth date");
                    score = name_score;
                }
                if passport.is_some() && candidate.passport_number.as_deref() == passport {
                    reasons.push("passport");
                    score = score.max(0.9);
                }
                (!reasons.is_empty()).then_some(DuplicateCandidate { person_id: candidate.id, score, reasons })
            })
            .collect();
        scored.sort_by(|left, right| right.score.total_cmp(&left.score));
        scored
    }

    async fn refuse_taken_identifiers(
        connection: &mut PgConnection,
        data: &PersonData,
        except: Option<Uuid>,
    ) -> Result<(), Error> {
        let rnokpp = data.rnokpp.as_ref().map(ToString::to_string);
        let unzr = data.unzr.as_ref().map(ToString::to_string);
        if let Some((existing, by)) = Store::holder_of(connection, rnokpp.as_deref(), unzr.as_deref(), except).await? {
            let what = if by == "rnokpp" { "RNOKPP" } else { "UNZR" };
            return Err(ApiError::AlreadyExistsAs {
                message: format!("a person with this {what} is already registered: {existing}"),
                reason: "PERSON_ALREADY_REGISTERED",
                metadata: vec![("existing_person_id", existing.to_string())],
            }
            .into());
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn register_person(
        &self,
        connection: &mut PgConnection,
        caller: &Caller,
        data: PersonData,
        valid_from: NaiveDate,
        reason: &str,
        source_document: &str,
        today: NaiveDate,
    ) -> Result<(Person, Vec<DuplicateCandidate>), Error> {
        require_territory(&self.territories, caller, &data.registered_address.territory).await?;
        Self::refuse_taken_identifiers(connection, &data, None).await?;
        let actor = actor(caller);
        let id = Uuid::now_v7();
        let passport = data.passport_number.as_ref().map(ToString::to_string);
        let candidates =
            Store::candidates(connection, &data.name.key(), data.birth_date, passport.as_deref(), None).await?;
        Store::insert_person(connection, id, valid_from, &data, reason, source_document, &actor, today).await?;
        let Some(Found::Active(person)) = Store::find(connection, Identifier::Id(id)).await? else {
            return Err(not_found(id));
        };
        person_event(connection, &events::PERSON_REGISTERED, &person, &actor, reason).await?;
        let duplicates = Self::score(candidates, &person.data.name.key(), passport.as_deref());
        Ok((person, duplicates))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn update_person(
        &self,
        connection: &mut PgConnection,
        caller: &Caller,
        id: Uuid,
        expected_version: u32,
        data: PersonData,
        valid_from: NaiveDate,
        reason: &str,
        source_document: &str,
        today: NaiveDate,
    ) -> Result<Person, Error> {
        let Some((version, status)) = Store::lock(connection, id).await? else { return Err(not_found(id)) };
        if status != "active" {
            return Err(ApiError::FailedPrecondition(format!(
                "person {id} was merged into another record; update that one"
            ))
            .into());
        }
        if version != expected_version {
            return Err(ApiError::Aborted(format!(
                "the person is at version {version}, not {expected_version}: re-read and retry"
            ))
            .into());
        }
        let Some(Found::Active(current)) = Store::find(connection, Identifier::Id(id)).await? else {
            return Err(not_found(id));
        };
        require_territory(&self.territories, caller, &current.data.registered_address.territory).await?;
        require_territory(&self.territories, caller, &data.registered_address.territory).await?;
        Self::refuse_taken_identifiers(connection, &data, Some(id)).await?;
        let actor = actor(caller);
        Store::record_version(connection, id, version + 1, valid_from, &data, reason, source_document, &actor, today)
            .await?;
        let Some(Found::Active(person)) = Store::find(connection, Identifier::Id(id)).await? else {
            return Err(not_found(id));
        };
        person_event(connection, &events::PERSON_UPDATED, &person, &actor, reason).await?;
        Ok(person)
    }

    /// A person as of a date; the read is recorded.
    pub async fn read_person(
        &self,
        caller: &Caller,
        key: Identifier<'_>,
        as_of: NaiveDate,
        method: &str,
        purpose: &str,
    ) -> Result<(Person, Option<Uuid>), Error> {
        let mut connection = self.store.pool().acquire().await?;
        let (person, redirected_from) = match Store::find(&mut connection, key).await? {
            Some(Found::Active(person)) => (person, None),
            Some(Found::Redirected { from, person }) => (person, Some(from)),
            None => return Err(ApiError::NotFound("no such person in the register".to_owned()).into()),
        };
        require_territory(&self.territories, caller, &person.data.registered_address.territory).await?;
        let as_of_person = Store::as_of(&mut connection, &person, as_of)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("the register has no data about this person as of {as_of}")))?;
        drop(connection);
        self.store.log_reads(&actor(caller), &[person.id], method, purpose).await?;
        Ok((as_of_person, redirected_from))
    }

    pub async fn history(
        &self,
        caller: &Caller,
        id: Uuid,
        purpose: &str,
    ) -> Result<(Vec<crate::store::VersionRow>, Vec<Uuid>), Error> {
        let (person, _) = self
            .read_person(caller, Identifier::Id(id), esocial_kit::time::kyiv_today(), "GetPersonHistory", purpose)
            .await?;
        let merged = self.store.merged_into(person.id).await?;
        let mut ids = vec![person.id];
        ids.extend(&merged);
        Ok((self.store.versions(&ids).await?, merged))
    }

    /// Persons found, within the caller's territories; every one returned is
    /// recorded as read.
    pub async fn search(
        &self,
        caller: &Caller,
        query: &SearchQuery,
        offset: i64,
        limit: i64,
        purpose: &str,
    ) -> Result<Vec<(Person, f64)>, Error> {
        let found: Vec<(Uuid, f64)> = match query {
            SearchQuery::Rnokpp(value) => self.exact(Identifier::Rnokpp(value)).await?,
            SearchQuery::Unzr(value) => self.exact(Identifier::Unzr(value)).await?,
            SearchQuery::Passport(value) => {
                self.store.ids_by_passport(value, offset, limit).await?.into_iter().map(|id| (id, 1.0)).collect()
            }
            SearchQuery::NameAndBirthDate { key, birth_date } => self
                .store
                .search_by_name(key, *birth_date, offset, limit)
                .await?
                .into_iter()
                .map(|(id, similarity)| (id, f64::from(similarity)))
                .collect(),
        };
        let mut connection = self.store.pool().acquire().await?;
        let mut results = Vec::with_capacity(found.len());
        for (id, score) in found {
            let Some(Found::Active(person)) = Store::find(&mut connection, Identifier::Id(id)).await? else { continue };
            // Territorial operators see only their territories' persons.
            if require_territory(&self.territories, caller, &person.data.registered_address.territory).await.is_err() {
                continue;
            }
            results.push((person, score));
        }
        drop(connection);
        let ids: Vec<Uuid> = results.iter().map(|(person, _)| person.id).collect();
        self.store.log_reads(&actor(caller), &ids, "SearchPersons", purpose).await?;
        Ok(results)
    }

    async fn exact(&self, key: Identifier<'_>) -> Result<Vec<(Uuid, f64)>, Error> {
        let mut connection = self.store.pool().acquire().await?;
        Ok(match Store::find(&mut connection, key).await? {
            Some(Found::Active(person) | Found::Redirected { person, .. }) => vec![(person.id, 1.0)],
            None => Vec::new(),
        })
    }

    pub async fn duplicates_of(&self, caller: &Caller, id: Uuid) -> Result<Vec<DuplicateCandidate>, Error> {
        let mut connection = self.store.pool().acquire().await?;
        let Some(Found::Active(person)) = Store::find(&mut connection, Identifier::Id(id)).await? else {
            return Err(not_found(id));
        };
        require_territory(&self.territories, caller, &person.data.registered_address.territory).await?;
        let key = person.data.name.key();
        let passport = person.data.passport_number.as_ref().map(ToString::to_string);
        let candidates =
            Store::candidates(&mut connection, &key, person.data.birth_date, passport.as_deref(), Some(id)).await?;
        Ok(Self::score(candidates, &key, passport.as_deref()))
    }

    /// Merges `merged` into `surviving`: both histories stay, the merged id
    /// redirects.
    pub async fn merge(
        &self,
        connection: &mut PgConnection,
        caller: &Caller,
        surviving: Uuid,
        merged: Uuid,
        reason: &str,
    ) -> Result<Person, Error> {
        if surviving == merged {
            return Err(ApiError::invalid_field("merged_person_id", "must differ from surviving_person_id").into());
        }
        // Lock in a fixed order so two merges of the same pair cannot deadlock.
        let (first, second) = if surviving < merged { (surviving, merged) } else { (merged, surviving) };
        for id in [first, second] {
            match Store::lock(connection, id).await? {
                Some((_, status)) if status == "active" => {}
                Some(_) => return Err(ApiError::FailedPrecondition(format!("person {id} was already merged")).into()),
                None => return Err(not_found(id)),
            }
        }
        let mut people = Vec::new();
        for id in [surviving, merged] {
            let Some(Found::Active(person)) = Store::find(connection, Identifier::Id(id)).await? else {
                return Err(not_found(id));
            };
            require_territory(&self.territories, caller, &person.data.registered_address.territory).await?;
            people.push(person);
        }
        let actor = actor(caller);
        Store::merge(connection, surviving, merged, reason, &actor).await?;
        let payload = pb::PersonMerged {
            surviving_person_id: surviving.to_string(),
            merged_person_id: merged.to_string(),
            changed_by: Some(actor_to_proto(&actor)),
        };
        esocial_events::outbox::enqueue(connection, &events::PERSON_MERGED, Some(&surviving.to_string()), &payload)
            .await?;
        Ok(people.swap_remove(0))
    }

    pub async fn mark_distinct(
        &self,
        connection: &mut PgConnection,
        caller: &Caller,
        one: Uuid,
        other: Uuid,
        reason: &str,
    ) -> Result<(), Error> {
        if one == other {
            return Err(ApiError::invalid_field("other_person_id", "must differ from person_id").into());
        }
        for id in [one, other] {
            let Some(found) = Store::find(connection, Identifier::Id(id)).await? else { return Err(not_found(id)) };
            let (Found::Active(person) | Found::Redirected { person, .. }) = found;
            require_territory(&self.territories, caller, &person.data.registered_address.territory).await?;
        }
        Store::mark_distinct(connection, one, other, reason, &actor(caller)).await?;
        Ok(())
    }

    pub async fn link_family(
        &self,
        connection: &mut PgConnection,
        caller: &Caller,
        person_id: Uuid,
        related: Uuid,
        relation: FamilyRelation,
        valid_from: NaiveDate,
    ) -> Result<Person, Error> {
        if person_id == related {
            return Err(ApiError::invalid_field("related_person_id", "must differ from person_id").into());
        }
        let Some(Found::Active(person)) = Store::find(connection, Identifier::Id(person_id)).await? else {
            return Err(not_found(person_id));
        };
        require_territory(&self.territories, caller, &person.data.registered_address.territory).await?;
        if !matches!(Store::find(connection, Identifier::Id(related)).await?, Some(Found::Active(_))) {
            return Err(not_found(related));
        }
        let actor = actor(caller);
        Store::link_family(connection, person_id, related, relation, valid_from, &actor).await?;
        let Some(Found::Active(person)) = Store::find(connection, Identifier::Id(person_id)).await? else {
            return Err(not_found(person_id));
        };
        person_event(connection, &events::PERSON_UPDATED, &person, &actor, "family link").await?;
        Ok(person)
    }
}

/// What a search looks for.
#[derive(Debug, Clone)]
pub enum SearchQuery {
    Rnokpp(String),
    Unzr(String),
    Passport(String),
    NameAndBirthDate { key: String, birth_date: NaiveDate },
}
