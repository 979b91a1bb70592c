//! Verifying the message log: every chain is recomputed from its first
//! entry, stored bodies are checked against their digests, and every signed
//! checkpoint must verify with a trusted key and match the recomputed chain.
//! The first entry that does not verify is reported with the reason.
//!
//! The database alone cannot tell that the newest entries were removed
//! together with the checkpoints that signed them. Every checkpoint is also
//! an event (`gateway.log.checkpointed`) in the JetStream stream, a copy
//! outside the database: with that [`Witness`], a chain must reach the last
//! checkpoint the stream holds and match every one it holds, so a chain cut
//! back and then continued (by a gateway started again on what was left,
//! which signs the new entries with its own key) is found where it was cut.
//!
//! When several things are wrong, the one at the lowest entry is reported.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use chrono::{DateTime, Utc};
use ed25519_dalek::Verifier as _;
use esocial_kit::config::EventSettings;
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use sqlx::{PgPool, Row as _};

use crate::message_log::{
    BATCH_READ_BYTES, Digest, GENESIS, HashedFields, MacKey, checkpoint_message, entry_hash, entry_hash_v1, service_of,
};
use crate::packed::{PackedEntry, Prefetch, at_most_bytes, more_follow};

/// Batches a page of the verification reads (of up to
/// `ESOCIAL_GATEWAY_LOG_BATCH_MAX` entries each).
const BATCHES_A_PAGE: i64 = 16;

/// A key checkpoints may be signed with.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub key_id: String,
    pub key: ed25519_dalek::VerifyingKey,
}

/// What verification needs: the keys checkpoints may be signed with, and
/// the secrets chains may be keyed with. A gateway signs with one key and
/// a new key starts a new chain under a new node name, so after a key is
/// replaced the older nodes' chains verify only with the keys they were
/// written with.
#[derive(Debug, Clone)]
pub struct LogKeys {
    pub checkpoint_keys: Vec<TrustedKey>,
    /// The current key's first.
    pub chain_keys: Vec<MacKey>,
}

impl LogKeys {
    /// The keys of a gateway signing key (add those it replaced with
    /// [`LogKeys::trusting`]).
    pub fn of(key: &crate::message_log::CheckpointKey) -> Self {
        Self { checkpoint_keys: Vec::new(), chain_keys: Vec::new() }.trusting(key)
    }

    /// These keys and those of `earlier` (a key the current one replaced),
    /// after them.
    #[must_use]
    pub fn trusting(mut self, earlier: &crate::message_log::CheckpointKey) -> Self {
        self.checkpoint_keys.push(TrustedKey { key_id: earlier.key_id.clone(), key: earlier.verifying_key() });
        self.chain_keys.push(earlier.chain_key());
        self
    }
}

/// What the verification of one node's chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub node: String,
    pub entries: i64,
    pub checkpoints: i64,
    /// The first entry that does not verify, and why.
    pub broken: Option<(i64, String)>,
    /// The last entry a valid checkpoint covers (0: none).
    pub signed_through: i64,
    /// The last entry a checkpoint in the event stream covers (0: none, or
    /// verified without the stream).
    pub witnessed_through: i64,
}

impl ChainReport {
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }
}

/// A signed head of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    hash: Vec<u8>,
    signed_at: DateTime<Utc>,
    key_id: String,
    signature: Vec<u8>,
}

/// The checkpoints the event stream holds, by node and entry. A gateway
/// signs an entry once; two different signed copies of one entry (kept
/// both) mean its chain was rewritten.
pub type Witness = BTreeMap<String, NodeWitness>;

/// The event stream's checkpoints of one node, by entry.
pub type NodeWitness = BTreeMap<i64, Vec<Checkpoint>>;

/// The newest entry of `node` a checkpoint in the event stream covers.
pub fn newest_witnessed(witness: &Witness, node: &str) -> Option<i64> {
    witness.get(node).and_then(newest)
}

fn newest(checkpoints: &NodeWitness) -> Option<i64> {
    checkpoints.keys().next_back().copied()
}

/// How long reading the witness may wait for the stream (to start, or for
/// the next event) before it is given up.
const WITNESS_WAIT_MAX: Duration = Duration::from_secs(10);

/// Where the copies of the checkpoints are: the `gateway.log.checkpointed`
/// events of the deployment's stream.
#[derive(Debug, Clone)]
pub struct CheckpointCopies {
    jetstream: jetstream::Context,
    events: EventSettings,
}

impl CheckpointCopies {
    pub fn new(nats: async_nats::Client, events: EventSettings) -> Self {
        Self { jetstream: jetstream::new(nats), events }
    }

    /// The NATS subject the copies are published on.
    pub fn subject(&self) -> String {
        format!("{}.{}", self.events.subject_prefix, crate::events::LOG_CHECKPOINTED.relative_subject())
    }

    /// Reads every copy and keeps each checkpoint whose signature verifies
    /// with one of `keys`. Any other event is skipped with a warning:
    /// whoever can publish to the stream but lacks the key can neither
    /// raise a false alarm nor displace a real checkpoint.
    pub async fn read(&self, keys: &LogKeys) -> anyhow::Result<Witness> {
        read_witness(&self.jetstream, &self.events.stream_name, self.subject(), keys).await
    }
}

async fn read_witness(
    jetstream: &jetstream::Context,
    stream_name: &str,
    subject: String,
    keys: &LogKeys,
) -> anyhow::Result<Witness> {
    let waited = || anyhow::anyhow!("the event stream did not answer within {WITNESS_WAIT_MAX:?}");
    let stream = tokio::time::timeout(WITNESS_WAIT_MAX, async {
        let stream = jetstream.get_stream(stream_name).await?;
        let mut reader = stream
            .create_consumer(consumer::pull::Config {
                description: Some("esocial gateway verify-log: checkpoints witnessed".to_owned()),
                filter_subject: subject,
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await?;
        let info = reader.info().await?;
        let (left, name) = (info.num_pending, info.name.clone());
        let messages = reader.messages().await?;
        Ok::<_, anyhow::Error>((stream, name, left, messages))
    })
    .await
    .map_err(|_| waited())?;
    let (stream, name, mut left, mut messages) = stream?;
    let mut witness = Witness::new();
    let read = async {
        while left > 0 {
            let Some(message) = tokio::time::timeout(WITNESS_WAIT_MAX, messages.next()).await.map_err(|_| waited())?
            else {
                break;
            };
            let message = message?;
            left = message.info().map_or(left - 1, |info| info.pending);
            let Some((node, sequence, checkpoint)) = witnessed_checkpoint(&message.payload) else {
                tracing::warn!(subject = %message.subject, "a checkpoint event that cannot be read; skipped");
                continue;
            };
            if let Some(problem) = checkpoint_signature_problem(&keys.checkpoint_keys, &node, sequence, &checkpoint) {
                tracing::warn!(%node, sequence, %problem, "a checkpoint event that does not verify; skipped");
                continue;
            }
            let copies = witness.entry(node).or_default().entry(sequence).or_default();
            if !copies.contains(&checkpoint) {
                copies.push(checkpoint);
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    let read = read.await;
    drop(messages);
    // The server would remove it after `inactive_threshold` anyway.
    match tokio::time::timeout(WITNESS_WAIT_MAX, stream.delete_consumer(&name)).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::debug!(%error, consumer = %name, "the checkpoint reader was left to expire"),
        Err(_) => tracing::debug!(consumer = %name, "the checkpoint reader was left to expire"),
    }
    read.map(|()| witness)
}

fn witnessed_checkpoint(payload: &[u8]) -> Option<(String, i64, Checkpoint)> {
    let event = <esocial_proto::gateway::v1::LogCheckpointed as prost::Message>::decode(payload).ok()?;
    let signed_at = event.signed_at?;
    let signed_at = DateTime::from_timestamp(signed_at.seconds, u32::try_from(signed_at.nanos).ok()?)?;
    let checkpoint = Checkpoint {
        hash: crate::message_log::from_hex(&event.hash)?,
        signed_at,
        key_id: event.key_id,
        signature: crate::message_log::from_hex(&event.signature)?,
    };
    Some((event.node, event.sequence, checkpoint))
}

/// Verifies the chain of `node`, or of every node when `None`; with a
/// witness, each chain must also reach the last checkpoint the event stream
/// holds for its node (a node the database no longer knows at all included).
pub async fn verify(
    pool: &PgPool,
    keys: &LogKeys,
    node: Option<&str>,
    witness: Option<&Witness>,
) -> Result<Vec<ChainReport>, sqlx::Error> {
    let mut nodes: Vec<String> = match node {
        Some(node) => vec![node.to_owned()],
        None => sqlx::query_scalar(
            "SELECT node FROM (SELECT DISTINCT node FROM message_log_batches UNION SELECT DISTINCT node FROM log_checkpoints) n
                 ORDER BY node",
        )
        .fetch_all(pool)
        .await?,
    };
    if node.is_none()
        && let Some(witness) = witness
    {
        nodes.extend(witness.keys().cloned());
        nodes.sort();
        nodes.dedup();
    }
    let mut reports = Vec::with_capacity(nodes.len());
    for node in nodes {
        let witnessed = witness.and_then(|witness| witness.get(&node));
        reports.push(verify_node(pool, keys, &node, witnessed).await?);
    }
    Ok(reports)
}

/// A page of a node's batches being read: the batches after the one that
/// begins at entry `after`, in order.
fn page(pool: &PgPool, node: &str, after: i64) -> Prefetch {
    let (pool, node) = (pool.clone(), node.to_owned());
    Prefetch::spawn(async move {
        sqlx::query(sqlx::AssertSqlSafe(at_most_bytes(
            "SELECT first_sequence, last_sequence, first_started_at, last_started_at, member_ids, methods, services,
                    member_methods, request_ids, entries
             FROM message_log_batches
             WHERE node = $1 AND first_sequence > $2
             ORDER BY first_sequence LIMIT $3",
            "first_sequence",
            "$4",
        )))
        .bind(node)
        .bind(after)
        .bind(BATCHES_A_PAGE)
        .bind(BATCH_READ_BYTES)
        .fetch_all(&pool)
        .await
    })
}

/// A signed chain head an entry's hash must match: a checkpoint stored in
/// the database, or the event stream's copy of one the database lacks.
#[derive(Debug)]
struct SignedHead {
    hash: Vec<u8>,
    /// Only the event stream holds it.
    witnessed_only: bool,
}

/// Records `problem` at `sequence` unless one is recorded there already.
fn note(problems: &mut BTreeMap<i64, String>, sequence: i64, problem: String) {
    problems.entry(sequence).or_insert(problem);
}

async fn verify_node(
    pool: &PgPool,
    keys: &LogKeys,
    node: &str,
    witnessed: Option<&NodeWitness>,
) -> Result<ChainReport, sqlx::Error> {
    let mut stored: BTreeMap<i64, Checkpoint> = BTreeMap::new();
    for row in sqlx::query("SELECT sequence, hash, signed_at, key_id, signature FROM log_checkpoints WHERE node = $1")
        .bind(node)
        .fetch_all(pool)
        .await?
    {
        stored.insert(
            row.try_get("sequence")?,
            Checkpoint {
                hash: row.try_get("hash")?,
                signed_at: row.try_get("signed_at")?,
                key_id: row.try_get("key_id")?,
                signature: row.try_get("signature")?,
            },
        );
    }
    let mut report = ChainReport {
        node: node.to_owned(),
        entries: 0,
        checkpoints: i64::try_from(stored.len()).unwrap_or(i64::MAX),
        broken: None,
        signed_through: 0,
        witnessed_through: witnessed.and_then(newest).unwrap_or(0),
    };
    // What the chain must match, and what is wrong apart from the entries
    // themselves, by entry: reported only if no entry before it is broken.
    let mut signed: BTreeMap<i64, Vec<SignedHead>> = BTreeMap::new();
    let mut problems: BTreeMap<i64, String> = BTreeMap::new();
    // The stream's copies (their signatures were checked as they were
    // read): the database must hold the same, or (removed with its
    // entries) each is checked as if it were there.
    for (sequence, copies) in witnessed.into_iter().flatten() {
        for copy in copies {
            if let Some(checkpoint) = stored.get(sequence) {
                if checkpoint == copy {
                    continue;
                }
                note(
                    &mut problems,
                    *sequence,
                    format!("the checkpoint stored at entry {sequence} is not the one the event stream holds"),
                );
            }
            signed.entry(*sequence).or_default().push(SignedHead { hash: copy.hash.clone(), witnessed_only: true });
        }
    }

    // A forged checkpoint proves nothing.
    for (sequence, checkpoint) in &stored {
        match checkpoint_signature_problem(&keys.checkpoint_keys, node, *sequence, checkpoint) {
            Some(problem) => note(&mut problems, *sequence, problem),
            None => signed
                .entry(*sequence)
                .or_default()
                .push(SignedHead { hash: checkpoint.hash.clone(), witnessed_only: false }),
        }
    }
    let mut previous: Digest = GENESIS;
    let mut expected: i64 = 1;
    // The key the chain is keyed with: the one its first entry verifies
    // with. Nobody without a trusted key can make an entry that verifies
    // with one, so the first entry decides, and every later one must
    // verify with the same key.
    let mut chain_key: Option<&MacKey> = None;
    // A page reads whole batches, in the order of their first entry, each
    // once, and unpacks their entries here: each batch must begin where the
    // one before it ended, hold its entries in order, end where it says it
    // does, and name each of them in the columns searches go by.
    // The batch being read: its first entry and the last it says it holds.
    let mut batch: Option<(i64, i64)> = None;
    // The next page is read (by a task of its own, so on the other core
    // where there is one) while this one is checked.
    let mut next = Some(page(pool, node, 0));
    while let Some(reading) = next.take() {
        let batches = reading.rows().await?;
        if more_follow(&batches, BATCHES_A_PAGE)?
            && let Some(last) = batches.last()
        {
            next = Some(page(pool, node, last.try_get("first_sequence")?));
        }
        for row in batches {
            let batch_first: i64 = row.try_get("first_sequence")?;
            let batch_last: i64 = row.try_get("last_sequence")?;
            if let Some(problem) = batch.and_then(|ended| batch_end_problem(ended, expected)) {
                note(&mut problems, expected - 1, problem);
                return Ok(first_problem(report, problems));
            }
            batch = Some((batch_first, batch_last));
            if batch_first > expected {
                note(&mut problems, expected, missing(expected, batch_first));
                return Ok(first_problem(report, problems));
            }
            if batch_first < expected {
                let problem = format!(
                    "a batch that says it holds entries {batch_first} to {batch_last} overlaps the others (added)"
                );
                note(&mut problems, batch_first, problem);
                return Ok(first_problem(report, problems));
            }
            let named = BatchNames {
                sequences: batch_first..=batch_last,
                started: row.try_get::<DateTime<Utc>, _>("first_started_at")?.timestamp_micros()
                    ..=row.try_get::<DateTime<Utc>, _>("last_started_at")?.timestamp_micros(),
                member_ids: row.try_get("member_ids")?,
                methods: row.try_get("methods")?,
                services: row.try_get("services")?,
                calls: calls_named(row.try_get("member_methods")?),
                request_ids: row.try_get("request_ids")?,
            };
            let entries: Vec<PackedEntry> = match serde_json::from_str(row.try_get::<&str, _>("entries")?) {
                Ok(entries) => entries,
                Err(error) => {
                    let problem =
                        format!("the batch of entries {batch_first} to {batch_last} cannot be read: {error} (altered)");
                    note(&mut problems, expected, problem);
                    return Ok(first_problem(report, problems));
                }
            };
            if entries.is_empty() {
                let problem =
                    format!("the batch that says it holds entries {batch_first} to {batch_last} holds none (altered)");
                note(&mut problems, expected, problem);
                return Ok(first_problem(report, problems));
            }
            for (position, entry) in entries.iter().enumerate() {
                let sequence = entry.sequence;
                if sequence != expected {
                    let problem = if sequence > expected {
                        missing(expected, sequence)
                    } else {
                        format!("an entry numbered {sequence} stands where entry {expected} belongs (altered)")
                    };
                    note(&mut problems, expected, problem);
                    return Ok(first_problem(report, problems));
                }
                let Some(unpacked) = entry.unpacked() else {
                    note(&mut problems, sequence, format!("entry {sequence} cannot be read (altered)"));
                    return Ok(first_problem(report, problems));
                };
                let fields = HashedFields {
                    node,
                    sequence,
                    request_id: &entry.request_id,
                    member_id: &entry.member_id,
                    caller: &entry.caller,
                    method: &entry.method,
                    direction: &entry.direction,
                    started_at_us: entry.started_at_us,
                    duration_us: entry.duration_us,
                    status_code: entry.status_code,
                    request_bytes: entry.request_bytes,
                    response_bytes: entry.response_bytes,
                    request_sha256: &unpacked.request_sha256,
                    response_sha256: &unpacked.response_sha256,
                    request_body_stored: unpacked.request_body.is_some(),
                    response_body_stored: unpacked.response_body.is_some(),
                };
                let candidates = chain_key.map_or(keys.chain_keys.as_slice(), std::slice::from_ref);
                let computed = candidates.iter().find_map(|key| {
                    [entry_hash, entry_hash_v1]
                        .into_iter()
                        .map(|hash| hash(key, &previous, &fields))
                        .find(|computed| unpacked.hash.as_slice() == computed.as_slice())
                        .map(|computed| (key, computed))
                });
                let Some((key, computed)) = computed else {
                    let which =
                        if chain_key.is_none() && keys.chain_keys.len() > 1 { " with any trusted key" } else { "" };
                    note(&mut problems, sequence, format!("entry {sequence} does not match its hash{which} (altered)"));
                    return Ok(first_problem(report, problems));
                };
                chain_key = Some(key);
                if !named.names(entry, position) {
                    // The columns a search goes by do not name it: searches
                    // would not find it.
                    note(
                        &mut problems,
                        sequence,
                        format!(
                            "entry {sequence} is hidden from searches: its batch's columns do not name it (altered)"
                        ),
                    );
                    return Ok(first_problem(report, problems));
                }
                for (side, body, digest) in [
                    ("request", &unpacked.request_body, &unpacked.request_sha256),
                    ("response", &unpacked.response_body, &unpacked.response_sha256),
                ] {
                    if body.as_ref().is_some_and(|body| Sha256::digest(body)[..] != digest[..]) {
                        note(
                            &mut problems,
                            sequence,
                            format!("entry {sequence}: the stored {side} body does not match its digest"),
                        );
                        return Ok(first_problem(report, problems));
                    }
                }
                if let Some(heads) = signed.get(&sequence) {
                    if let Some(head) = heads.iter().find(|head| head.hash.as_slice() != computed.as_slice()) {
                        let copy = if head.witnessed_only { " (the event stream's copy)" } else { "" };
                        note(
                            &mut problems,
                            sequence,
                            format!(
                                "entries up to {sequence} were rewritten: the checkpoint signed there{copy} does not match"
                            ),
                        );
                        return Ok(first_problem(report, problems));
                    }
                    report.signed_through = sequence;
                }
                if problems.contains_key(&sequence) {
                    return Ok(first_problem(report, problems));
                }
                previous = computed;
                report.entries = sequence;
                expected = sequence + 1;
            }
        }
    }
    if let Some(problem) = batch.and_then(|ended| batch_end_problem(ended, expected)) {
        note(&mut problems, expected - 1, problem);
        return Ok(first_problem(report, problems));
    }
    if let Some((&last, heads)) = signed.range(expected..).next_back() {
        let copy = if heads.iter().all(|head| head.witnessed_only) {
            " (the event stream's copy; the database lost it too)"
        } else {
            ""
        };
        note(
            &mut problems,
            expected,
            format!("entries {expected} to {last} were removed: a checkpoint signed entry {last}{copy}"),
        );
    }
    Ok(first_problem(report, problems))
}

/// What a batch's columns say its entries are, which searches go by.
struct BatchNames {
    sequences: std::ops::RangeInclusive<i64>,
    /// Microseconds since 1970-01-01 UTC.
    started: std::ops::RangeInclusive<i64>,
    member_ids: Vec<String>,
    methods: Vec<String>,
    services: Vec<String>,
    /// The methods and services each member called (the column's
    /// `<member id> <method or service>`).
    calls: HashMap<String, HashSet<String>>,
    /// In entry order.
    request_ids: Vec<String>,
}

impl BatchNames {
    /// Whether they name `entry`, at `position` in the batch: a search by
    /// any of its member, method, service, member and method, request id,
    /// start would find it.
    fn names(&self, entry: &PackedEntry<'_>, position: usize) -> bool {
        let (member_id, method) = (&*entry.member_id, &*entry.method);
        self.sequences.contains(&entry.sequence)
            && self.started.contains(&entry.started_at_us)
            && self.member_ids.iter().any(|named| named == member_id)
            && self.methods.iter().any(|named| named == method)
            && self.calls.get(member_id).is_some_and(|called| {
                called.contains(method)
                    && service_of(method).is_none_or(|service| {
                        called.contains(service) && self.services.iter().any(|named| named == service)
                    })
            })
            && self.request_ids.get(position).is_some_and(|named| *named == entry.request_id)
    }
}

/// A batch's `member_methods` (`<member id> <method or service>`) by
/// member; a value without a space names nothing.
fn calls_named(pairs: Vec<String>) -> HashMap<String, HashSet<String>> {
    let mut calls: HashMap<String, HashSet<String>> = HashMap::new();
    for pair in pairs {
        if let Some((member_id, called)) = pair.split_once(' ') {
            calls.entry(member_id.to_owned()).or_default().insert(called.to_owned());
        }
    }
    calls
}

/// "entries … are missing", from `expected` to before `found`.
fn missing(expected: i64, found: i64) -> String {
    if found == expected + 1 {
        format!("entry {expected} is missing (removed)")
    } else {
        format!("entries {expected} to {} are missing (removed)", found - 1)
    }
}

/// What is wrong with a batch (its first entry, and the last it says it
/// holds) whose entries ended before `next`.
fn batch_end_problem((first, stated_last): (i64, i64), next: i64) -> Option<String> {
    (stated_last != next - 1)
        .then(|| format!("the batch of entries {first} to {} says it ends at entry {stated_last} (altered)", next - 1))
}

/// The report with the problem at the lowest entry, if any.
fn first_problem(mut report: ChainReport, problems: BTreeMap<i64, String>) -> ChainReport {
    report.broken = problems.into_iter().next();
    report
}

fn checkpoint_signature_problem(
    keys: &[TrustedKey],
    node: &str,
    sequence: i64,
    checkpoint: &Checkpoint,
) -> Option<String> {
    let Some(trusted) = keys.iter().find(|key| key.key_id == checkpoint.key_id) else {
        return Some(format!("the checkpoint at entry {sequence} is signed with an unknown key {}", checkpoint.key_id));
    };
    let Ok(hash) = Digest::try_from(checkpoint.hash.as_slice()) else {
        return Some(format!("the checkpoint at entry {sequence} is malformed"));
    };
    let Ok(signature) = ed25519_dalek::Signature::from_slice(&checkpoint.signature) else {
        return Some(format!("the checkpoint at entry {sequence} has a malformed signature"));
    };
    let message = checkpoint_message(node, sequence, &hash, checkpoint.signed_at);
    match trusted.key.verify(&message, &signature) {
        Ok(()) => None,
        Err(_) => Some(format!("the signature of the checkpoint at entry {sequence} does not verify")),
    }
}
