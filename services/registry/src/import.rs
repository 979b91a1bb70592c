//! Bulk registration from CSV or NDJSON, streamed in chunks.
//!
//! Each row is validated on its own (the checks of `RegisterPerson`), so a
//! bad row is reported and never stops the import; a valid row becomes its
//! COPY lines at once. Valid rows are written in batches by a writer task
//! while the next batch is parsed: one query finds which RNOKPP and UNZR are
//! already held (by a registered person or an earlier row), those rows are
//! duplicates of the holder, and the rest go by COPY straight into
//! `persons` and `person_versions`. If someone registers one of the
//! identifiers between the check and the COPY, the unique index refuses the
//! COPY and the batch is redone through staging tables with
//! `ON CONFLICT DO NOTHING`. Each batch commits with its problems, one
//! `persons.imported` event listing its persons and the import's counters.
//! Memory stays bounded: two batches and one partial line.

use std::collections::HashMap;
use std::time::Instant;

use chrono::NaiveDate;
use esocial_auth::Caller;
use esocial_kit::{ApiError, Violations};
use esocial_proto::registry::v1 as pb;
use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

use crate::access::{actor, require_territory};
use crate::convert::actor_to_proto;
use crate::domain::{Actor, PersonData};
use crate::events;
use crate::service::{Error, Registry};
use crate::store::StoreError;
use crate::validate::{PersonInput, person_data};

/// An import as recorded: id, when it finished, its counters.
type ImportRow = (Uuid, Option<chrono::DateTime<chrono::Utc>>, i64, i64, i64, i64);

/// Rows per transaction.
pub const BATCH_ROWS: usize = 5_000;
/// Batches written at once, each on its own connection, while the next is
/// parsed.
const WRITERS: usize = 2;
/// A longer line is rejected (protects memory).
pub const LINE_BYTES_MAX: usize = 64 * 1024;
/// Problems returned inline; the report has all.
const PROBLEMS_INLINE_MAX: usize = 1_000;

/// The columns of a CSV import (its header names them, in any order; NDJSON
/// objects use the same names).
pub const COLUMNS: &[&str] = &[
    "rnokpp",
    "rnokpp_refused",
    "unzr",
    "passport_number",
    "last_name",
    "first_name",
    "patronymic",
    "birth_date",
    "sex",
    "citizenship",
    "registered_territory",
    "registered_address",
    "actual_territory",
    "actual_address",
    "phone",
    "email",
    "disability",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

/// One field of a CSV line (RFC 4180 quoting, no line breaks inside fields).
fn split_csv(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut characters = line.chars().peekable();
    let mut at_field_start = true;
    while let Some(character) = characters.next() {
        match (quoted, character) {
            (false, '"') if at_field_start => quoted = true,
            (true, '"') if characters.peek() == Some(&'"') => {
                field.push('"');
                characters.next();
            }
            (true, '"') => {
                quoted = false;
                if !matches!(characters.peek(), None | Some(',')) {
                    return Err("a quoted field must end at a comma");
                }
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
                continue;
            }
            (_, other) => field.push(other),
        }
        at_field_start = false;
    }
    if quoted {
        return Err("an unterminated quoted field");
    }
    fields.push(field);
    Ok(fields)
}

/// Raw text fields of a row, by position in [`COLUMNS`] (absent: empty).
type RawRow = Vec<String>;

fn column(name: &str) -> Option<usize> {
    COLUMNS.iter().position(|known| *known == name)
}

/// `YYYY-MM-DD`, strictly.
fn parse_date(text: &str) -> Option<NaiveDate> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<u32>().ok();
    NaiveDate::from_ymd_opt(i32::try_from(number(0..4)?).ok()?, number(5..7)?, number(8..10)?)
}

fn to_input(mut raw: RawRow) -> PersonInput {
    let mut take =
        |name: &str| column(name).and_then(|index| raw.get_mut(index)).map(std::mem::take).unwrap_or_default();
    let birth_text = take("birth_date");
    let birth_date = parse_date(birth_text.trim());
    PersonInput {
        rnokpp: take("rnokpp"),
        rnokpp_refused: matches!(take("rnokpp_refused").trim(), "true" | "1" | "yes"),
        unzr: take("unzr"),
        passport_number: take("passport_number"),
        last_name: take("last_name"),
        first_name: take("first_name"),
        patronymic: take("patronymic"),
        birth_date,
        birth_date_invalid: !birth_text.trim().is_empty() && birth_date.is_none(),
        sex: take("sex"),
        citizenship: take("citizenship"),
        registered_territory: take("registered_territory"),
        registered_address: take("registered_address"),
        actual_territory: take("actual_territory"),
        actual_address: take("actual_address"),
        phone: take("phone"),
        email: take("email"),
        disability: take("disability"),
    }
}

fn ndjson_row(line: &str) -> Result<RawRow, String> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|error| format!("not a JSON object: {error}"))?;
    let object = value.as_object().ok_or("not a JSON object")?;
    let mut raw = vec![String::new(); COLUMNS.len()];
    for (key, value) in object {
        let Some(index) = column(key) else { return Err(format!("has an unknown field {key:?}")) };
        raw[index] = match value {
            serde_json::Value::String(text) => text.clone(),
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        };
    }
    Ok(raw)
}

/// A row that passed validation, waiting for its batch: its new id, the
/// identifiers that must stay unique, and its lines for COPY into `persons`
/// and `person_versions` (built while parsing, so the writer only writes).
#[derive(Debug)]
struct Valid {
    row: u64,
    id: Uuid,
    rnokpp: Option<String>,
    unzr: Option<String>,
    person_line: String,
    version_line: String,
}

/// A row that did not make it in.
#[derive(Debug, Clone)]
pub struct Problem {
    pub row: u64,
    pub outcome: &'static str,
    pub person_id: Option<Uuid>,
    pub reason: String,
}

/// Counts of an import in progress.
#[derive(Debug, Default)]
pub struct Totals {
    pub rows: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
    /// The first problems, returned with the response.
    pub inline: Vec<Problem>,
    /// Problems not yet written to the report.
    pending: Vec<Problem>,
}

impl Totals {
    fn keep_first_problems(&mut self) {
        self.inline.sort_by_key(|problem| problem.row);
        self.inline.truncate(PROBLEMS_INLINE_MAX);
    }
}

/// One import: feed it bytes, then finish.
#[derive(Debug)]
pub struct Import<'a> {
    registry: &'a Registry,
    caller: &'a Caller,
    actor: Actor,
    pub id: Uuid,
    format: Format,
    /// For each CSV field, its column in [`COLUMNS`].
    header: Option<Vec<usize>>,
    partial: Vec<u8>,
    skipping_long_line: bool,
    batch: Vec<Valid>,
    pub totals: Totals,
    /// What the versions name as their source.
    source_document: String,
    /// Rows counted in batches already handed to the writer.
    rows_handed_over: u64,
    /// The batches being written, oldest first.
    writing: std::collections::VecDeque<tokio::task::JoinHandle<Result<Written, Error>>>,
    today: NaiveDate,
    started: Instant,
}

/// What writing a batch did.
#[derive(Debug)]
struct Written {
    accepted: u64,
    /// Rows whose RNOKPP or UNZR someone holds, with the holder.
    duplicates: Vec<Problem>,
}

/// Writes batches of an import, each in its own transaction.
#[derive(Debug)]
struct Writer {
    pool: sqlx::PgPool,
    import_id: Uuid,
    actor: Actor,
}

impl Writer {
    /// Inserts the valid rows, finds the holders of the identifiers of those
    /// that conflicted, records every problem and one event, and advances
    /// the import's counters: all in one transaction.
    async fn write(self, batch: Vec<Valid>, mut problems: Vec<Problem>, rows: u64) -> Result<Written, Error> {
        let mut transaction = self.pool.begin().await?;
        let (fresh, mut duplicates) = split_conflicts(&mut transaction, batch).await?;
        let accepted_ids: Vec<Uuid> = match copy_fresh(&mut transaction, &fresh).await {
            Ok(()) => fresh.iter().map(|valid| valid.id).collect(),
            // Someone registered one of these identifiers since the check:
            // this batch goes row by row, conflicts become duplicates.
            Err(Error::Store(StoreError::Database(error))) if is_unique_violation(&error) => {
                transaction.rollback().await?;
                tracing::info!(import_id = %self.import_id, "an identifier was registered concurrently: batch redone row by row");
                transaction = self.pool.begin().await?;
                let inserted = insert_resolving_conflicts(&mut transaction, &fresh).await?;
                for valid in fresh.iter().filter(|valid| !inserted.contains(&valid.id)) {
                    let holder = holder(&mut transaction, valid.rnokpp.as_deref(), valid.unzr.as_deref()).await?;
                    duplicates.push(duplicate(valid.row, holder));
                }
                inserted
            }
            Err(error) => return Err(error),
        };
        let rejected = problems.len();
        problems.extend(duplicates.iter().cloned());
        save_problems(&mut transaction, self.import_id, &problems).await?;
        if !accepted_ids.is_empty() {
            let payload = pb::PersonsImported {
                import_id: self.import_id.to_string(),
                person_ids: accepted_ids.iter().map(ToString::to_string).collect(),
                changed_by: Some(actor_to_proto(&self.actor)),
            };
            esocial_events::outbox::enqueue(
                &mut transaction,
                &events::PERSONS_IMPORTED,
                Some(&self.import_id.to_string()),
                &payload,
            )
            .await?;
        }
        let count = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        sqlx::query(
            "UPDATE imports SET rows = rows + $2, accepted = accepted + $3, rejected = rejected + $4, duplicates = duplicates + $5
             WHERE id = $1",
        )
        .bind(self.import_id)
        .bind(i64::try_from(rows).unwrap_or(i64::MAX))
        .bind(count(accepted_ids.len()))
        .bind(count(rejected))
        .bind(count(duplicates.len()))
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(Written { accepted: u64::try_from(accepted_ids.len()).unwrap_or_default(), duplicates })
    }
}

impl<'a> Import<'a> {
    /// Starts an import, or tells how an earlier one with this request id ended.
    pub async fn start(
        registry: &'a Registry,
        caller: &'a Caller,
        request_id: Uuid,
        format: Format,
        source_document: &str,
    ) -> Result<Result<Self, pb::ImportPersonsResponse>, Error> {
        let existing: Option<ImportRow> = sqlx::query_as(
            "SELECT id, finished_at, rows, accepted, rejected, duplicates FROM imports WHERE request_id = $1",
        )
        .bind(request_id)
        .fetch_optional(registry.store.pool())
        .await?;
        if let Some((id, finished, rows, accepted, rejected, duplicates)) = existing {
            if finished.is_none() {
                return Err(ApiError::FailedPrecondition(format!(
                    "import {id} with this request_id did not finish; start a new one with a new request_id (rows already imported will be reported as duplicates)"
                ))
                .into());
            }
            let count = |value: i64| u64::try_from(value).unwrap_or_default();
            return Ok(Err(pb::ImportPersonsResponse {
                import_id: id.to_string(),
                rows: count(rows),
                accepted: count(accepted),
                rejected: count(rejected),
                duplicates: count(duplicates),
                problems: Vec::new(),
                seconds: 0.0,
            }));
        }
        let id = Uuid::now_v7();
        let actor = actor(caller);
        let format_name = match format {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        };
        sqlx::query(
            "INSERT INTO imports (id, request_id, format, source_document, recorded_by) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(request_id)
        .bind(format_name)
        .bind(source_document)
        .bind(&actor.subject)
        .execute(registry.store.pool())
        .await?;
        Ok(Ok(Self {
            registry,
            caller,
            actor,
            id,
            format,
            header: None,
            partial: Vec::new(),
            skipping_long_line: false,
            batch: Vec::with_capacity(BATCH_ROWS),
            totals: Totals::default(),
            source_document: if source_document.is_empty() {
                format!("import {id}")
            } else {
                format!("import {id}: {source_document}")
            },
            rows_handed_over: 0,
            writing: std::collections::VecDeque::with_capacity(WRITERS),
            today: esocial_kit::time::kyiv_today(),
            started: Instant::now(),
        }))
    }

    /// Takes the next bytes of the file.
    pub async fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        while let Some(newline) = bytes.iter().position(|&byte| byte == b'\n') {
            let (head, rest) = bytes.split_at(newline);
            bytes = &rest[1..];
            if self.skipping_long_line {
                self.skipping_long_line = false;
                self.partial.clear();
                continue;
            }
            self.partial.extend_from_slice(head);
            let line = std::mem::take(&mut self.partial);
            self.line(&line).await?;
        }
        if !self.skipping_long_line {
            self.partial.extend_from_slice(bytes);
            if self.partial.len() > LINE_BYTES_MAX {
                self.partial.clear();
                self.skipping_long_line = true;
                self.reject_next_row(format!("the line is longer than {LINE_BYTES_MAX} bytes"));
            }
        }
        Ok(())
    }

    fn reject_next_row(&mut self, reason: String) {
        self.totals.rows += 1;
        self.reject(self.totals.rows, reason);
    }

    async fn line(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let line = match std::str::from_utf8(bytes) {
            Ok(line) => line.trim_end_matches('\r'),
            Err(_) => {
                self.reject_next_row("the line is not UTF-8".to_owned());
                return Ok(());
            }
        };
        if line.trim().is_empty() {
            return Ok(());
        }
        let raw = match self.format {
            Format::Csv if self.header.is_none() => {
                let header = split_csv(line.trim_start_matches('\u{feff}'))
                    .map_err(|problem| ApiError::invalid_field("data", format!("the CSV header has {problem}")))?;
                let mut positions = Vec::with_capacity(header.len());
                for name in &header {
                    let Some(index) = column(name.trim()) else {
                        return Err(ApiError::invalid_field(
                            "data",
                            format!("unknown CSV column {name:?}; columns: {}", COLUMNS.join(", ")),
                        )
                        .into());
                    };
                    if positions.contains(&index) {
                        return Err(
                            ApiError::invalid_field("data", format!("the CSV column {name:?} appears twice")).into()
                        );
                    }
                    positions.push(index);
                }
                self.header = Some(positions);
                return Ok(());
            }
            Format::Csv => match split_csv(line) {
                Ok(fields) => {
                    let header = self.header.as_deref().unwrap_or_default();
                    if fields.len() != header.len() {
                        Err(format!("has {} fields, the header {}", fields.len(), header.len()))
                    } else {
                        let mut raw = vec![String::new(); COLUMNS.len()];
                        for (index, field) in header.iter().zip(fields) {
                            raw[*index] = field;
                        }
                        Ok(raw)
                    }
                }
                Err(problem) => Err(format!("has {problem}")),
            },
            Format::Ndjson => ndjson_row(line),
        };
        self.totals.rows += 1;
        let row = self.totals.rows;
        let raw = match raw {
            Ok(raw) => raw,
            Err(reason) => {
                self.reject(row, format!("the row {reason}"));
                return Ok(());
            }
        };
        let mut violations = Violations::new();
        let data = person_data(&mut violations, "", &to_input(raw), &self.registry.territories, self.today).await;
        match (data, violations.finish()) {
            (Some(data), Ok(())) => {
                if require_territory(&self.registry.territories, self.caller, &data.registered_address.territory)
                    .await
                    .is_err()
                {
                    self.reject(row, "registered_territory: outside the territories the caller serves".to_owned());
                } else {
                    let valid = self.prepare(row, &data)?;
                    self.batch.push(valid);
                }
            }
            (_, Err(ApiError::InvalidArgument(problems))) => {
                let reason = problems
                    .iter()
                    .map(|problem| format!("{}: {}", problem.field, problem.description))
                    .collect::<Vec<_>>()
                    .join("; ");
                self.reject(row, reason);
            }
            (_, _) => self.reject(row, "invalid".to_owned()),
        }
        if self.batch.len() >= BATCH_ROWS || self.totals.pending.len() >= BATCH_ROWS {
            self.flush().await?;
        }
        Ok(())
    }

    /// The COPY lines of a valid row.
    fn prepare(&self, row: u64, data: &PersonData) -> Result<Valid, Error> {
        let id = Uuid::now_v7();
        let rnokpp = data.rnokpp.as_ref().map(ToString::to_string);
        let unzr = data.unzr.as_ref().map(ToString::to_string);
        let passport = data.passport_number.as_ref().map(ToString::to_string);
        let id_text = id.to_string();
        let today = self.today.to_string();
        let mut person_line = String::with_capacity(256);
        copy_line(
            &mut person_line,
            &[
                Some(&id_text),
                Some("active"),
                Some("1"),
                Some(&today),
                rnokpp.as_deref(),
                unzr.as_deref(),
                passport.as_deref(),
                Some(&data.name.last),
                Some(&data.name.first),
                Some(&data.name.patronymic),
                Some(&data.name.key()),
                Some(&data.birth_date.to_string()),
                Some(&data.registered_address.territory),
                Some("1"),
                Some(&self.id.to_string()),
                Some(&row.to_string()),
            ],
        );
        let json = serde_json::to_string(data).map_err(ApiError::internal)?;
        let mut version_line = String::with_capacity(json.len() + 128);
        copy_line(
            &mut version_line,
            &[
                Some(&id_text),
                Some("1"),
                Some(&today),
                Some(&json),
                Some("bulk import"),
                Some(&self.source_document),
                Some(&self.actor.subject),
                self.actor.organization.as_deref(),
            ],
        );
        Ok(Valid { row, id, rnokpp, unzr, person_line, version_line })
    }

    /// A rejected row.
    fn reject(&mut self, row: u64, reason: String) {
        self.totals.rejected += 1;
        let problem = Problem { row, outcome: "rejected", person_id: None, reason };
        // Duplicates are found when a batch is written, after later rows'
        // rejections: keep the lowest rows, trimming now and then.
        self.totals.inline.push(problem.clone());
        if self.totals.inline.len() >= 2 * PROBLEMS_INLINE_MAX {
            self.totals.keep_first_problems();
        }
        self.totals.pending.push(problem);
    }

    /// Hands the pending valid rows and problems to a writer task and goes
    /// on reading; at most [`WRITERS`] batches are being written while the
    /// next is parsed.
    async fn flush(&mut self) -> Result<(), Error> {
        while self.writing.len() >= WRITERS {
            self.settle().await?;
        }
        let batch = std::mem::take(&mut self.batch);
        let problems = std::mem::take(&mut self.totals.pending);
        let rows = self.totals.rows - self.rows_handed_over;
        self.rows_handed_over = self.totals.rows;
        let writer = Writer { pool: self.registry.store.pool().clone(), import_id: self.id, actor: self.actor.clone() };
        self.writing.push_back(tokio::spawn(async move { writer.write(batch, problems, rows).await }));
        Ok(())
    }

    /// Waits for the oldest batch being written and takes in its outcome.
    async fn settle(&mut self) -> Result<(), Error> {
        let Some(writing) = self.writing.pop_front() else { return Ok(()) };
        let written =
            writing.await.map_err(|error| ApiError::internal(anyhow::anyhow!("import writer: {error}")))??;
        self.totals.accepted += written.accepted;
        for problem in written.duplicates {
            self.totals.duplicates += 1;
            self.totals.inline.push(problem);
        }
        if self.totals.inline.len() >= 2 * PROBLEMS_INLINE_MAX {
            self.totals.keep_first_problems();
        }
        Ok(())
    }

    /// Writes what is left and closes the import.
    pub async fn finish(mut self) -> Result<pb::ImportPersonsResponse, Error> {
        if !self.partial.is_empty() && !self.skipping_long_line {
            let line = std::mem::take(&mut self.partial);
            self.line(&line).await?;
        }
        self.flush().await?;
        while !self.writing.is_empty() {
            self.settle().await?;
        }
        sqlx::query("UPDATE imports SET finished_at = now() WHERE id = $1")
            .bind(self.id)
            .execute(self.registry.store.pool())
            .await?;
        self.totals.keep_first_problems();
        Ok(pb::ImportPersonsResponse {
            import_id: self.id.to_string(),
            rows: self.totals.rows,
            accepted: self.totals.accepted,
            rejected: self.totals.rejected,
            duplicates: self.totals.duplicates,
            problems: self.totals.inline.iter().map(problem_to_proto).collect(),
            seconds: self.started.elapsed().as_secs_f64(),
        })
    }
}

pub fn problem_to_proto(problem: &Problem) -> pb::ImportRow {
    pb::ImportRow {
        row: problem.row,
        outcome: match problem.outcome {
            "accepted" => pb::RowOutcome::Accepted,
            "duplicate" => pb::RowOutcome::Duplicate,
            _ => pb::RowOutcome::Rejected,
        }
        .into(),
        person_id: problem.person_id.map(|id| id.to_string()).unwrap_or_default(),
        reason: problem.reason.clone(),
    }
}

impl Registry {
    /// Rows of an import after `after_row`: accepted ones (the persons it
    /// created) and problems, or problems only. Only the importer (or a
    /// service) sees an import.
    pub async fn import_report(
        &self,
        caller: &Caller,
        import_id: Uuid,
        problems_only: bool,
        after_row: i64,
        limit: i64,
    ) -> Result<Vec<Problem>, Error> {
        let owner: Option<String> = sqlx::query_scalar("SELECT recorded_by FROM imports WHERE id = $1")
            .bind(import_id)
            .fetch_optional(self.store.pool())
            .await?;
        if owner.is_none_or(|owner| owner != caller.subject && !caller.has_role(esocial_auth::Role::Service)) {
            return Err(ApiError::NotFound(format!("import {import_id} does not exist")).into());
        }
        let rows: Vec<(i64, String, Option<Uuid>, String)> = sqlx::query_as(
            "SELECT row, outcome, person_id, reason FROM (
                 SELECT import_row AS row, 'accepted' AS outcome, id AS person_id, '' AS reason
                 FROM persons WHERE import_id = $1 AND NOT $2
                 UNION ALL
                 SELECT row, outcome, person_id, reason FROM import_problems WHERE import_id = $1) report
             WHERE row > $3 ORDER BY row LIMIT $4",
        )
        .bind(import_id)
        .bind(problems_only)
        .bind(after_row)
        .bind(limit)
        .fetch_all(self.store.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(row, outcome, person_id, reason)| Problem {
                row: u64::try_from(row).unwrap_or_default(),
                outcome: match outcome.as_str() {
                    "accepted" => "accepted",
                    "duplicate" => "duplicate",
                    _ => "rejected",
                },
                person_id,
                reason,
            })
            .collect())
    }
}

/// The active person holding this RNOKPP or UNZR.
async fn holder(
    connection: &mut PgConnection,
    rnokpp: Option<&str>,
    unzr: Option<&str>,
) -> Result<Option<Uuid>, Error> {
    Ok(crate::store::Store::holder_of(connection, rnokpp, unzr, None).await?.map(|(id, _)| id))
}

fn duplicate(row: u64, holder: Option<Uuid>) -> Problem {
    Problem {
        row,
        outcome: "duplicate",
        person_id: holder,
        reason: "an RNOKPP or UNZR already in the register".to_owned(),
    }
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().and_then(|error| error.code()).as_deref() == Some("23505")
}

/// A line of CSV for COPY: each field quoted with its quotes doubled; `None`
/// is an unquoted empty field (NULL).
fn copy_line(output: &mut String, fields: &[Option<&str>]) {
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            output.push(',');
        }
        if let Some(value) = field {
            output.push('"');
            for character in value.chars() {
                if character == '"' {
                    output.push('"');
                }
                output.push(character);
            }
            output.push('"');
        }
    }
    output.push('\n');
}

/// Splits a batch into rows to insert and duplicates: of an earlier row of
/// the batch, or of a person already registered (looked up in one query).
async fn split_conflicts(
    connection: &mut PgConnection,
    batch: Vec<Valid>,
) -> Result<(Vec<Valid>, Vec<Problem>), Error> {
    let rnokpps: Vec<&str> = batch.iter().filter_map(|valid| valid.rnokpp.as_deref()).collect();
    let unzrs: Vec<&str> = batch.iter().filter_map(|valid| valid.unzr.as_deref()).collect();
    let held: Vec<(Uuid, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT id, rnokpp, unzr FROM persons WHERE status = 'active' AND (rnokpp = ANY($1) OR unzr = ANY($2))",
    )
    .bind(&rnokpps)
    .bind(&unzrs)
    .fetch_all(&mut *connection)
    .await?;
    let mut holders: HashMap<String, Uuid> = HashMap::with_capacity(held.len() * 2 + batch.len() * 2);
    for (id, rnokpp, unzr) in held {
        for key in
            [rnokpp.map(|rnokpp| format!("r{rnokpp}")), unzr.map(|unzr| format!("u{unzr}"))].into_iter().flatten()
        {
            holders.insert(key, id);
        }
    }
    let mut fresh = Vec::with_capacity(batch.len());
    let mut duplicates = Vec::new();
    for valid in batch {
        let keys: Vec<String> = [
            valid.rnokpp.as_ref().map(|rnokpp| format!("r{rnokpp}")),
            valid.unzr.as_ref().map(|unzr| format!("u{unzr}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        match keys.iter().find_map(|key| holders.get(key)) {
            Some(holder) => duplicates.push(duplicate(valid.row, Some(*holder))),
            None => {
                for key in keys {
                    holders.insert(key, valid.id);
                }
                fresh.push(valid);
            }
        }
    }
    Ok((fresh, duplicates))
}

const PERSON_COLUMNS: &str = "id, status, version, valid_from, rnokpp, unzr, passport_number, last_name, first_name, patronymic, \
                              name_key, birth_date, registered_territory, data_version, import_id, import_row";
const VERSION_COLUMNS: &str =
    "person_id, version, valid_from, data, reason, source_document, recorded_by, recorded_by_org";

async fn copy_in(
    connection: &mut PgConnection,
    statement: String,
    lines: impl Iterator<Item = &str>,
) -> Result<(), Error> {
    let mut data = String::new();
    for line in lines {
        data.push_str(line);
    }
    let mut copy = connection.copy_in_raw(&statement).await?;
    copy.send(data.into_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

/// COPY straight into `persons` and `person_versions`.
async fn copy_fresh(connection: &mut PgConnection, fresh: &[Valid]) -> Result<(), Error> {
    if fresh.is_empty() {
        return Ok(());
    }
    copy_in(
        connection,
        format!("COPY persons ({PERSON_COLUMNS}) FROM STDIN WITH (FORMAT csv)"),
        fresh.iter().map(|valid| valid.person_line.as_str()),
    )
    .await?;
    copy_in(
        connection,
        format!("COPY person_versions ({VERSION_COLUMNS}) FROM STDIN WITH (FORMAT csv)"),
        fresh.iter().map(|valid| valid.version_line.as_str()),
    )
    .await
}

/// The slow path after a concurrent conflict: through staging tables with
/// `ON CONFLICT DO NOTHING`; returns the ids inserted.
async fn insert_resolving_conflicts(connection: &mut PgConnection, fresh: &[Valid]) -> Result<Vec<Uuid>, Error> {
    for statement in [
        "CREATE TEMPORARY TABLE IF NOT EXISTS import_staging_persons (LIKE persons INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
        "CREATE TEMPORARY TABLE IF NOT EXISTS import_staging_versions (LIKE person_versions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
    ] {
        sqlx::query(statement).execute(&mut *connection).await?;
    }
    copy_in(
        connection,
        format!("COPY import_staging_persons ({PERSON_COLUMNS}) FROM STDIN WITH (FORMAT csv)"),
        fresh.iter().map(|valid| valid.person_line.as_str()),
    )
    .await?;
    copy_in(
        connection,
        format!("COPY import_staging_versions ({VERSION_COLUMNS}) FROM STDIN WITH (FORMAT csv)"),
        fresh.iter().map(|valid| valid.version_line.as_str()),
    )
    .await?;
    let inserted: Vec<Uuid> = sqlx::query_scalar(AssertSqlSafe(format!(
        "INSERT INTO persons ({PERSON_COLUMNS}) SELECT {PERSON_COLUMNS} FROM import_staging_persons ORDER BY import_row
         ON CONFLICT DO NOTHING RETURNING id"
    )))
    .fetch_all(&mut *connection)
    .await?;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO person_versions ({VERSION_COLUMNS}) SELECT {VERSION_COLUMNS} FROM import_staging_versions WHERE person_id = ANY($1)"
    )))
    .bind(&inserted)
    .execute(&mut *connection)
    .await?;
    Ok(inserted)
}

async fn save_problems(connection: &mut PgConnection, import_id: Uuid, problems: &[Problem]) -> Result<(), Error> {
    if problems.is_empty() {
        return Ok(());
    }
    let rows: Vec<i64> = problems.iter().map(|problem| i64::try_from(problem.row).unwrap_or(i64::MAX)).collect();
    let outcomes: Vec<&str> = problems.iter().map(|problem| problem.outcome).collect();
    let person_ids: Vec<Option<Uuid>> = problems.iter().map(|problem| problem.person_id).collect();
    let reasons: Vec<&str> = problems.iter().map(|problem| problem.reason.as_str()).collect();
    sqlx::query(
        "INSERT INTO import_problems (import_id, row, outcome, person_id, reason)
         SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::uuid[], $5::text[])",
    )
    .bind(import_id)
    .bind(rows)
    .bind(outcomes)
    .bind(person_ids)
    .bind(reasons)
    .execute(connection)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split_csv;

    #[test]
    fn csv_fields_may_be_quoted_with_commas_and_quotes_inside() {
        assert_eq!(
            split_csv(r#"a,"b, c","d ""e""",,f"#),
            Ok(vec!["a".into(), "b, c".into(), r#"d "e""#.into(), String::new(), "f".into()])
        );
        assert!(split_csv(r#"a,"unterminated"#).is_err());
        assert!(split_csv(r#""closed"then,x"#).is_err());
    }
}
