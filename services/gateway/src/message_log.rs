//! The message log: every exchange through the gateway, hash-chained and
//! signed at intervals, so that an altered, removed or inserted entry is
//! found by [`verify`](crate::verify).
//!
//! A call reserves a place in a bounded queue before it is served
//! ([`MessageLog::reserve`]) and fills it when the exchange ends, so the
//! proxied call never waits for the database. One writer task per gateway
//! node takes entries in order, gives each the next sequence number and its
//! chain hash, and inserts them in batches. While the log cannot be written
//! (the queue is full, or the database refuses), the gateway refuses new
//! calls with UNAVAILABLE, unless configured to serve them unlogged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound as _, Utc};
use ed25519_dalek::Signer as _;
use sha2::{Digest as _, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgConnection, Row as _};
use tokio::sync::mpsc;

use crate::events;

pub type Digest = [u8; 32];
/// The `previous hash` of a chain's first entry.
pub const GENESIS: Digest = [0; 32];
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A member system calling esocial.
    Inbound,
    /// esocial calling another system.
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// One exchange, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub request_id: String,
    /// Empty when the caller was not a member.
    pub member_id: String,
    /// The token subject, empty without a valid token.
    pub caller: String,
    pub method: String,
    pub direction: Direction,
    pub started_at: DateTime<Utc>,
    pub duration_us: u64,
    pub status_code: i32,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// Empty when the body was not read (a call refused at the door).
    pub request_sha256: Vec<u8>,
    pub response_sha256: Vec<u8>,
    pub request_body: Option<Vec<u8>>,
    pub response_body: Option<Vec<u8>>,
}

fn put_text(hasher: &mut Sha256, text: &str) {
    hasher.update(u64::try_from(text.len()).unwrap_or(u64::MAX).to_be_bytes());
    hasher.update(text.as_bytes());
}

fn put_bytes(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update(u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_be_bytes());
    hasher.update(bytes);
}

/// An entry's fields, as the chain hash covers them. The bodies are covered
/// through their digests.
#[derive(Debug, Clone, Copy)]
pub struct HashedFields<'a> {
    pub node: &'a str,
    pub sequence: i64,
    pub request_id: &'a str,
    pub member_id: &'a str,
    pub caller: &'a str,
    pub method: &'a str,
    pub direction: &'a str,
    pub started_at_us: i64,
    pub duration_us: i64,
    pub status_code: i32,
    pub request_bytes: i64,
    pub response_bytes: i64,
    pub request_sha256: &'a [u8],
    pub response_sha256: &'a [u8],
}

/// SHA-256 over the previous entry's hash and this entry's fields, each
/// length-prefixed (so no two different entries encode alike).
pub fn entry_hash(previous: &Digest, fields: &HashedFields<'_>) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update(b"esocial-gateway-log-entry/v1");
    hasher.update(previous);
    put_text(&mut hasher, fields.node);
    hasher.update(fields.sequence.to_be_bytes());
    put_text(&mut hasher, fields.request_id);
    put_text(&mut hasher, fields.member_id);
    put_text(&mut hasher, fields.caller);
    put_text(&mut hasher, fields.method);
    put_text(&mut hasher, fields.direction);
    hasher.update(fields.started_at_us.to_be_bytes());
    hasher.update(fields.duration_us.to_be_bytes());
    hasher.update(fields.status_code.to_be_bytes());
    hasher.update(fields.request_bytes.to_be_bytes());
    hasher.update(fields.response_bytes.to_be_bytes());
    put_bytes(&mut hasher, fields.request_sha256);
    put_bytes(&mut hasher, fields.response_sha256);
    hasher.finalize().into()
}

/// The bytes a checkpoint's signature covers.
pub fn checkpoint_message(node: &str, sequence: i64, hash: &Digest, signed_at: DateTime<Utc>) -> Vec<u8> {
    format!("esocial-gateway-log-checkpoint/v1\n{node}\n{sequence}\n{}\n{}", hex(hash), signed_at.timestamp_micros())
        .into_bytes()
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// What happens to calls while the log cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Refuse new calls (UNAVAILABLE) until entries can be written again.
    #[default]
    Refuse,
    /// Serve them without an entry (counted, and logged as an error).
    Serve,
}

impl std::str::FromStr for FailurePolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "refuse" => Ok(FailurePolicy::Refuse),
            "serve" => Ok(FailurePolicy::Serve),
            other => Err(format!("{other:?} is not refuse or serve")),
        }
    }
}

/// A reserved place in the log queue; filled when the exchange ends.
pub type Reservation = mpsc::OwnedPermit<LogEntry>;

/// The calls' side of the log.
#[derive(Debug, Clone)]
pub struct MessageLog {
    sender: mpsc::Sender<LogEntry>,
    writable: Arc<AtomicBool>,
    policy: FailurePolicy,
    unlogged: Arc<AtomicU64>,
}

/// The log cannot take an entry and the policy is to refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the message log cannot be written; calls are refused until it can")]
pub struct LogUnavailable;

impl MessageLog {
    /// A place for one entry: `Ok(None)` when the call is to be served
    /// unlogged ([`FailurePolicy::Serve`]).
    pub fn reserve(&self) -> Result<Option<Reservation>, LogUnavailable> {
        let reserved =
            if self.writable.load(Ordering::Relaxed) { self.sender.clone().try_reserve_owned().ok() } else { None };
        match (reserved, self.policy) {
            (Some(reservation), _) => Ok(Some(reservation)),
            (None, FailurePolicy::Refuse) => Err(LogUnavailable),
            (None, FailurePolicy::Serve) => {
                let unlogged = self.unlogged.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::error!(unlogged, "message log unavailable: serving a call without an entry");
                Ok(None)
            }
        }
    }

    /// Whether entries are being written.
    pub fn is_writable(&self) -> bool {
        self.writable.load(Ordering::Relaxed)
    }

    /// Calls served without an entry since start.
    pub fn unlogged_calls(&self) -> u64 {
        self.unlogged.load(Ordering::Relaxed)
    }
}

/// The key that signs checkpoints.
pub struct CheckpointKey {
    pub key: ed25519_dalek::SigningKey,
    pub key_id: String,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("CheckpointKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl CheckpointKey {
    /// From a PKCS#8 PEM Ed25519 private key; the key id is its JWK thumbprint.
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map_err(|error| anyhow::anyhow!("not an Ed25519 PKCS#8 key: {error}"))?;
        let key_id = esocial_auth::SigningKey::from_pkcs8_pem(pem)?.key_id().to_owned();
        Ok(Self { key, key_id })
    }

    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.key.verifying_key()
    }
}

#[derive(Debug, Clone)]
pub struct WriterSettings {
    pub node: String,
    pub queue_capacity: usize,
    pub batch_size_max: usize,
    pub checkpoint_interval: Duration,
}

/// The writer of one node's chain.
#[derive(Debug)]
pub struct LogWriter {
    receiver: mpsc::Receiver<LogEntry>,
    options: PgConnectOptions,
    settings: WriterSettings,
    key: Arc<CheckpointKey>,
    writable: Arc<AtomicBool>,
}

/// Creates both sides of a node's log.
pub fn message_log(
    options: PgConnectOptions,
    settings: WriterSettings,
    key: Arc<CheckpointKey>,
    policy: FailurePolicy,
) -> (MessageLog, LogWriter) {
    let (sender, receiver) = mpsc::channel(settings.queue_capacity.max(1));
    // Not writable until the writer has its connection and the chain head.
    let writable = Arc::new(AtomicBool::new(false));
    let log = MessageLog { sender, writable: writable.clone(), policy, unlogged: Arc::new(AtomicU64::new(0)) };
    (log, LogWriter { receiver, options, settings, key, writable })
}

/// The last entry of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    sequence: i64,
    hash: Digest,
}

/// The writer's connection, holding the node's lock.
struct Session {
    connection: PgConnection,
    head: Head,
    checkpointed: i64,
}

#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("another gateway writes the chain of node {0:?}; give each replica its own ESOCIAL_GATEWAY_NODE")]
    NodeTaken(String),
    #[error("the stored chain head of node {0:?} is malformed")]
    MalformedHead(String),
}

impl LogWriter {
    async fn open_session(&self) -> Result<Session, WriteError> {
        let mut connection = PgConnection::connect_with(&self.options).await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('esocial-gateway-log:' || $1))")
            .bind(&self.settings.node)
            .fetch_one(&mut connection)
            .await?;
        if !locked {
            return Err(WriteError::NodeTaken(self.settings.node.clone()));
        }
        let head = Self::stored_head(&mut connection, &self.settings.node).await?;
        let checkpointed: i64 =
            sqlx::query_scalar("SELECT coalesce(max(sequence), 0) FROM log_checkpoints WHERE node = $1")
                .bind(&self.settings.node)
                .fetch_one(&mut connection)
                .await?;
        Ok(Session { connection, head, checkpointed })
    }

    async fn stored_head(connection: &mut PgConnection, node: &str) -> Result<Head, WriteError> {
        let row = sqlx::query("SELECT sequence, hash FROM message_log WHERE node = $1 ORDER BY sequence DESC LIMIT 1")
            .bind(node)
            .fetch_optional(connection)
            .await?;
        let Some(row) = row else {
            return Ok(Head { sequence: 0, hash: GENESIS });
        };
        let hash: Vec<u8> = row.try_get("hash")?;
        let hash = Digest::try_from(hash.as_slice()).map_err(|_| WriteError::MalformedHead(node.to_owned()))?;
        Ok(Head { sequence: row.try_get("sequence")?, hash })
    }

    /// Writes entries until every sender is gone (the server stopped and
    /// its calls ended), or `shutdown` completes and the queue is drained,
    /// then signs a last checkpoint.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()> + Send) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut stopping = false;
        let mut session: Option<Session> = None;
        let mut pending: Vec<LogEntry> = Vec::new();
        let mut backoff = BACKOFF_MIN;
        let mut last_checkpoint = Instant::now();
        // The head a failed write would have made: if a new session finds it
        // stored, that write committed after all and is not repeated.
        let mut attempted: Option<Head> = None;
        loop {
            if session.is_none() {
                match self.open_session().await {
                    Ok(opened) => {
                        if attempted.take() == Some(opened.head) {
                            pending.clear();
                        }
                        tracing::info!(node = %self.settings.node, head = opened.head.sequence, "message log writer ready");
                        session = Some(opened);
                        self.writable.store(true, Ordering::Relaxed);
                        backoff = BACKOFF_MIN;
                    }
                    Err(error) => {
                        self.writable.store(false, Ordering::Relaxed);
                        tracing::error!(%error, retry_in_ms = backoff.as_millis(), "message log writer cannot start");
                        if stopping && pending.is_empty() {
                            return;
                        }
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = &mut shutdown, if !stopping => stopping = true,
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                }
            }
            let Some(open) = session.as_mut() else { continue };
            if pending.is_empty() {
                let until_checkpoint = self.settings.checkpoint_interval.saturating_sub(last_checkpoint.elapsed());
                let received = if stopping {
                    self.receiver.try_recv().ok()
                } else {
                    tokio::select! {
                        received = self.receiver.recv() => received,
                        () = tokio::time::sleep(until_checkpoint) => {
                            self.checkpoint_if_due(&mut session, &mut last_checkpoint).await;
                            continue;
                        }
                        () = &mut shutdown => { stopping = true; continue; }
                    }
                };
                let Some(entry) = received else {
                    // Every sender is gone, or stopping with an empty queue.
                    last_checkpoint = Instant::now() - self.settings.checkpoint_interval;
                    self.checkpoint_if_due(&mut session, &mut last_checkpoint).await;
                    return;
                };
                pending.push(entry);
                while pending.len() < self.settings.batch_size_max {
                    match self.receiver.try_recv() {
                        Ok(entry) => pending.push(entry),
                        Err(_) => break,
                    }
                }
            }
            let (columns, new_head) = Self::chain(open.head, &self.settings.node, &pending);
            match Self::insert(&mut open.connection, &self.settings.node, &columns).await {
                Ok(()) => {
                    open.head = new_head;
                    pending.clear();
                    self.writable.store(true, Ordering::Relaxed);
                    backoff = BACKOFF_MIN;
                    if last_checkpoint.elapsed() >= self.settings.checkpoint_interval {
                        self.checkpoint_if_due(&mut session, &mut last_checkpoint).await;
                    }
                }
                Err(error) => {
                    // Keep the batch; reconnect and try again. Calls are
                    // refused meanwhile (or served unlogged, per policy).
                    self.writable.store(false, Ordering::Relaxed);
                    tracing::error!(%error, entries = pending.len(), retry_in_ms = backoff.as_millis(), "message log write failed");
                    attempted = Some(new_head);
                    session = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Gives each entry of a batch its sequence number and chain hash.
    fn chain(head: Head, node: &str, batch: &[LogEntry]) -> (BatchColumns, Head) {
        let mut head = head;
        let mut columns = BatchColumns::with_capacity(batch.len());
        for entry in batch {
            let sequence = head.sequence + 1;
            let fields = HashedFields {
                node,
                sequence,
                request_id: &entry.request_id,
                member_id: &entry.member_id,
                caller: &entry.caller,
                method: &entry.method,
                direction: entry.direction.as_str(),
                started_at_us: entry.started_at.timestamp_micros(),
                duration_us: as_i64(entry.duration_us),
                status_code: entry.status_code,
                request_bytes: as_i64(entry.request_bytes),
                response_bytes: as_i64(entry.response_bytes),
                request_sha256: &entry.request_sha256,
                response_sha256: &entry.response_sha256,
            };
            let hash = entry_hash(&head.hash, &fields);
            columns.push(sequence, entry, hash);
            head = Head { sequence, hash };
        }
        (columns, head)
    }

    /// Inserts a chained batch in one statement (one transaction).
    async fn insert(connection: &mut PgConnection, node: &str, columns: &BatchColumns) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO message_log (node, sequence, request_id, member_id, caller, method, direction, started_at,
                                      duration_us, status_code, request_bytes, response_bytes, request_sha256,
                                      response_sha256, request_body, response_body, hash)
             SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                                      $8::timestamptz[], $9::bigint[], $10::int[], $11::bigint[], $12::bigint[],
                                      $13::bytea[], $14::bytea[], $15::bytea[], $16::bytea[], $17::bytea[])",
        )
        .bind(node)
        .bind(&columns.sequence)
        .bind(&columns.request_id)
        .bind(&columns.member_id)
        .bind(&columns.caller)
        .bind(&columns.method)
        .bind(&columns.direction)
        .bind(&columns.started_at)
        .bind(&columns.duration_us)
        .bind(&columns.status_code)
        .bind(&columns.request_bytes)
        .bind(&columns.response_bytes)
        .bind(&columns.request_sha256)
        .bind(&columns.response_sha256)
        .bind(&columns.request_body)
        .bind(&columns.response_body)
        .bind(&columns.hash)
        .execute(connection)
        .await?;
        Ok(())
    }

    async fn checkpoint_if_due(&self, session: &mut Option<Session>, last_checkpoint: &mut Instant) {
        let Some(open) = session.as_mut() else { return };
        if open.head.sequence > open.checkpointed {
            match self.sign_checkpoint(open).await {
                Ok(()) => {
                    tracing::debug!(node = %self.settings.node, sequence = open.head.sequence, "log checkpoint signed");
                }
                Err(error) => {
                    tracing::error!(%error, "cannot store a message log checkpoint; will retry");
                    *session = None;
                    self.writable.store(false, Ordering::Relaxed);
                    return;
                }
            }
        }
        *last_checkpoint = Instant::now();
    }

    async fn sign_checkpoint(&self, session: &mut Session) -> Result<(), WriteError> {
        let head = session.head;
        // The database keeps microseconds; sign what it keeps.
        let signed_at = Utc::now().trunc_subsecs(6);
        let signature =
            self.key.key.sign(&checkpoint_message(&self.settings.node, head.sequence, &head.hash, signed_at));
        let mut transaction = session.connection.begin().await?;
        sqlx::query(
            "INSERT INTO log_checkpoints (node, sequence, hash, signed_at, key_id, signature) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&self.settings.node)
        .bind(head.sequence)
        .bind(head.hash.as_slice())
        .bind(signed_at)
        .bind(&self.key.key_id)
        .bind(signature.to_bytes().as_slice())
        .execute(&mut *transaction)
        .await?;
        let event = esocial_proto::gateway::v1::LogCheckpointed {
            node: self.settings.node.clone(),
            sequence: head.sequence,
            hash: hex(&head.hash),
            key_id: self.key.key_id.clone(),
            signature: hex(&signature.to_bytes()),
        };
        esocial_events::outbox::enqueue(&mut transaction, &events::LOG_CHECKPOINTED, Some(&self.settings.node), &event)
            .await?;
        transaction.commit().await?;
        session.checkpointed = head.sequence;
        Ok(())
    }
}

/// An entry as stored, for the auditors' search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub node: String,
    pub sequence: i64,
    pub entry: LogEntry,
    pub hash: Vec<u8>,
}

/// What auditors search by; `None` matches anything.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub member_id: Option<String>,
    /// A full method path, or a service prefix ending in `/`.
    pub method: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub request_id: Option<String>,
    pub include_bodies: bool,
}

/// Where a search page starts: after this (time, node, sequence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCursor {
    pub started_at_us: i64,
    pub node: String,
    pub sequence: i64,
}

impl std::str::FromStr for LogCursor {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.splitn(3, ':');
        let started_at_us = parts.next().and_then(|part| part.parse().ok()).ok_or(())?;
        let sequence = parts.next().and_then(|part| part.parse().ok()).ok_or(())?;
        let node = parts.next().ok_or(())?.to_owned();
        Ok(Self { started_at_us, node, sequence })
    }
}

impl std::fmt::Display for LogCursor {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}:{}:{}", self.started_at_us, self.sequence, self.node)
    }
}

/// Entries matching `filter`, oldest first.
pub async fn search(
    pool: &sqlx::PgPool,
    filter: &LogFilter,
    after: Option<&LogCursor>,
    limit: i64,
) -> Result<Vec<StoredEntry>, sqlx::Error> {
    let (method_exact, method_prefix) = match &filter.method {
        Some(method) if method.ends_with('/') => {
            (None, Some(format!("{}%", method.replace('%', "\\%").replace('_', "\\_"))))
        }
        Some(method) => (Some(method.clone()), None),
        None => (None, None),
    };
    let bodies = if filter.include_bodies {
        "request_body, response_body"
    } else {
        "NULL::bytea AS request_body, NULL::bytea AS response_body"
    };
    let query = format!(
        "SELECT node, sequence, request_id, member_id, caller, method, direction, started_at, duration_us, status_code,
                request_bytes, response_bytes, request_sha256, response_sha256, {bodies}, hash
         FROM message_log
         WHERE ($1::text IS NULL OR member_id = $1)
           AND ($2::text IS NULL OR method = $2)
           AND ($3::text IS NULL OR method LIKE $3)
           AND ($4::timestamptz IS NULL OR started_at >= $4)
           AND ($5::timestamptz IS NULL OR started_at < $5)
           AND ($6::text IS NULL OR request_id = $6)
           AND ($7::timestamptz IS NULL OR (started_at, node, sequence) > ($7, $8, $9))
         ORDER BY started_at, node, sequence
         LIMIT $10"
    );
    let after_time = after.and_then(|cursor| DateTime::<Utc>::from_timestamp_micros(cursor.started_at_us));
    let rows = sqlx::query(sqlx::AssertSqlSafe(query))
        .bind(filter.member_id.as_deref())
        .bind(method_exact)
        .bind(method_prefix)
        .bind(filter.from)
        .bind(filter.to)
        .bind(filter.request_id.as_deref())
        .bind(after_time)
        .bind(after.map(|cursor| cursor.node.clone()).unwrap_or_default())
        .bind(after.map_or(0, |cursor| cursor.sequence))
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            let direction: String = row.try_get("direction")?;
            Ok(StoredEntry {
                node: row.try_get("node")?,
                sequence: row.try_get("sequence")?,
                hash: row.try_get("hash")?,
                entry: LogEntry {
                    request_id: row.try_get("request_id")?,
                    member_id: row.try_get("member_id")?,
                    caller: row.try_get("caller")?,
                    method: row.try_get("method")?,
                    direction: if direction == "outbound" { Direction::Outbound } else { Direction::Inbound },
                    started_at: row.try_get("started_at")?,
                    duration_us: u64::try_from(row.try_get::<i64, _>("duration_us")?).unwrap_or(0),
                    status_code: row.try_get("status_code")?,
                    request_bytes: u64::try_from(row.try_get::<i64, _>("request_bytes")?).unwrap_or(0),
                    response_bytes: u64::try_from(row.try_get::<i64, _>("response_bytes")?).unwrap_or(0),
                    request_sha256: row.try_get("request_sha256")?,
                    response_sha256: row.try_get("response_sha256")?,
                    request_body: row.try_get("request_body")?,
                    response_body: row.try_get("response_body")?,
                },
            })
        })
        .collect()
}

/// A batch as column arrays, for one `INSERT … SELECT FROM unnest(…)`.
#[derive(Default)]
struct BatchColumns {
    sequence: Vec<i64>,
    request_id: Vec<String>,
    member_id: Vec<String>,
    caller: Vec<String>,
    method: Vec<String>,
    direction: Vec<&'static str>,
    started_at: Vec<DateTime<Utc>>,
    duration_us: Vec<i64>,
    status_code: Vec<i32>,
    request_bytes: Vec<i64>,
    response_bytes: Vec<i64>,
    request_sha256: Vec<Vec<u8>>,
    response_sha256: Vec<Vec<u8>>,
    request_body: Vec<Option<Vec<u8>>>,
    response_body: Vec<Option<Vec<u8>>>,
    hash: Vec<Vec<u8>>,
}

impl BatchColumns {
    fn with_capacity(capacity: usize) -> Self {
        Self { sequence: Vec::with_capacity(capacity), request_id: Vec::with_capacity(capacity), ..Self::default() }
    }

    fn push(&mut self, sequence: i64, entry: &LogEntry, hash: Digest) {
        self.sequence.push(sequence);
        self.request_id.push(entry.request_id.clone());
        self.member_id.push(entry.member_id.clone());
        self.caller.push(entry.caller.clone());
        self.method.push(entry.method.clone());
        self.direction.push(entry.direction.as_str());
        self.started_at.push(entry.started_at);
        self.duration_us.push(as_i64(entry.duration_us));
        self.status_code.push(entry.status_code);
        self.request_bytes.push(as_i64(entry.request_bytes));
        self.response_bytes.push(as_i64(entry.response_bytes));
        self.request_sha256.push(entry.request_sha256.clone());
        self.response_sha256.push(entry.response_sha256.clone());
        self.request_body.push(entry.request_body.clone());
        self.response_body.push(entry.response_body.clone());
        self.hash.push(hash.to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(sequence: i64) -> HashedFields<'static> {
        HashedFields {
            node: "node-1",
            sequence,
            request_id: "r-1",
            member_id: "UA/GOV/32855961/diia",
            caller: "client:diia",
            method: "/esocial.registry.v1.IdpService/VerifyIdpCertificate",
            direction: "inbound",
            started_at_us: 1_700_000_000_000_000,
            duration_us: 1234,
            status_code: 0,
            request_bytes: 25,
            response_bytes: 80,
            request_sha256: &[1; 32],
            response_sha256: &[2; 32],
        }
    }

    #[test]
    fn every_field_and_the_previous_hash_change_the_entry_hash() {
        let base = entry_hash(&GENESIS, &fields(1));
        assert_ne!(base, entry_hash(&[9; 32], &fields(1)), "previous hash");
        let variants = [
            HashedFields { node: "node-2", ..fields(1) },
            HashedFields { sequence: 2, ..fields(1) },
            HashedFields { request_id: "r-2", ..fields(1) },
            HashedFields { member_id: "UA/GOV/32855961/dii", ..fields(1) },
            HashedFields { caller: "client:x", ..fields(1) },
            HashedFields { method: "/a.B/C", ..fields(1) },
            HashedFields { direction: "outbound", ..fields(1) },
            HashedFields { started_at_us: 1, ..fields(1) },
            HashedFields { duration_us: 1, ..fields(1) },
            HashedFields { status_code: 7, ..fields(1) },
            HashedFields { request_bytes: 26, ..fields(1) },
            HashedFields { response_bytes: 81, ..fields(1) },
            HashedFields { request_sha256: &[3; 32], ..fields(1) },
            HashedFields { response_sha256: &[], ..fields(1) },
        ];
        for variant in &variants {
            assert_ne!(entry_hash(&GENESIS, variant), base, "{variant:?}");
        }
        // Length prefixes: moving a character from one text to the next differs.
        let shifted = HashedFields { request_id: "r-1U", member_id: "A/GOV/32855961/diia", ..fields(1) };
        assert_ne!(entry_hash(&GENESIS, &shifted), base);
        assert_eq!(entry_hash(&GENESIS, &fields(1)), base, "deterministic");
    }

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[0, 1, 0xab, 0xff]), "0001abff");
    }
}
