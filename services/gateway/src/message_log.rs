//! The message log: every exchange through the gateway, hash-chained and
//! signed at intervals (of time, and under load of entries), so that an
//! altered, removed or inserted entry is found by [`verify`](crate::verify).
//!
//! A call reserves a place in a bounded queue before it is served
//! ([`MessageLog::reserve`]) and fills it when the exchange ends, so the
//! proxied call never waits for the database. One writer task per gateway
//! node takes entries in order, gives each the next sequence number and its
//! chain hash, and inserts them in batches. While the log cannot be written
//! (the queue is full, or the database refuses), the gateway refuses new
//! calls with UNAVAILABLE, unless configured to serve them unlogged.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, SubsecRound as _, Utc};
use ed25519_dalek::Signer as _;
use sha2::{Digest as _, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgConnection, Row as _};
use tokio::sync::mpsc;

use crate::counted::Counted;
use crate::events;
use crate::packed::PackedEntry;

pub type Digest = [u8; 32];
/// The `previous hash` of a chain's first entry.
pub const GENESIS: Digest = [0; 32];
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long the writer waits at shutdown for calls still running.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the writer looks, at shutdown, whether streams' entries are
/// still to come.
const STREAM_END_POLL: Duration = Duration::from_millis(20);
/// A batch takes no more entries once the bodies it keeps (full mode, up
/// to [`crate::proxy::BODY_CAPTURE_BYTES_MAX`] each) reach this: one
/// statement stays far below what PostgreSQL takes in one message (1 GiB).
pub const BATCH_BODY_BYTES_MAX: usize = 64 << 20;

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

/// An entry on its way to the writer, with the place its bodies hold in
/// the [`BodyBudget`] until they are written.
#[derive(Debug)]
pub struct Queued {
    entry: LogEntry,
    kept: Reservation,
}

/// Bytes of bodies kept for full-mode entries that may wait in memory at
/// once (in calls still running, the queue and the batch being written).
pub const KEPT_BODY_BYTES_MAX: usize = 256 << 20;

/// What the bodies kept for the log hold in memory, against a maximum: a
/// body that would pass it keeps its size and digest only (as one longer
/// than [`crate::proxy::BODY_CAPTURE_BYTES_MAX`] does), so that full-mode
/// members with large messages cannot fill the gateway's memory while
/// entries wait to be written.
#[derive(Debug)]
pub struct BodyBudget {
    used: AtomicUsize,
    max: usize,
}

impl BodyBudget {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { used: AtomicUsize::new(0), max })
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty place in this budget.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation { budget: Some(self.clone()), bytes: 0 }
    }
}

/// Bytes held in a [`BodyBudget`], given back when dropped. The default
/// belongs to no budget and holds nothing.
#[derive(Debug, Default)]
pub struct Reservation {
    budget: Option<Arc<BodyBudget>>,
    bytes: usize,
}

impl Reservation {
    /// Holds `bytes` more if they fit in its budget.
    pub fn grow(&mut self, bytes: usize) -> bool {
        let Some(budget) = &self.budget else { return false };
        let taken = budget.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            used.checked_add(bytes).filter(|total| *total <= budget.max)
        });
        if taken.is_ok() {
            self.bytes += bytes;
        }
        taken.is_ok()
    }

    /// Takes over what `other` holds.
    pub fn absorb(&mut self, mut other: Reservation) {
        if self.budget.is_none() {
            self.budget = other.budget.take();
        }
        self.bytes += std::mem::take(&mut other.bytes);
    }

    /// Gives back what it holds now.
    pub fn release(&mut self) {
        if let Some(budget) = &self.budget {
            budget.used.fetch_sub(std::mem::take(&mut self.bytes), Ordering::AcqRel);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
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
    /// Whether the bodies themselves are stored (full mode), so that
    /// removing a stored body breaks the chain as altering it does.
    pub request_body_stored: bool,
    pub response_body_stored: bool,
}

/// A secret for HMAC-SHA-256, derived from the gateway's signing key for one
/// purpose (every replica has the signing key, so every replica derives the
/// same secret).
///
/// The message log chain is keyed with one: without it, nobody who can
/// write to the database can recompute the hashes after changing an entry,
/// so the first changed entry is the one reported, checkpoint or not (a new
/// signing key starts a new chain, under a new node name). Subscription
/// acknowledgement tokens are signed with another.
#[derive(Clone)]
pub struct MacKey([u8; 32]);

impl std::fmt::Debug for MacKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("MacKey(…)")
    }
}

/// The purpose of the message log chain's key.
pub const CHAIN_KEY_PURPOSE: &str = "esocial-gateway-log-chain-key/v1";

impl MacKey {
    pub fn derive(signing_key: &ed25519_dalek::SigningKey, purpose: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(purpose.as_bytes());
        hasher.update([0]);
        hasher.update(signing_key.to_bytes());
        Self(hasher.finalize().into())
    }

    /// HMAC-SHA-256 of `parts`, each length-prefixed.
    pub fn mac(&self, parts: &[&[u8]]) -> Digest {
        keyed(self, |hasher| {
            for part in parts {
                put_bytes(hasher, part);
            }
        })
    }

    /// The padded key XORed with `pad` (HMAC, RFC 2104, SHA-256's 64-byte block).
    fn padded(&self, pad: u8) -> [u8; 64] {
        let mut block = [pad; 64];
        for (byte, key_byte) in block.iter_mut().zip(self.0) {
            *byte ^= key_byte;
        }
        block
    }
}

/// HMAC-SHA-256, keyed with the chain key, over the previous entry's hash
/// and this entry's fields, each length-prefixed (so no two different
/// entries encode alike), and whether each body is stored.
pub fn entry_hash(key: &MacKey, previous: &Digest, fields: &HashedFields<'_>) -> Digest {
    keyed(key, |hasher| {
        hasher.update(b"esocial-gateway-log-entry/v2");
        hasher.update(previous);
        put_fields(hasher, fields);
        hasher.update([u8::from(fields.request_body_stored), u8::from(fields.response_body_stored)]);
    })
}

/// The hash of entries written before 2026-12-04, which did not cover
/// whether the bodies are stored; the verifier accepts an entry that
/// matches it (a stored hash of one form never matches the other, and
/// neither can be made without the chain key).
pub fn entry_hash_v1(key: &MacKey, previous: &Digest, fields: &HashedFields<'_>) -> Digest {
    keyed(key, |hasher| {
        hasher.update(b"esocial-gateway-log-entry/v1");
        hasher.update(previous);
        put_fields(hasher, fields);
    })
}

fn put_fields(hasher: &mut Sha256, fields: &HashedFields<'_>) {
    put_text(hasher, fields.node);
    hasher.update(fields.sequence.to_be_bytes());
    put_text(hasher, fields.request_id);
    put_text(hasher, fields.member_id);
    put_text(hasher, fields.caller);
    put_text(hasher, fields.method);
    put_text(hasher, fields.direction);
    hasher.update(fields.started_at_us.to_be_bytes());
    hasher.update(fields.duration_us.to_be_bytes());
    hasher.update(fields.status_code.to_be_bytes());
    hasher.update(fields.request_bytes.to_be_bytes());
    hasher.update(fields.response_bytes.to_be_bytes());
    put_bytes(hasher, fields.request_sha256);
    put_bytes(hasher, fields.response_sha256);
}

/// HMAC-SHA-256 (RFC 2104) with the chain key over what `message` feeds.
fn keyed(key: &MacKey, message: impl FnOnce(&mut Sha256)) -> Digest {
    let mut inner = Sha256::new();
    inner.update(key.padded(0x36));
    message(&mut inner);
    let mut outer = Sha256::new();
    outer.update(key.padded(0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The bytes a checkpoint's signature covers.
pub fn checkpoint_message(node: &str, sequence: i64, hash: &Digest, signed_at: DateTime<Utc>) -> Vec<u8> {
    format!("esocial-gateway-log-checkpoint/v1\n{node}\n{sequence}\n{}\n{}", hex(hash), signed_at.timestamp_micros())
        .into_bytes()
}

pub fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    push_hex(&mut text, bytes);
    text
}

/// The `gateway.log.checkpointed` event of a signed checkpoint: its copy
/// outside the database.
pub fn checkpoint_event(
    node: &str,
    sequence: i64,
    hash: &Digest,
    signed_at: DateTime<Utc>,
    key_id: &str,
    signature: &ed25519_dalek::Signature,
) -> esocial_proto::gateway::v1::LogCheckpointed {
    esocial_proto::gateway::v1::LogCheckpointed {
        node: node.to_owned(),
        sequence,
        hash: hex(hash),
        key_id: key_id.to_owned(),
        signature: hex(&signature.to_bytes()),
        signed_at: Some(crate::grpc::timestamp(signed_at)),
    }
}

/// The bytes of an even number of hex digits (either case).
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    // By table, not by comparisons: `verify-log` decodes three digests an
    // entry, whose digits fall at random on either side of a branch.
    const INVALID: u8 = 0xff;
    const NIBBLES: [u8; 256] = {
        let mut table = [INVALID; 256];
        let mut value: u8 = 0;
        while value < 16 {
            let (lower, upper) =
                if value < 10 { (b'0' + value, b'0' + value) } else { (b'a' + value - 10, b'A' + value - 10) };
            table[lower as usize] = value;
            table[upper as usize] = value;
            value += 1;
        }
        table
    };
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    let mut bytes = Vec::with_capacity(digits.len() / 2);
    let mut invalid = 0;
    for pair in digits.chunks_exact(2) {
        let (high, low) = (NIBBLES[usize::from(pair[0])], NIBBLES[usize::from(pair[1])]);
        invalid |= high | low;
        bytes.push(high << 4 | low);
    }
    // Only an invalid digit has its high bits set.
    (invalid & 0xf0 == 0).then_some(bytes)
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

/// Where a call's entry goes when the exchange ends.
#[derive(Debug)]
pub enum LogSlot {
    /// A place reserved in the queue before the call was served (unary
    /// calls): the entry always fits.
    Reserved(mpsc::OwnedPermit<Queued>),
    /// A stream, which may last an hour, holds no place while it streams
    /// (else a member's streams could fill the queue); its entry waits for
    /// room when it ends.
    AtEnd(StreamEnd),
    /// Served unlogged ([`FailurePolicy::Serve`]).
    Unlogged,
}

/// The way of a stream's entry to the queue. While one exists, the writer
/// does not close the queue at shutdown (until its drain time is over), so
/// that the entry of a stream that ends then, or waits for room, is written.
#[derive(Debug)]
pub struct StreamEnd {
    sender: mpsc::Sender<Queued>,
    _counted: Counted,
    /// The runtime the writer runs on, where an entry waits for room: the
    /// serving thread's runtime the stream ran on may end before the
    /// writer has drained the queue, and drop what waits on it.
    runtime: tokio::runtime::Handle,
}

impl LogSlot {
    /// The slot of a call found to stream after its slot was taken: it
    /// gives its reserved place back and waits for room at its end.
    #[must_use]
    pub fn streaming(self, log: &MessageLog) -> Self {
        match self {
            LogSlot::Reserved(permit) => LogSlot::AtEnd(log.stream_end(permit.release())),
            other => other,
        }
    }

    /// Sends `entry`; `kept` is the place its bodies hold in the
    /// [`BodyBudget`], given back once they are written.
    pub fn send(self, entry: LogEntry, kept: Reservation) {
        let entry = Queued { entry, kept };
        match self {
            LogSlot::Reserved(permit) => {
                permit.send(entry);
            }
            LogSlot::AtEnd(end) => {
                let lost = || tracing::error!("a stream's message log entry came after the writer stopped; it is lost");
                match end.sender.try_send(entry) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(entry)) => {
                        // `end` goes with the entry, whole (its place in the
                        // count too, not only its sender): the writer waits
                        // for it.
                        end.runtime.clone().spawn(async move {
                            let end = end;
                            if end.sender.send(entry).await.is_err() {
                                lost();
                            }
                        });
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => lost(),
                }
            }
            LogSlot::Unlogged => {}
        }
    }
}

/// The calls' side of the log.
#[derive(Debug, Clone)]
pub struct MessageLog {
    sender: mpsc::Sender<Queued>,
    writable: Arc<AtomicBool>,
    policy: FailurePolicy,
    unlogged: Arc<AtomicU64>,
    bodies: Arc<BodyBudget>,
    /// Streams whose entries are still to come ([`StreamEnd`]).
    streams: Arc<AtomicUsize>,
    /// The runtime the log was made on, the writer's.
    runtime: tokio::runtime::Handle,
}

/// The log cannot take an entry and the policy is to refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the message log cannot be written; calls are refused until it can")]
pub struct LogUnavailable;

impl MessageLog {
    /// What the bodies kept for entries hold in memory.
    pub fn body_budget(&self) -> &Arc<BodyBudget> {
        &self.bodies
    }

    /// Whether a call would be served now: the log takes entries (the
    /// writer writes and the queue has room), or the policy is to serve
    /// unlogged. The gateway's health follows it.
    pub fn accepts_calls(&self) -> bool {
        self.policy == FailurePolicy::Serve || (self.writable.load(Ordering::Relaxed) && self.sender.capacity() > 0)
    }

    /// How many calls of one member may be in flight at once: a quarter of
    /// the queue's places, which unary calls hold until their entries are
    /// sent, so that one member's calls cannot take every place and shut
    /// the others out.
    pub fn member_calls_max(&self) -> usize {
        (self.sender.max_capacity() / 4).max(1)
    }

    /// A stream's way to the queue, counted until its entry is sent.
    fn stream_end(&self, sender: mpsc::Sender<Queued>) -> StreamEnd {
        StreamEnd { sender, _counted: Counted::one_more(&self.streams), runtime: self.runtime.clone() }
    }

    /// Where the entry of a call about to be served will go.
    pub fn slot(&self, streaming: bool) -> Result<LogSlot, LogUnavailable> {
        let writable = self.writable.load(Ordering::Relaxed);
        let slot = match (writable, streaming) {
            (true, false) => self.sender.clone().try_reserve_owned().ok().map(LogSlot::Reserved),
            (true, true) => (self.sender.capacity() > 0).then(|| LogSlot::AtEnd(self.stream_end(self.sender.clone()))),
            (false, _) => None,
        };
        match (slot, self.policy) {
            (Some(slot), _) => Ok(slot),
            (None, FailurePolicy::Refuse) => Err(LogUnavailable),
            (None, FailurePolicy::Serve) => {
                let unlogged = self.unlogged.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::error!(unlogged, "message log unavailable: serving a call without an entry");
                Ok(LogSlot::Unlogged)
            }
        }
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

    pub fn chain_key(&self) -> MacKey {
        MacKey::derive(&self.key, CHAIN_KEY_PURPOSE)
    }

    /// Another secret derived from this key, for `purpose`.
    pub fn derive(&self, purpose: &str) -> MacKey {
        MacKey::derive(&self.key, purpose)
    }
}

#[derive(Debug, Clone)]
pub struct WriterSettings {
    pub node: String,
    pub queue_capacity: usize,
    pub batch_size_max: usize,
    /// How long a batch waits for more entries before it is written.
    pub batch_linger: Duration,
    pub checkpoint_interval: Duration,
    /// A checkpoint is also signed once this many entries follow the last.
    pub checkpoint_entries: i64,
}

/// The writer of one node's chain.
#[derive(Debug)]
pub struct LogWriter {
    receiver: mpsc::Receiver<Queued>,
    options: PgConnectOptions,
    settings: WriterSettings,
    key: Arc<CheckpointKey>,
    chain_key: MacKey,
    writable: Arc<AtomicBool>,
    /// Streams whose entries are still to come ([`StreamEnd`]).
    streams: Arc<AtomicUsize>,
}

/// Creates both sides of a node's log; called on the runtime the writer
/// will run on.
pub fn message_log(
    options: PgConnectOptions,
    settings: WriterSettings,
    key: Arc<CheckpointKey>,
    policy: FailurePolicy,
) -> (MessageLog, LogWriter) {
    let (sender, receiver) = mpsc::channel(settings.queue_capacity.max(1));
    // Not writable until the writer has its connection and the chain head.
    let writable = Arc::new(AtomicBool::new(false));
    let log = MessageLog {
        sender,
        writable: writable.clone(),
        policy,
        unlogged: Arc::new(AtomicU64::new(0)),
        bodies: BodyBudget::new(KEPT_BODY_BYTES_MAX),
        streams: Arc::new(AtomicUsize::new(0)),
        runtime: tokio::runtime::Handle::current(),
    };
    let chain_key = key.chain_key();
    let streams = log.streams.clone();
    (log, LogWriter { receiver, options, settings, key, chain_key, writable, streams })
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
    #[error(
        "the message log of node {node:?} ends at entry {head} but a checkpoint signed entry {checkpointed}: signed entries were removed; run `esocial gateway verify-log`"
    )]
    Truncated { node: String, head: i64, checkpointed: i64 },
    #[error(
        "the message log of node {node:?} was signed with key {stored}, and this gateway's key is {current}: a new key starts a new chain under a new node name (ESOCIAL_GATEWAY_NODE)"
    )]
    OtherKey { node: String, stored: String, current: String },
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
        let newest: Option<(i64, String)> = sqlx::query_as(
            "SELECT sequence, key_id FROM log_checkpoints WHERE node = $1 ORDER BY sequence DESC LIMIT 1",
        )
        .bind(&self.settings.node)
        .fetch_optional(&mut connection)
        .await?;
        let checkpointed = newest.as_ref().map_or(0, |(sequence, _)| *sequence);
        // Entries keyed with this gateway's key after entries keyed with
        // another would break the chain where the key changed, and
        // `verify-log` would stop there: every entry after it unchecked.
        if let Some((_, stored)) = newest
            && stored != self.key.key_id
        {
            return Err(WriteError::OtherKey {
                node: self.settings.node.clone(),
                stored,
                current: self.key.key_id.clone(),
            });
        }
        if head.sequence < checkpointed {
            // Signed entries are gone: the chain cannot go on from here
            // without hiding that. An operator must look.
            return Err(WriteError::Truncated { node: self.settings.node.clone(), head: head.sequence, checkpointed });
        }
        Ok(Session { connection, head, checkpointed })
    }

    async fn stored_head(connection: &mut PgConnection, node: &str) -> Result<Head, WriteError> {
        let row = sqlx::query(
            "SELECT last_sequence AS sequence, decode(entries::json -> -1 ->> 'hash', 'hex') AS hash
             FROM message_log_batches WHERE node = $1 ORDER BY last_sequence DESC LIMIT 1",
        )
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

    /// Writes entries until `shutdown`; then writes what is queued and what
    /// is still to come (the entries of calls still running and of streams
    /// ending, waiting at most [`DRAIN_TIMEOUT`] for them), and signs a last
    /// checkpoint.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()> + Send) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut drain_until: Option<Instant> = None;
        let mut session: Option<Session> = None;
        let mut pending: Option<PendingBatch> = None;
        let mut backoff = BACKOFF_MIN;
        let mut last_checkpoint = Instant::now();
        // The last entry this writer knows to be written.
        let mut written: Option<Head> = None;
        loop {
            if session.is_none() {
                match self.open_session().await {
                    Ok(mut opened) => {
                        if let Some(written) = written
                            && opened.head.sequence < written.sequence
                        {
                            // Entries written since this writer started are
                            // gone (removed while it was away, before any
                            // checkpoint signed them). Numbering them again
                            // would hide that: the chain goes on from the
                            // last one written, and the gap stays for
                            // `verify-log` to report.
                            tracing::error!(
                                node = %self.settings.node,
                                stored = opened.head.sequence,
                                written = written.sequence,
                                "message log entries this writer wrote were removed; the chain goes on after them, run `esocial gateway verify-log`"
                            );
                            opened.head = written;
                        }
                        written = Some(opened.head);
                        tracing::info!(node = %self.settings.node, head = opened.head.sequence, "message log writer ready");
                        if let Some(batch) = &mut pending {
                            if opened.head == batch.head {
                                // The write that seemed to fail had committed.
                                pending = None;
                            } else {
                                batch.chain(opened.head, &self.settings.node, &self.chain_key);
                            }
                        }
                        session = Some(opened);
                        self.writable.store(true, Ordering::Relaxed);
                        backoff = BACKOFF_MIN;
                    }
                    Err(error) => {
                        self.writable.store(false, Ordering::Relaxed);
                        tracing::error!(%error, retry_in_ms = backoff.as_millis(), "message log writer cannot start");
                        if drain_until.is_some_and(|until| Instant::now() >= until) {
                            self.report_lost();
                            return;
                        }
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = &mut shutdown, if drain_until.is_none() => {
                                drain_until = Some(Instant::now() + DRAIN_TIMEOUT);
                            }
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                }
            }
            let Some(open) = session.as_mut() else { continue };
            if pending.is_none() {
                let until_checkpoint = self.settings.checkpoint_interval.saturating_sub(last_checkpoint.elapsed());
                let received = match drain_until {
                    Some(until) => self.next_at_shutdown(until).await,
                    None => tokio::select! {
                        received = self.receiver.recv() => received,
                        () = tokio::time::sleep(until_checkpoint) => {
                            self.checkpoint_if_due(&mut session, &mut last_checkpoint, &mut backoff).await;
                            continue;
                        }
                        () = &mut shutdown => {
                            drain_until = Some(Instant::now() + DRAIN_TIMEOUT);
                            continue;
                        }
                    },
                };
                let Some(first) = received else {
                    // Closed and drained (or the drain timed out).
                    self.report_lost();
                    last_checkpoint = Instant::now() - self.settings.checkpoint_interval;
                    self.checkpoint_if_due(&mut session, &mut last_checkpoint, &mut backoff).await;
                    return;
                };
                let mut columns = BatchColumns::with_capacity(self.settings.batch_size_max);
                columns.push(first);
                // Gather for a moment: one commit for many entries costs
                // the database far less than many commits.
                let gather_until = tokio::time::Instant::now() + self.settings.batch_linger;
                while !columns.is_full(self.settings.batch_size_max) {
                    match self.receiver.try_recv() {
                        Ok(entry) => columns.push(entry),
                        Err(_) if drain_until.is_some() => break,
                        Err(_) => match tokio::time::timeout_at(gather_until, self.receiver.recv()).await {
                            Ok(Some(entry)) => columns.push(entry),
                            Ok(None) | Err(_) => break,
                        },
                    }
                }
                let mut batch = PendingBatch { columns, head: open.head };
                batch.chain(open.head, &self.settings.node, &self.chain_key);
                pending = Some(batch);
            }
            let Some(batch) = pending.as_ref() else { continue };
            match Self::insert(&mut open.connection, &self.settings.node, &batch.columns).await {
                Ok(()) => {
                    open.head = batch.head;
                    written = Some(batch.head);
                    pending = None;
                    self.writable.store(true, Ordering::Relaxed);
                    backoff = BACKOFF_MIN;
                    let unsigned = open.head.sequence - open.checkpointed;
                    if last_checkpoint.elapsed() >= self.settings.checkpoint_interval
                        || unsigned >= self.settings.checkpoint_entries
                    {
                        self.checkpoint_if_due(&mut session, &mut last_checkpoint, &mut backoff).await;
                    }
                }
                Err(error) => {
                    // Keep the batch; reconnect and try again. Calls are
                    // refused meanwhile (or served unlogged, per policy).
                    self.writable.store(false, Ordering::Relaxed);
                    tracing::error!(%error, entries = batch.columns.len(), retry_in_ms = backoff.as_millis(), "message log write failed");
                    session = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// The next entry once the writer is to stop: `None` when the queue is
    /// closed and drained, or at `until` nothing more is queued. The queue
    /// is closed (no new entries; calls still running keep their reserved
    /// places) once no stream's entry is still to come, so that one that
    /// ends now, or waits for room in a full queue, is written too; at
    /// `until` it is closed whatever is still to come.
    async fn next_at_shutdown(&mut self, until: Instant) -> Option<Queued> {
        loop {
            if self.streams.load(Ordering::Acquire) == 0 {
                self.receiver.close();
                return tokio::time::timeout_at(until.into(), self.receiver.recv()).await.unwrap_or(None);
            }
            let now = Instant::now();
            if now >= until {
                // No more: what is queued is written, and calls are refused.
                self.receiver.close();
                return self.receiver.try_recv().ok();
            }
            let step = (now + STREAM_END_POLL).min(until);
            if let Ok(received) = tokio::time::timeout_at(step.into(), self.receiver.recv()).await {
                return received;
            }
        }
    }

    /// Says what was not written when the writer stops.
    fn report_lost(&self) {
        let queued = self.receiver.len();
        let streams = self.streams.load(Ordering::Acquire);
        if queued + streams > 0 {
            tracing::error!(queued, streams, "message log entries not written at shutdown");
        }
    }

    /// Inserts a chained batch as one row (one statement, one transaction).
    async fn insert(connection: &mut PgConnection, node: &str, columns: &BatchColumns) -> Result<(), sqlx::Error> {
        let row = columns.stored();
        sqlx::query(
            "INSERT INTO message_log_batches (node, first_sequence, last_sequence, first_started_at, last_started_at,
                                              member_ids, methods, services, request_ids, entries, member_methods)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(node)
        .bind(row.first_sequence)
        .bind(row.last_sequence)
        .bind(row.first_started_at)
        .bind(row.last_started_at)
        .bind(&row.member_ids)
        .bind(&row.methods)
        .bind(&row.services)
        .bind(&columns.request_id)
        .bind(&row.entries)
        .bind(&row.member_methods)
        .execute(connection)
        .await?;
        Ok(())
    }

    async fn checkpoint_if_due(
        &self,
        session: &mut Option<Session>,
        last_checkpoint: &mut Instant,
        backoff: &mut Duration,
    ) {
        let Some(open) = session.as_mut() else { return };
        if open.head.sequence > open.checkpointed {
            match self.sign_checkpoint(open).await {
                Ok(()) => {
                    tracing::debug!(node = %self.settings.node, sequence = open.head.sequence, "log checkpoint signed");
                }
                Err(error) => {
                    tracing::error!(%error, retry_in_ms = backoff.as_millis(), "cannot store a message log checkpoint; will retry");
                    *session = None;
                    self.writable.store(false, Ordering::Relaxed);
                    tokio::time::sleep(*backoff).await;
                    *backoff = (*backoff * 2).min(BACKOFF_MAX);
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
        let event =
            checkpoint_event(&self.settings.node, head.sequence, &head.hash, signed_at, &self.key.key_id, &signature);
        esocial_events::outbox::enqueue(&mut transaction, &events::LOG_CHECKPOINTED, Some(&self.settings.node), &event)
            .await?;
        transaction.commit().await?;
        session.checkpointed = head.sequence;
        Ok(())
    }
}

/// Entries taken from the queue, as columns, chained after some head.
struct PendingBatch {
    columns: BatchColumns,
    /// The head after this batch.
    head: Head,
}

impl PendingBatch {
    /// Gives each entry its sequence number and chain hash after `base`.
    fn chain(&mut self, base: Head, node: &str, key: &MacKey) {
        let columns = &mut self.columns;
        let mut head = base;
        for index in 0..columns.len() {
            let sequence = head.sequence + 1;
            let fields = HashedFields {
                node,
                sequence,
                request_id: &columns.request_id[index],
                member_id: &columns.member_id[index],
                caller: &columns.caller[index],
                method: &columns.method[index],
                direction: columns.direction[index],
                started_at_us: columns.started_at[index].timestamp_micros(),
                duration_us: columns.duration_us[index],
                status_code: columns.status_code[index],
                request_bytes: columns.request_bytes[index],
                response_bytes: columns.response_bytes[index],
                request_sha256: &columns.request_sha256[index],
                response_sha256: &columns.response_sha256[index],
                request_body_stored: columns.request_body[index].is_some(),
                response_body_stored: columns.response_body[index].is_some(),
            };
            let hash = entry_hash(key, &head.hash, &fields);
            columns.sequence[index] = sequence;
            columns.hash[index] = hash.to_vec();
            head = Head { sequence, hash };
        }
        self.head = head;
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

/// The transactions whose entries a search shows: those that had
/// committed when its first page was read (PostgreSQL's `pg_snapshot`,
/// `xmin:xmax:xip,…`, checked as PostgreSQL checks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSnapshot {
    /// Every transaction before it had ended.
    xmin: u64,
    /// None from it on had ended.
    xmax: u64,
    /// Those between that were still running, ascending.
    running: Vec<u64>,
}

/// Running transactions a page token may name: as many as a PostgreSQL
/// cluster can run at once (`max_connections` is at most 262,143), so that
/// no snapshot of a busy cluster is refused, and a token no larger.
const SNAPSHOT_RUNNING_MAX: usize = 1 << 18;

impl std::str::FromStr for LogSnapshot {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.splitn(3, ':');
        let mut number = || parts.next().and_then(|part| part.parse::<u64>().ok()).ok_or(());
        let (xmin, xmax) = (number()?, number()?);
        let running: Vec<u64> = match parts.next().ok_or(())? {
            "" => Vec::new(),
            list => list.split(',').map(|xid| xid.parse().map_err(|_| ())).collect::<Result<_, _>>()?,
        };
        let ascending = running.windows(2).all(|pair| pair[0] < pair[1]);
        let within = running.iter().all(|xid| (xmin..xmax).contains(xid));
        if xmin == 0 || xmin > xmax || !ascending || !within {
            return Err(());
        }
        Ok(Self { xmin, xmax, running })
    }
}

impl std::fmt::Display for LogSnapshot {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}:{}:", self.xmin, self.xmax)?;
        for (index, xid) in self.running.iter().enumerate() {
            write!(formatter, "{}{xid}", if index == 0 { "" } else { "," })?;
        }
        Ok(())
    }
}

/// Where a search page starts: after this (time, node, sequence), among the
/// entries its first page saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCursor {
    pub started_at_us: i64,
    pub node: String,
    pub sequence: i64,
    pub seen: LogSnapshot,
}

impl std::str::FromStr for LogCursor {
    type Err = ();

    /// `time:sequence:xmin:xmax:xip,…:node`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.splitn(3, ':');
        let started_at_us = parts.next().and_then(|part| part.parse().ok()).ok_or(())?;
        let sequence = parts.next().and_then(|part| part.parse().ok()).ok_or(())?;
        // The snapshot's three parts, then the node (which may hold `:`).
        let rest = parts.next().ok_or(())?;
        let (snapshot_end, _) = rest.match_indices(':').nth(2).ok_or(())?;
        let seen: LogSnapshot = rest[..snapshot_end].parse()?;
        if seen.running.len() > SNAPSHOT_RUNNING_MAX {
            return Err(());
        }
        Ok(Self { started_at_us, node: rest[snapshot_end + 1..].to_owned(), sequence, seen })
    }
}

impl std::fmt::Display for LogCursor {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}:{}:{}:{}", self.started_at_us, self.sequence, self.seen, self.node)
    }
}

/// A page of a search: its entries, and the transactions it saw (`None`
/// when it has no entries: no page follows it).
#[derive(Debug)]
pub struct SearchPage {
    pub entries: Vec<StoredEntry>,
    pub seen: Option<LogSnapshot>,
}

/// Entries matching `filter`, oldest first, at most `limit`; with bodies,
/// only those whose bodies before them come to at most `body_bytes_max`
/// (the first two always). A first page sees the entries written by then;
/// the pages after it (`after`) see those too, and no others, so that an
/// entry written meanwhile with an earlier start is in none of them rather
/// than in some.
pub async fn search(
    pool: &sqlx::PgPool,
    filter: &LogFilter,
    after: Option<&LogCursor>,
    limit: i64,
    body_bytes_max: usize,
) -> Result<SearchPage, sqlx::Error> {
    let Ok(limit @ 1..) = usize::try_from(limit) else {
        return Ok(SearchPage { entries: Vec::new(), seen: None });
    };
    let after_time = after.and_then(|cursor| DateTime::<Utc>::from_timestamp_micros(cursor.started_at_us));
    // The entries wanted start at or after this.
    let not_before = after_time.max(filter.from);
    // The transactions whose batches the search shows, and the earliest
    // start of a batch that may hold an entry wanted: a batch's entries
    // start over a span, so a batch with one starting at or after
    // `not_before` starts no earlier than that less the longest span of
    // any batch (indexed).
    let start = sqlx::query(
        "SELECT pg_current_snapshot()::text AS now,
                $1::timestamptz - (SELECT max(last_started_at - first_started_at) FROM message_log_batches) AS earliest",
    )
    .bind(not_before)
    .fetch_one(pool)
    .await?;
    let seen = match after {
        Some(cursor) => cursor.seen.clone(),
        None => {
            let now: String = start.try_get("now")?;
            now.parse().map_err(|()| {
                sqlx::Error::Decode(format!("pg_current_snapshot() gave {now:?}, not a snapshot").into())
            })?
        }
    };
    let reads = BatchReads {
        pool: pool.clone(),
        filter: filter.clone(),
        after_time,
        earliest: start.try_get("earliest")?,
        seen: seen.to_string(),
    };
    let wanted = Wanted::of(filter, after);
    // Batches are read in the order they start, found by their columns
    // (indexed; with a member and a method or service, only those that
    // name the pair), and their entries unpacked and matched here. Entries
    // are ordered by their start, and each starts no earlier than its
    // batch, so the page is whole once it holds `limit` entries that all
    // start before the next batch does. A first read is of a few batches
    // (a page of a busy member, or of a time, is in them); when it is not
    // enough, each read after it is of more, and is read ahead while the
    // one before it is matched.
    let mut found: Vec<Found> = Vec::new();
    let mut batches_a_read = SEARCH_BATCHES_FIRST;
    let mut next = Some(reads.read(None, batches_a_read));
    let mut ahead = false;
    'reading: while let Some(reading) = next.take() {
        let rows = reading.rows().await?;
        // Where the next read starts, if there may be more batches.
        let following = match rows.last() {
            Some(last) if crate::packed::more_follow(&rows, batches_a_read)? => {
                Some((last.try_get("first_started_at")?, last.try_get("node")?, last.try_get("first_sequence")?))
            }
            _ => None,
        };
        let mut read_next = |key: BatchKey| {
            batches_a_read = (batches_a_read * 2).min(SEARCH_BATCHES_MAX);
            reads.read(Some(key), batches_a_read)
        };
        if ahead {
            next = following.clone().map(&mut read_next);
        }
        for row in &rows {
            let batch_start: DateTime<Utc> = row.try_get("first_started_at")?;
            if found.len() >= limit && found[limit - 1].started_at_us < batch_start.timestamp_micros() {
                break 'reading;
            }
            let node: &str = row.try_get("node")?;
            let text: &str = row.try_get("entries")?;
            let entries: Vec<PackedEntry<'_>> = serde_json::from_str(text).map_err(|error| {
                let first: i64 = row.try_get("first_sequence").unwrap_or_default();
                sqlx::Error::Decode(
                    format!("the batch of node {node} from entry {first} cannot be read: {error}").into(),
                )
            })?;
            let before = found.len();
            // Past the page's last so far, an entry cannot be on the page.
            let last = (found.len() >= limit).then(|| {
                let (start, node, sequence) = found[limit - 1].key();
                (start, node.to_owned(), sequence)
            });
            for entry in entries.into_iter().filter(|entry| wanted.matches(node, entry)) {
                if let Some((start, last_node, sequence)) = &last
                    && (entry.started_at_us, node, entry.sequence) > (*start, last_node.as_str(), *sequence)
                {
                    continue;
                }
                found.push(Found::of(node, entry, filter.include_bodies)?);
            }
            if found.len() != before {
                found.sort_unstable_by(Found::order);
                // Only the first `limit` can be on the page.
                found.truncate(limit);
            }
        }
        if !ahead {
            ahead = true;
            next = following.map(&mut read_next);
        }
    }
    if found.is_empty() {
        return Ok(SearchPage { entries: Vec::new(), seen: None });
    }
    // With bodies, only the entries whose bodies before them stay within
    // `body_bytes_max` (so one past it, and the second when the first
    // passes it alone: a page holds at least one and says whether more
    // follow) are decoded and sent.
    if filter.include_bodies {
        let mut bytes_before = 0;
        let within = found
            .iter()
            .take_while(|found| {
                let within = bytes_before <= body_bytes_max;
                bytes_before += found.body_bytes;
                within
            })
            .count();
        found.truncate(within.max(2));
    }
    let entries = found.into_iter().map(Found::stored).collect::<Result<_, _>>()?;
    Ok(SearchPage { entries, seen: Some(seen) })
}

/// Batches the first read of a search reads, and the most any read does
/// (of up to `ESOCIAL_GATEWAY_LOG_BATCH_MAX` entries each).
const SEARCH_BATCHES_FIRST: i64 = 4;
const SEARCH_BATCHES_MAX: i64 = 32;
/// Bytes of batches as stored (compressed) a read of a search or of a
/// verification reads beyond its first batch.
pub(crate) const BATCH_READ_BYTES: i64 = 16 << 20;

/// A batch's place in the order a search reads batches: its first start,
/// its node and its first entry.
type BatchKey = (DateTime<Utc>, String, i64);

/// The reads of one search's batches.
struct BatchReads {
    pool: sqlx::PgPool,
    filter: LogFilter,
    after_time: Option<DateTime<Utc>>,
    earliest: Option<DateTime<Utc>>,
    /// The snapshot (`pg_snapshot`'s text) whose batches are shown.
    seen: String,
}

impl BatchReads {
    /// The next `batches` that may hold entries the search wants, after the
    /// one at `after` in start order.
    fn read(&self, after: Option<BatchKey>, batches: i64) -> crate::packed::Prefetch {
        // A service (`/package.Service/`) is found by its batches' services.
        let (method, service) = match &self.filter.method {
            Some(method) if method.ends_with('/') => (None, Some(method.clone())),
            Some(method) => (Some(method.clone()), None),
            None => (None, None),
        };
        // At most `batches`, and no more than `BATCH_READ_BYTES` of them
        // beyond the first.
        let query = sqlx::query(sqlx::AssertSqlSafe(crate::packed::at_most_bytes(
            "SELECT node, first_started_at, first_sequence, entries
             FROM message_log_batches
             WHERE ($1::text IS NULL OR member_ids @> ARRAY[$1::text])
               AND ($2::text IS NULL OR methods @> ARRAY[$2::text])
               AND ($3::text IS NULL OR services @> ARRAY[$3::text])
               AND ($1::text IS NULL OR $2::text IS NULL OR member_methods @> ARRAY[$1::text || ' ' || $2::text])
               AND ($1::text IS NULL OR $3::text IS NULL OR member_methods @> ARRAY[$1::text || ' ' || $3::text])
               AND tstzrange(first_started_at, last_started_at, '[]') && tstzrange($4, $5, '[)')
               AND ($6::text IS NULL OR request_ids @> ARRAY[$6::text COLLATE \"C\"])
               AND ($7::timestamptz IS NULL OR last_started_at >= $7)
               AND ($8::timestamptz IS NULL OR first_started_at >= $8)
               AND (written_by IS NULL OR pg_visible_in_snapshot(written_by, (SELECT $9::text::pg_snapshot)))
               AND ($10::timestamptz IS NULL
                    OR first_started_at >= $10 AND (first_started_at, node, first_sequence) > ($10, $11, $12))
             ORDER BY first_started_at, node, first_sequence
             LIMIT $13",
            "first_started_at, node, first_sequence",
            "$14",
        )))
        .bind(self.filter.member_id.clone())
        .bind(method)
        .bind(service)
        .bind(self.filter.from)
        .bind(self.filter.to)
        .bind(self.filter.request_id.clone())
        .bind(self.after_time)
        .bind(self.earliest)
        .bind(self.seen.clone());
        let (start, node, sequence) = match after {
            Some((start, node, sequence)) => (Some(start), node, sequence),
            None => (None, String::new(), 0),
        };
        // Planned for its values each time (PostgreSQL's unnamed
        // statement): a plan for any values, which PostgreSQL takes for a
        // prepared statement after five runs if it seems no costlier, reads
        // every batch's columns when a filter is not there, or is common.
        let query = query.bind(start).bind(node).bind(sequence).bind(batches).bind(BATCH_READ_BYTES).persistent(false);
        let pool = self.pool.clone();
        crate::packed::Prefetch::spawn(async move { query.fetch_all(&pool).await })
    }
}

/// What a search wants of an entry, beyond what found its batch.
struct Wanted<'a> {
    filter: &'a LogFilter,
    from_us: Option<i64>,
    to_us: Option<i64>,
    /// Only entries after this (start, node, sequence).
    after: Option<(i64, &'a str, i64)>,
}

impl<'a> Wanted<'a> {
    fn of(filter: &'a LogFilter, after: Option<&'a LogCursor>) -> Self {
        Self {
            filter,
            from_us: filter.from.map(|from| from.timestamp_micros()),
            to_us: filter.to.map(|to| to.timestamp_micros()),
            after: after.map(|cursor| (cursor.started_at_us, cursor.node.as_str(), cursor.sequence)),
        }
    }

    fn matches(&self, node: &str, entry: &PackedEntry<'_>) -> bool {
        let filter = self.filter;
        let method = &*entry.method;
        filter.member_id.as_deref().is_none_or(|member_id| member_id == entry.member_id)
            && filter.method.as_deref().is_none_or(|wanted| match wanted.ends_with('/') {
                true => method.starts_with(wanted),
                false => method == wanted,
            })
            && self.from_us.is_none_or(|from| entry.started_at_us >= from)
            && self.to_us.is_none_or(|to| entry.started_at_us < to)
            && filter.request_id.as_deref().is_none_or(|request_id| request_id == entry.request_id)
            && self.after.is_none_or(|after| (entry.started_at_us, node, entry.sequence) > after)
    }
}

/// An entry a search found, its bodies (when asked for) not decoded yet.
struct Found {
    started_at_us: i64,
    stored: StoredEntry,
    /// Base64.
    request_body: Option<String>,
    response_body: Option<String>,
    body_bytes: usize,
}

impl Found {
    fn of(node: &str, mut entry: PackedEntry<'_>, bodies: bool) -> Result<Self, sqlx::Error> {
        let sequence = entry.sequence;
        let body_bytes = if bodies { entry.body_bytes() } else { 0 };
        // The bodies wait (undecoded) for the page, if it asks for them.
        let (request_body, response_body) = (entry.request_body.take(), entry.response_body.take());
        let (request_body, response_body) =
            if bodies { (request_body.map(Cow::into_owned), response_body.map(Cow::into_owned)) } else { (None, None) };
        let unpacked = entry.unpacked().ok_or_else(|| unreadable("digests", node, sequence))?;
        let stored = StoredEntry {
            node: node.to_owned(),
            sequence,
            hash: unpacked.hash,
            entry: LogEntry {
                request_id: entry.request_id.into_owned(),
                member_id: entry.member_id.into_owned(),
                caller: entry.caller.into_owned(),
                method: entry.method.into_owned(),
                direction: if entry.direction == "outbound" { Direction::Outbound } else { Direction::Inbound },
                started_at: DateTime::<Utc>::from_timestamp_micros(entry.started_at_us)
                    .ok_or_else(|| unreadable("start", node, sequence))?,
                duration_us: u64::try_from(entry.duration_us).unwrap_or(0),
                status_code: entry.status_code,
                request_bytes: u64::try_from(entry.request_bytes).unwrap_or(0),
                response_bytes: u64::try_from(entry.response_bytes).unwrap_or(0),
                request_sha256: unpacked.request_sha256,
                response_sha256: unpacked.response_sha256,
                request_body: None,
                response_body: None,
            },
        };
        Ok(Self { started_at_us: entry.started_at_us, stored, request_body, response_body, body_bytes })
    }

    /// Its place in a search's order: by start, then node, then sequence.
    fn key(&self) -> (i64, &str, i64) {
        (self.started_at_us, &self.stored.node, self.stored.sequence)
    }

    fn order(one: &Self, other: &Self) -> std::cmp::Ordering {
        one.key().cmp(&other.key())
    }

    /// The entry, with its bodies decoded.
    fn stored(self) -> Result<StoredEntry, sqlx::Error> {
        let mut stored = self.stored;
        let decoded = |text: Option<String>, what: &str| {
            crate::packed::decoded_body(text.as_deref()).ok_or_else(|| unreadable(what, &stored.node, stored.sequence))
        };
        let request_body = decoded(self.request_body, "request body")?;
        let response_body = decoded(self.response_body, "response body")?;
        stored.entry.request_body = request_body;
        stored.entry.response_body = response_body;
        Ok(stored)
    }
}

/// A field of a stored entry that is not in the writer's form.
fn unreadable(what: &str, node: &str, sequence: i64) -> sqlx::Error {
    sqlx::Error::Decode(format!("the {what} of entry {sequence} of node {node} cannot be read").into())
}

/// An answer of a search of the log, as recorded before it is sent.
#[derive(Debug, Clone)]
pub struct SearchRecord {
    pub search_id: uuid::Uuid,
    pub searched_at: DateTime<Utc>,
    pub searched_by: crate::changes::Author,
    pub filter: LogFilter,
    /// The page token the search was asked with.
    pub page_token: String,
    /// The node and sequence of each entry the answer carried.
    pub entries: Vec<(String, i64)>,
}

pub async fn record_search(pool: &sqlx::PgPool, record: &SearchRecord) -> Result<(), sqlx::Error> {
    let (nodes, sequences): (Vec<&str>, Vec<i64>) =
        record.entries.iter().map(|(node, sequence)| (node.as_str(), *sequence)).unzip();
    let filter = &record.filter;
    let mut transaction = pool.begin().await?;
    crate::store::in_commit_order(&mut transaction, "log_searches").await?;
    sqlx::query(
        "INSERT INTO log_searches (search_id, searched_at, searched_by, searched_by_edrpou, member_id, method,
                                   time_from, time_to, request_id, include_bodies, page_token, entry_nodes,
                                   entry_sequences)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(record.search_id)
    .bind(record.searched_at)
    .bind(&record.searched_by.subject)
    .bind(&record.searched_by.organization_edrpou)
    .bind(filter.member_id.as_deref().unwrap_or_default())
    .bind(filter.method.as_deref().unwrap_or_default())
    .bind(filter.from)
    .bind(filter.to)
    .bind(filter.request_id.as_deref().unwrap_or_default())
    .bind(filter.include_bodies)
    .bind(&record.page_token)
    .bind(&nodes)
    .bind(&sequences)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await
}

/// The searches recorded of `searched_by` (or everyone's), in the order
/// they were recorded, each with its place in it.
pub async fn searches(
    pool: &sqlx::PgPool,
    searched_by: Option<&str>,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<(i64, SearchRecord)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT position, search_id, searched_at, searched_by, searched_by_edrpou, member_id, method, time_from,
                time_to, request_id, include_bodies, page_token, entry_nodes, entry_sequences
         FROM log_searches
         WHERE ($1::text IS NULL OR searched_by = $1) AND ($2::bigint IS NULL OR position > $2)
         ORDER BY position LIMIT $3",
    )
    .bind(searched_by)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let present = |text: String| Some(text).filter(|text| !text.is_empty());
    rows.iter()
        .map(|row| {
            let nodes: Vec<String> = row.try_get("entry_nodes")?;
            let sequences: Vec<i64> = row.try_get("entry_sequences")?;
            let record = SearchRecord {
                search_id: row.try_get("search_id")?,
                searched_at: row.try_get("searched_at")?,
                searched_by: crate::changes::Author {
                    subject: row.try_get("searched_by")?,
                    organization_edrpou: row.try_get("searched_by_edrpou")?,
                },
                filter: LogFilter {
                    member_id: present(row.try_get("member_id")?),
                    method: present(row.try_get("method")?),
                    from: row.try_get("time_from")?,
                    to: row.try_get("time_to")?,
                    request_id: present(row.try_get("request_id")?),
                    include_bodies: row.try_get("include_bodies")?,
                },
                page_token: row.try_get("page_token")?,
                entries: nodes.into_iter().zip(sequences).collect(),
            };
            Ok((row.try_get("position")?, record))
        })
        .collect()
}

/// A batch as `message_log_batches` keeps it (with its request ids, which
/// are the batch's column as they are).
struct StoredBatch<'a> {
    first_sequence: i64,
    last_sequence: i64,
    first_started_at: DateTime<Utc>,
    last_started_at: DateTime<Utc>,
    member_ids: Vec<&'a str>,
    methods: Vec<&'a str>,
    services: Vec<&'a str>,
    /// Each (member, method) and (member, service) pair once, as
    /// `<member id> <method or service>`.
    member_methods: Vec<String>,
    /// The JSON array of its entries (migration 0109's `message_log_entry`).
    entries: String,
}

/// A method path's service, `/package.Service/` (its first two segments),
/// as a search names it.
pub(crate) fn service_of(method: &str) -> Option<&str> {
    let end = method.strip_prefix('/')?.find('/')?;
    Some(&method[..end + 2])
}

/// `text` without NUL characters (each becomes U+FFFD), which PostgreSQL's
/// `text` cannot hold, so that an entry is stored as it is hashed.
fn without_nul(text: String) -> String {
    if text.contains('\0') { text.replace('\0', "\u{fffd}") } else { text }
}

/// Which member called which method and service in a batch's entries:
/// each pair once, as `<member id> <method>` and `<member id> <service>`
/// (migration 0112), sorted.
fn member_methods(member_ids: &[String], methods: &[String]) -> Vec<String> {
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(member_ids.len() * 2);
    for (member_id, method) in member_ids.iter().zip(methods) {
        pairs.push((member_id, method));
        if let Some(service) = service_of(method) {
            pairs.push((member_id, service));
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    pairs.into_iter().map(|(member_id, method)| format!("{member_id} {method}")).collect()
}

/// `values`, each once.
fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut values: Vec<&str> = values.collect();
    values.sort_unstable();
    values.dedup();
    values
}

/// `text` as a JSON string.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            control if u32::from(control) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(control));
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

fn push_body(out: &mut String, body: Option<&Vec<u8>>) {
    match body {
        Some(body) => {
            out.push('"');
            base64::engine::general_purpose::STANDARD.encode_string(body, out);
            out.push('"');
        }
        None => out.push_str("null"),
    }
}

/// A batch gathered entry by entry, chained, then stored as one row
/// ([`BatchColumns::stored`]).
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
    /// The bytes of the bodies kept, together.
    body_bytes: usize,
    /// Their place in the budget, given back when the batch is dropped
    /// (written, or given up at shutdown).
    kept: Reservation,
}

impl BatchColumns {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            sequence: Vec::with_capacity(capacity),
            request_id: Vec::with_capacity(capacity),
            member_id: Vec::with_capacity(capacity),
            caller: Vec::with_capacity(capacity),
            method: Vec::with_capacity(capacity),
            hash: Vec::with_capacity(capacity),
            ..Self::default()
        }
    }

    fn len(&self) -> usize {
        self.sequence.len()
    }

    /// Whether the batch takes no more entries: it holds `entries_max`, or
    /// bodies of [`BATCH_BODY_BYTES_MAX`] together.
    fn is_full(&self, entries_max: usize) -> bool {
        self.len() >= entries_max || self.body_bytes >= BATCH_BODY_BYTES_MAX
    }

    /// Takes an entry (its sequence number and hash come with the chain).
    fn push(&mut self, queued: Queued) {
        let Queued { entry, kept } = queued;
        self.kept.absorb(kept);
        self.body_bytes +=
            entry.request_body.as_ref().map_or(0, Vec::len) + entry.response_body.as_ref().map_or(0, Vec::len);
        self.sequence.push(0);
        self.request_id.push(without_nul(entry.request_id));
        self.member_id.push(without_nul(entry.member_id));
        self.caller.push(without_nul(entry.caller));
        self.method.push(without_nul(entry.method));
        self.direction.push(entry.direction.as_str());
        self.started_at.push(entry.started_at);
        self.duration_us.push(as_i64(entry.duration_us));
        self.status_code.push(entry.status_code);
        self.request_bytes.push(as_i64(entry.request_bytes));
        self.response_bytes.push(as_i64(entry.response_bytes));
        self.request_sha256.push(entry.request_sha256);
        self.response_sha256.push(entry.response_sha256);
        self.request_body.push(entry.request_body);
        self.response_body.push(entry.response_body);
        self.hash.push(Vec::new());
    }

    /// The batch as stored; its entries are chained.
    fn stored(&self) -> StoredBatch<'_> {
        let mut entries = String::with_capacity(self.len() * 560 + self.body_bytes / 3 * 4 + 16);
        entries.push('[');
        for index in 0..self.len() {
            if index > 0 {
                entries.push(',');
            }
            let _ = write!(entries, "{{\"sequence\":{},\"request_id\":", self.sequence[index]);
            push_json_string(&mut entries, &self.request_id[index]);
            entries.push_str(",\"member_id\":");
            push_json_string(&mut entries, &self.member_id[index]);
            entries.push_str(",\"caller\":");
            push_json_string(&mut entries, &self.caller[index]);
            entries.push_str(",\"method\":");
            push_json_string(&mut entries, &self.method[index]);
            let _ = write!(
                entries,
                ",\"direction\":\"{}\",\"started_at_us\":{},\"duration_us\":{},\"status_code\":{},\"request_bytes\":{},\"response_bytes\":{},\"request_sha256\":\"",
                self.direction[index],
                self.started_at[index].timestamp_micros(),
                self.duration_us[index],
                self.status_code[index],
                self.request_bytes[index],
                self.response_bytes[index],
            );
            push_hex(&mut entries, &self.request_sha256[index]);
            entries.push_str("\",\"response_sha256\":\"");
            push_hex(&mut entries, &self.response_sha256[index]);
            entries.push_str("\",\"request_body\":");
            push_body(&mut entries, self.request_body[index].as_ref());
            entries.push_str(",\"response_body\":");
            push_body(&mut entries, self.response_body[index].as_ref());
            entries.push_str(",\"hash\":\"");
            push_hex(&mut entries, &self.hash[index]);
            entries.push_str("\"}");
        }
        entries.push(']');
        let first_started_at = self.started_at.iter().min().copied().unwrap_or_default();
        let last_started_at = self.started_at.iter().max().copied().unwrap_or_default();
        StoredBatch {
            first_sequence: self.sequence.first().copied().unwrap_or_default(),
            last_sequence: self.sequence.last().copied().unwrap_or_default(),
            first_started_at,
            last_started_at,
            member_ids: distinct(self.member_id.iter().map(String::as_str)),
            methods: distinct(self.method.iter().map(String::as_str)),
            services: distinct(self.method.iter().filter_map(|method| service_of(method))),
            member_methods: member_methods(&self.member_id, &self.method),
            entries,
        }
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
            request_body_stored: false,
            response_body_stored: false,
        }
    }

    fn entry(request_body: Option<Vec<u8>>) -> Queued {
        Queued { entry: log_entry(request_body), kept: Reservation::default() }
    }

    fn log_entry(request_body: Option<Vec<u8>>) -> LogEntry {
        LogEntry {
            request_id: "r-1".to_owned(),
            member_id: "UA/GOV/32855961/diia".to_owned(),
            caller: "client:diia".to_owned(),
            method: "/esocial.registry.v1.IdpService/VerifyIdpCertificate".to_owned(),
            direction: Direction::Inbound,
            started_at: Utc::now(),
            duration_us: 1,
            status_code: 0,
            request_bytes: 0,
            response_bytes: 0,
            request_sha256: vec![1; 32],
            response_sha256: vec![2; 32],
            request_body,
            response_body: None,
        }
    }

    #[test]
    fn a_stored_batch_holds_its_entries_as_json_and_names_what_searches_go_by() {
        let mut columns = BatchColumns::with_capacity(3);
        for (index, (member, method)) in [
            ("UA/GOV/2", "/esocial.registry.v1.IdpService/VerifyIdpCertificate"),
            ("UA/GOV/1", "/esocial.registry.v1.RegistryService/GetPerson"),
            ("UA/GOV/2", "outbound-without-service"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut entry = log_entry(Some(b"\x00\xffbody".to_vec()));
            entry.request_id = format!("id \"{index}\" \\ \n\u{1}ї");
            entry.member_id = member.to_owned();
            entry.method = method.to_owned();
            entry.started_at =
                DateTime::from_timestamp_micros(1_765_000_000_123_456 - i64::try_from(index).unwrap_or(0))
                    .expect("a time");
            columns.push(Queued { entry, kept: Reservation::default() });
        }
        for index in 0..3 {
            columns.sequence[index] = 41 + i64::try_from(index).unwrap_or(0);
            columns.hash[index] = vec![u8::try_from(index).unwrap_or(0); 32];
        }
        let stored = columns.stored();
        let entries: Vec<serde_json::Value> = serde_json::from_str(&stored.entries).expect("a JSON array");
        assert_eq!(entries.len(), 3);
        for (index, entry) in entries.iter().enumerate() {
            assert_eq!(entry["sequence"], 41 + index);
            assert_eq!(entry["request_id"], columns.request_id[index]);
            assert_eq!(entry["method"], columns.method[index]);
            assert_eq!(entry["started_at_us"], columns.started_at[index].timestamp_micros());
            assert_eq!(entry["request_sha256"], hex(&columns.request_sha256[index]));
            assert_eq!(entry["request_body"], "AP9ib2R5");
            assert_eq!(entry["response_body"], serde_json::Value::Null);
            assert_eq!(entry["hash"], hex(&[u8::try_from(index).unwrap_or(0); 32]));
        }
        assert_eq!((stored.first_sequence, stored.last_sequence), (41, 43));
        assert_eq!((stored.first_started_at, stored.last_started_at), (columns.started_at[2], columns.started_at[0]));
        assert_eq!(stored.member_ids, ["UA/GOV/1", "UA/GOV/2"]);
        assert_eq!(stored.methods.len(), 3);
        assert_eq!(stored.services, ["/esocial.registry.v1.IdpService/", "/esocial.registry.v1.RegistryService/"]);
        assert_eq!(
            stored.member_methods,
            [
                "UA/GOV/1 /esocial.registry.v1.RegistryService/",
                "UA/GOV/1 /esocial.registry.v1.RegistryService/GetPerson",
                "UA/GOV/2 /esocial.registry.v1.IdpService/",
                "UA/GOV/2 /esocial.registry.v1.IdpService/VerifyIdpCertificate",
                "UA/GOV/2 outbound-without-service",
            ]
        );
    }

    #[test]
    fn a_method_s_service_is_its_first_two_segments_and_no_nul_is_stored() {
        assert_eq!(service_of("/pkg.Service/Method"), Some("/pkg.Service/"));
        assert_eq!(service_of("/pkg.Service/A/B"), Some("/pkg.Service/"));
        assert_eq!(service_of("odd"), None);
        assert_eq!(service_of("/no-method"), None);
        let mut columns = BatchColumns::with_capacity(1);
        let mut entry = log_entry(None);
        entry.caller = "sub\0with nul".to_owned();
        columns.push(Queued { entry, kept: Reservation::default() });
        assert_eq!(columns.caller[0], "sub\u{fffd}with nul");
        assert!(!columns.stored().entries.contains("\\u0000"));
    }

    #[test]
    fn a_batch_is_full_at_its_entries_or_at_the_bytes_of_the_bodies_it_keeps() {
        let mut small = BatchColumns::with_capacity(3);
        for _ in 0..2 {
            small.push(entry(None));
        }
        assert!(!small.is_full(3));
        small.push(entry(Some(vec![7; 10])));
        assert!(small.is_full(3), "three entries");

        // Bodies of a full-mode member, 1 MiB each: 64 of them fill a batch
        // that could take 10,000 entries.
        let mut large = BatchColumns::with_capacity(10_000);
        for _ in 0..63 {
            large.push(entry(Some(vec![7; 1 << 20])));
        }
        assert!(!large.is_full(10_000));
        large.push(entry(Some(vec![7; 1 << 20])));
        assert!(large.is_full(10_000), "{} body bytes", large.body_bytes);
    }

    #[test]
    fn kept_bodies_hold_their_place_in_the_budget_until_their_batch_is_dropped() {
        let budget = BodyBudget::new(100);
        let mut request = budget.reservation();
        assert!(request.grow(60));
        let mut response = budget.reservation();
        assert!(!response.grow(41), "over the maximum");
        assert!(response.grow(40));
        assert_eq!(budget.used(), 100);
        assert!(!response.grow(1));

        // One entry's two bodies go to a batch together; the batch gives
        // their place back when it is dropped.
        request.absorb(response);
        assert_eq!(budget.used(), 100, "absorbing moves, it does not give back");
        let mut batch = BatchColumns::with_capacity(2);
        batch.push(Queued { entry: log_entry(Some(vec![1; 60])), kept: request });
        assert_eq!(budget.used(), 100);
        drop(batch);
        assert_eq!(budget.used(), 0);

        let mut given_up = budget.reservation();
        assert!(given_up.grow(30));
        given_up.release();
        assert_eq!(budget.used(), 0);
        assert!(given_up.grow(30));
        drop(given_up);
        assert_eq!(budget.used(), 0);
    }

    fn key(byte: u8) -> MacKey {
        MacKey::derive(&ed25519_dalek::SigningKey::from_bytes(&[byte; 32]), CHAIN_KEY_PURPOSE)
    }

    #[test]
    fn every_field_the_previous_hash_and_the_key_change_the_entry_hash() {
        let key = key(1);
        let base = entry_hash(&key, &GENESIS, &fields(1));
        assert_ne!(base, entry_hash(&key, &[9; 32], &fields(1)), "previous hash");
        assert_ne!(base, entry_hash(&self::key(2), &GENESIS, &fields(1)), "key");
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
            HashedFields { request_body_stored: true, ..fields(1) },
            HashedFields { response_body_stored: true, ..fields(1) },
        ];
        for variant in &variants {
            assert_ne!(entry_hash(&key, &GENESIS, variant), base, "{variant:?}");
        }
        // Length prefixes: moving a character from one text to the next differs.
        let shifted = HashedFields { request_id: "r-1U", member_id: "A/GOV/32855961/diia", ..fields(1) };
        assert_ne!(entry_hash(&key, &GENESIS, &shifted), base);
        assert_eq!(entry_hash(&key, &GENESIS, &fields(1)), base, "deterministic");
        // The earlier form differs from the current one for the same entry.
        assert_ne!(entry_hash_v1(&key, &GENESIS, &fields(1)), base, "v1");
    }

    #[test]
    fn the_keyed_hash_is_hmac_sha256() {
        // RFC 4231 test case 1: a 20-byte key of 0x0b (zero-padded, as HMAC
        // pads it anyway), data "Hi There".
        let mut bytes = [0u8; 32];
        bytes[..20].fill(0x0b);
        let digest = keyed(&MacKey(bytes), |hasher| hasher.update(b"Hi There"));
        assert_eq!(hex(&digest), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    }

    #[test]
    fn hex_digits_read_back_in_either_case() {
        assert_eq!(from_hex("00ffA1"), Some(vec![0, 255, 161]));
        assert_eq!(from_hex(&hex(&[7, 200, 13])), Some(vec![7, 200, 13]));
        assert_eq!(from_hex("abc"), None, "odd length");
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex("+1"), None, "a sign is not a digit");
        assert_eq!(from_hex("0g"), None);
        let every: Vec<u8> = (0..=255).collect();
        assert_eq!(from_hex(&hex(&every)), Some(every.clone()));
        assert_eq!(from_hex(&hex(&every).to_uppercase()), Some(every));
    }

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[0, 1, 0xab, 0xff]), "0001abff");
    }

    #[test]
    fn a_search_cursor_reads_back_as_written_and_a_snapshot_postgresql_would_refuse_is_refused() {
        for text in ["1700000000000000:7:100:105:101,103:gateway-1", "5:1:100:100::node:with:colons"] {
            let cursor: LogCursor = text.parse().expect(text);
            assert_eq!(cursor.to_string(), text);
        }
        let cursor: LogCursor = "5:1:100:105:101,103:gateway-1".parse().expect("cursor");
        assert_eq!((cursor.seen.xmin, cursor.seen.xmax, cursor.seen.running.as_slice()), (100, 105, &[101, 103][..]));
        for snapshot in ["0:5:", "6:5:", "1:5:3,2", "1:5:3,3", "1:5:5", "2:5:1", "1:5:x", "1:5", "1:5:,"] {
            assert!(snapshot.parse::<LogSnapshot>().is_err(), "{snapshot}");
        }
        // A busy cluster's snapshot is taken as PostgreSQL gives it; a page
        // token names at most as many running as a cluster can have.
        let many = |count: u64| (1..=count).map(|xid| xid.to_string()).collect::<Vec<_>>().join(",");
        let limit = u64::try_from(SNAPSHOT_RUNNING_MAX).expect("limit");
        assert!(format!("1:{}:{}", limit + 2, many(limit + 1)).parse::<LogSnapshot>().is_ok());
        assert!(format!("0:1:1:{}:{}:node", limit + 2, many(limit + 1)).parse::<LogCursor>().is_err(), "too many");
        assert!(format!("0:1:1:{}:{}:node", limit + 1, many(limit)).parse::<LogCursor>().is_ok());
        // The form before snapshots: time, sequence, node.
        assert!("1700000000000000:7:gateway-1".parse::<LogCursor>().is_err());
    }
}
