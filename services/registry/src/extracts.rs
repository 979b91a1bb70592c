//! Extracts (витяги) from the register about a person: produced only here,
//! numbered (`ESR-<year>-<sequence>`), timestamped, the content as canonical
//! JSON signed by the register's key (compact JWS, EdDSA), the same content
//! as a PDF with a QR code carrying the number for verification. Only callers
//! who signed in with a qualified e-signature may request one, stating why.

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use esocial_auth::Caller;
use esocial_kit::ApiError;
use serde::Serialize;
use sha2::Digest as _;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::access::actor;
use crate::domain::{Person, Sex};
use crate::idp::hex;
use crate::providers::SupportRelation;
use crate::service::{Error, Registry};
use crate::store::Identifier;

/// An extract as produced.
#[derive(Debug, Clone)]
pub struct Extract {
    pub number: String,
    pub person_id: Uuid,
    pub generated_at: DateTime<Utc>,
    pub json: String,
    pub signature: String,
    pub pdf: Vec<u8>,
    pub qr_svg: String,
}

/// What the extract states; serialized in this field order (canonical).
#[derive(Debug, Serialize)]
struct Content<'a> {
    number: &'a str,
    generated_at: String,
    register: &'static str,
    person_id: String,
    version: u32,
    data: &'a crate::domain::PersonData,
    latin_name: crate::domain::Name,
    family: Vec<FamilyEntry>,
    support: Vec<SupportEntry<'a>>,
    requested_by: String,
    purpose: &'a str,
}

#[derive(Debug, Serialize)]
struct FamilyEntry {
    related_person_id: String,
    relation: &'static str,
    valid_from: chrono::NaiveDate,
}

#[derive(Debug, Serialize)]
struct SupportEntry<'a> {
    support_type_code: &'a str,
    support_type_version: i32,
    decision_number: &'a str,
    decision_date: chrono::NaiveDate,
    period_from: chrono::NaiveDate,
    period_to: Option<chrono::NaiveDate>,
    status: &'a str,
}

const REGISTER: &str = "Єдиний державний реєстр соціальної сфери";

fn render_error(error: impl std::fmt::Display) -> Error {
    ApiError::internal(anyhow::anyhow!("rendering the extract: {error}")).into()
}

impl Registry {
    /// Produces, signs and records an extract. The caller must have signed in
    /// with a qualified e-signature.
    pub async fn extract(
        &self,
        connection: &mut PgConnection,
        caller: &Caller,
        person_id: Uuid,
        purpose: &str,
    ) -> Result<Extract, Error> {
        if !caller.used_qualified_signature() {
            return Err(ApiError::PermissionDenied(
                "an extract needs a sign-in with a qualified electronic signature (qes)".to_owned(),
            )
            .into());
        }
        let today = esocial_kit::time::kyiv_today();
        let (person, _) = self.read_person(caller, Identifier::Id(person_id), today, "RequestExtract", purpose).await?;
        let support = self.support_relations_of(connection, person.id).await?;
        let generated_at = Utc::now();
        let sequence: i64 = sqlx::query_scalar("SELECT nextval('extract_numbers')").fetch_one(&mut *connection).await?;
        let number = format!("ESR-{}-{sequence:08}", generated_at.year());
        let json = content_json(&number, generated_at, &person, &support, caller, purpose)?;
        let signature = self.key.sign_compact(json.as_bytes());
        let pdf =
            esocial_render::pdf(&document(&number, generated_at, &person, &support, purpose)).map_err(render_error)?;
        let qr_svg = esocial_render::qr_svg(&number).map_err(render_error)?;
        sqlx::query(
            "INSERT INTO extracts (number, person_id, generated_at, json_sha256, requested_by, purpose) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&number)
        .bind(person.id)
        .bind(generated_at)
        .bind(hex(&sha2::Sha256::digest(json.as_bytes())))
        .bind(&caller.subject)
        .bind(purpose)
        .execute(connection)
        .await?;
        Ok(Extract { number, person_id: person.id, generated_at, json, signature, pdf, qr_svg })
    }

    async fn support_relations_of(
        &self,
        connection: &mut PgConnection,
        person_id: Uuid,
    ) -> Result<Vec<SupportRelation>, Error> {
        let mut ids = vec![person_id];
        ids.extend(self.store.merged_into(person_id).await?);
        Ok(sqlx::query_as(
            "SELECT id, person_id, support_type_code, support_type_version, provider_id, decision_number, decision_date,
                    period_from, period_to, status, version
             FROM support_relations WHERE person_id = ANY($1) ORDER BY period_from, id",
        )
        .bind(&ids)
        .fetch_all(connection)
        .await?)
    }

    /// Whether an extract number is the register's, and whether the JSON
    /// held (by its SHA-256) is the one it produced.
    pub async fn verify_extract(
        &self,
        number: &str,
        json_sha256: Option<&str>,
    ) -> Result<Option<(DateTime<Utc>, bool)>, Error> {
        let row: Option<(DateTime<Utc>, String)> =
            sqlx::query_as("SELECT generated_at, json_sha256 FROM extracts WHERE number = $1")
                .bind(number)
                .fetch_optional(self.store.pool())
                .await?;
        Ok(row.map(|(generated_at, digest)| {
            (generated_at, json_sha256.is_some_and(|held| held.eq_ignore_ascii_case(&digest)))
        }))
    }
}

fn content_json(
    number: &str,
    generated_at: DateTime<Utc>,
    person: &Person,
    support: &[SupportRelation],
    caller: &Caller,
    purpose: &str,
) -> Result<String, Error> {
    let requester = actor(caller);
    let content = Content {
        number,
        generated_at: generated_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        register: REGISTER,
        person_id: person.id.to_string(),
        version: person.version,
        data: &person.data,
        latin_name: person.data.name.latin(),
        family: person
            .family
            .iter()
            .map(|link| FamilyEntry {
                related_person_id: link.related_person_id.to_string(),
                relation: link.relation.as_str(),
                valid_from: link.valid_from,
            })
            .collect(),
        support: support
            .iter()
            .map(|relation| SupportEntry {
                support_type_code: &relation.support_type_code,
                support_type_version: relation.support_type_version,
                decision_number: &relation.decision_number,
                decision_date: relation.decision_date,
                period_from: relation.period_from,
                period_to: relation.period_to,
                status: &relation.status,
            })
            .collect(),
        requested_by: match requester.organization {
            Some(organization) => format!("{} ({organization})", requester.subject),
            None => requester.subject,
        },
        purpose,
    };
    serde_json::to_string(&content).map_err(|error| ApiError::internal(error).into())
}

fn relation_uk(relation: &str) -> &'static str {
    match relation {
        "parent" => "батько/мати",
        "child" => "дитина",
        "spouse" => "чоловік/дружина",
        "guardian" => "опікун",
        "ward" => "підопічний",
        _ => "родич",
    }
}

fn document(
    number: &str,
    generated_at: DateTime<Utc>,
    person: &Person,
    support: &[SupportRelation],
    purpose: &str,
) -> esocial_render::Document {
    let data = &person.data;
    let kyiv = esocial_kit::time::kyiv_time(generated_at);
    let mut fields = vec![
        ("Ідентифікатор особи в реєстрі".to_owned(), person.id.to_string()),
        ("Прізвище, ім’я, по батькові".to_owned(), data.name.full()),
        ("Латиницею".to_owned(), data.name.latin().full()),
        ("Дата народження".to_owned(), data.birth_date.format("%d.%m.%Y").to_string()),
        ("Стать".to_owned(), if data.sex == Sex::Male { "чоловіча" } else { "жіноча" }.to_owned()),
        (
            "РНОКПП".to_owned(),
            data.rnokpp.map(|rnokpp| rnokpp.to_string()).unwrap_or_else(|| "відмова від РНОКПП".to_owned()),
        ),
        ("УНЗР".to_owned(), data.unzr.map(|unzr| unzr.to_string()).unwrap_or_else(|| "—".to_owned())),
        ("Громадянство".to_owned(), data.citizenship.clone()),
        (
            "Зареєстроване місце проживання".to_owned(),
            format!("{} {}", data.registered_address.territory, data.registered_address.line).trim().to_owned(),
        ),
    ];
    for link in &person.family {
        fields.push((
            format!("Член сім’ї ({})", relation_uk(link.relation.as_str())),
            link.related_person_id.to_string(),
        ));
    }
    for relation in support {
        fields.push((
            format!("Підтримка {} (версія {})", relation.support_type_code, relation.support_type_version),
            format!(
                "рішення № {} від {}, з {}{}, {}",
                relation.decision_number,
                relation.decision_date.format("%d.%m.%Y"),
                relation.period_from.format("%d.%m.%Y"),
                relation.period_to.map(|to| format!(" по {}", to.format("%d.%m.%Y"))).unwrap_or_default(),
                relation.status
            ),
        ));
    }
    esocial_render::Document {
        title: "Витяг з Єдиного державного реєстру соціальної сфери".to_owned(),
        subtitle: Some(format!("№ {number}, сформовано {} (за київським часом)", kyiv.format("%d.%m.%Y %H:%M:%S"))),
        fields,
        paragraphs: vec![format!("Мета запиту: {purpose}.")],
        footer: "Витяг сформовано реєстром і підписано його ключем (JWS, EdDSA). Справжність перевіряється за номером (QR-код) без входу в систему.".to_owned(),
        qr_payload: Some(number.to_owned()),
    }
}
