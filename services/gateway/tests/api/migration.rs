//! Migration 0109 moves the message log's entries, one row each, into
//! batches: every entry must come through the `message_log` view as it was
//! stored, field by field, and the chains must verify as before.

use chrono::{DateTime, TimeZone as _, Utc};
use esocial_gateway::message_log::{CheckpointKey, Digest, GENESIS, HashedFields, checkpoint_message, entry_hash};
use esocial_gateway::verify::{ChainReport, LogKeys, verify};
use esocial_testkit::TestDatabase;
use sha2::{Digest as _, Sha256};
use sqlx::migrate::Migrator;
use sqlx::{PgPool, Row as _};

/// The migration that moves the entries.
const BATCHES: i64 = 109;

/// An entry as the table before 0109 held it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    node: String,
    sequence: i64,
    request_id: String,
    member_id: String,
    caller: String,
    method: String,
    direction: String,
    started_at: DateTime<Utc>,
    duration_us: i64,
    status_code: i32,
    request_bytes: i64,
    response_bytes: i64,
    request_sha256: Vec<u8>,
    response_sha256: Vec<u8>,
    request_body: Option<Vec<u8>>,
    response_body: Option<Vec<u8>>,
    hash: Vec<u8>,
}

const COLUMNS: &str = "node, sequence, request_id, member_id, caller, method, direction, started_at, duration_us,
     status_code, request_bytes, response_bytes, request_sha256, response_sha256, request_body, response_body, hash";

async fn stored(pool: &PgPool) -> Vec<Stored> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM message_log ORDER BY node, sequence")))
        .fetch_all(pool)
        .await
        .expect("entries");
    rows.iter()
        .map(|row| Stored {
            node: row.get("node"),
            sequence: row.get("sequence"),
            request_id: row.get("request_id"),
            member_id: row.get("member_id"),
            caller: row.get("caller"),
            method: row.get("method"),
            direction: row.get("direction"),
            started_at: row.get("started_at"),
            duration_us: row.get("duration_us"),
            status_code: row.get("status_code"),
            request_bytes: row.get("request_bytes"),
            response_bytes: row.get("response_bytes"),
            request_sha256: row.get("request_sha256"),
            response_sha256: row.get("response_sha256"),
            request_body: row.get("request_body"),
            response_body: row.get("response_body"),
            hash: row.get("hash"),
        })
        .collect()
}

/// The `index`-th entry's body on one side: none (metadata mode), empty, a
/// lone NUL byte, or up to 300 bytes of every value.
fn body(index: i64, side: i64) -> Option<Vec<u8>> {
    match (index + side) % 5 {
        0 => None,
        1 => Some(Vec::new()),
        2 => Some(vec![0]),
        _ => Some((0..(index * 7 + side) % 300).map(|byte| u8::try_from(byte % 256).expect("byte")).collect()),
    }
}

/// Request ids and methods a JSON packing must carry whole: quotes, a
/// backslash, a control character, Cyrillic; a path without a service, one
/// with three segments.
const REQUEST_IDS: [&str; 5] = ["plain", "with \"quotes\"", "back\\slash", "tab\there", "запит №1"];
const METHODS: [&str; 4] = [
    "/esocial.registry.v1.IdpService/VerifyIdpCertificate",
    "/esocial.registry.v1.RegistryService/GetPerson",
    "unknown",
    "/esocial.external.bank.v1.BankService/VerifyAccounts/extra",
];

/// A chain of `entries` for `node`, hashed as the gateway hashes them.
fn chain(key: &CheckpointKey, node: &str, entries: i64) -> Vec<Stored> {
    let chain_key = key.chain_key();
    let start = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).single().expect("time");
    let mut previous: Digest = GENESIS;
    (1..=entries)
        .map(|sequence| {
            let index = usize::try_from(sequence).expect("index");
            let request_body = body(sequence, 0);
            let response_body = body(sequence, 1);
            let digest = |body: &Option<Vec<u8>>, size: i64| match body {
                Some(body) => Sha256::digest(body).to_vec(),
                None => Sha256::digest(vec![1u8; usize::try_from(size).expect("size")]).to_vec(),
            };
            let (request_bytes, response_bytes) = (sequence * 3 % 400, sequence * 11 % 900);
            let mut entry = Stored {
                node: node.to_owned(),
                sequence,
                request_id: format!("{} {sequence}", REQUEST_IDS[index % REQUEST_IDS.len()]),
                member_id: format!("UA/GOV/3285596{}/member", sequence % 3),
                caller: format!("client:member-{}", sequence % 3),
                method: METHODS[index % METHODS.len()].to_owned(),
                direction: if sequence % 4 == 0 { "outbound" } else { "inbound" }.to_owned(),
                // Starts out of order now and then, with microseconds.
                started_at: start + chrono::Duration::microseconds(sequence * 1_000_003 - (sequence % 7) * 2_500_000),
                duration_us: sequence * 13,
                status_code: i32::try_from(sequence % 17).expect("code"),
                request_bytes,
                response_bytes,
                request_sha256: digest(&request_body, request_bytes),
                response_sha256: digest(&response_body, response_bytes),
                request_body,
                response_body,
                hash: Vec::new(),
            };
            let hash = entry_hash(
                &chain_key,
                &previous,
                &HashedFields {
                    node,
                    sequence,
                    request_id: &entry.request_id,
                    member_id: &entry.member_id,
                    caller: &entry.caller,
                    method: &entry.method,
                    direction: &entry.direction,
                    started_at_us: entry.started_at.timestamp_micros(),
                    duration_us: entry.duration_us,
                    status_code: entry.status_code,
                    request_bytes: entry.request_bytes,
                    response_bytes: entry.response_bytes,
                    request_sha256: &entry.request_sha256,
                    response_sha256: &entry.response_sha256,
                    request_body_stored: entry.request_body.is_some(),
                    response_body_stored: entry.response_body.is_some(),
                },
            );
            entry.hash = hash.to_vec();
            previous = hash;
            entry
        })
        .collect()
}

/// Writes `entries` in one transaction, as the writer of 0107 to 0108 did
/// (or, `before_0107`, with no transaction recorded, as before it).
async fn write(pool: &PgPool, entries: &[Stored], before_0107: bool) {
    let mut transaction = pool.begin().await.expect("transaction");
    for entry in entries {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO message_log ({COLUMNS}, written_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                     CASE WHEN $18 THEN NULL ELSE pg_current_xact_id() END)"
        )))
        .bind(&entry.node)
        .bind(entry.sequence)
        .bind(&entry.request_id)
        .bind(&entry.member_id)
        .bind(&entry.caller)
        .bind(&entry.method)
        .bind(&entry.direction)
        .bind(entry.started_at)
        .bind(entry.duration_us)
        .bind(entry.status_code)
        .bind(entry.request_bytes)
        .bind(entry.response_bytes)
        .bind(&entry.request_sha256)
        .bind(&entry.response_sha256)
        .bind(&entry.request_body)
        .bind(&entry.response_body)
        .bind(&entry.hash)
        .bind(before_0107)
        .execute(&mut *transaction)
        .await
        .expect("entry");
    }
    transaction.commit().await.expect("committed");
}

/// Signs the chain's head at `entry`, as the gateway does.
async fn checkpoint(pool: &PgPool, key: &CheckpointKey, entry: &Stored) {
    use ed25519_dalek::Signer as _;
    let signed_at = Utc.timestamp_micros(Utc::now().timestamp_micros()).single().expect("time");
    let hash: Digest = entry.hash.as_slice().try_into().expect("digest");
    let signature = key.key.sign(&checkpoint_message(&entry.node, entry.sequence, &hash, signed_at));
    sqlx::query("INSERT INTO log_checkpoints (node, sequence, hash, signed_at, key_id, signature) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&entry.node)
        .bind(entry.sequence)
        .bind(&entry.hash)
        .bind(signed_at)
        .bind(&key.key_id)
        .bind(signature.to_bytes().as_slice())
        .execute(pool)
        .await
        .expect("checkpoint");
}

#[tokio::test]
async fn entries_written_before_the_batches_come_through_the_view_as_they_were_and_still_verify() {
    let database = TestDatabase::create().await.expect("test database");
    let pool = esocial_kit::db::pool(database.url(), "gateway", "esocial-gateway-migration-test", 2).expect("pool");
    let before = Migrator::with_migrations(
        esocial_gateway::migrations().iter().filter(|migration| migration.version < BATCHES).cloned().collect(),
    );
    esocial_kit::db::migrate(&pool, "gateway", &before).await.expect("migrations before 0109");

    let key =
        CheckpointKey { key: ed25519_dalek::SigningKey::from_bytes(&[7; 32]), key_id: "migration-test".to_owned() };
    // One node with 1,500 entries from before 0107 (cut into batches of
    // 1,000) and three transactions after; another with two transactions.
    let first = chain(&key, "node-a", 1_800);
    write(&pool, &first[..1_500], true).await;
    for part in [&first[1_500..1_600], &first[1_600..1_601], &first[1_601..]] {
        write(&pool, part, false).await;
    }
    checkpoint(&pool, &key, &first[999]).await;
    checkpoint(&pool, &key, &first[1_799]).await;
    let second = chain(&key, "node-b", 60);
    write(&pool, &second[..59], false).await;
    write(&pool, &second[59..], false).await;
    checkpoint(&pool, &key, &second[59]).await;
    let written = stored(&pool).await;
    assert_eq!(written.len(), 1_860);
    assert_eq!(written, [first, second].concat(), "stored as written");

    esocial_kit::db::migrate(&pool, "gateway", esocial_gateway::migrations()).await.expect("0109 and after");

    // Every entry, every field, through the view.
    assert_eq!(stored(&pool).await, written, "the entries as they were");
    let batches: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT node, first_sequence, last_sequence FROM message_log_batches ORDER BY node, first_sequence",
    )
    .fetch_all(&pool)
    .await
    .expect("batches");
    assert_eq!(
        batches,
        [
            ("node-a".to_owned(), 1, 1_000),
            ("node-a".to_owned(), 1_001, 1_500),
            ("node-a".to_owned(), 1_501, 1_600),
            ("node-a".to_owned(), 1_601, 1_601),
            ("node-a".to_owned(), 1_602, 1_800),
            ("node-b".to_owned(), 1, 59),
            ("node-b".to_owned(), 60, 60),
        ],
        "a batch for each transaction; the entries before 0107 cut every 1,000"
    );
    // The bodies' sizes, which searches read without decoding them.
    let sizes_differ: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM message_log
         WHERE request_body_bytes IS DISTINCT FROM octet_length(request_body)
            OR response_body_bytes IS DISTINCT FROM octet_length(response_body)",
    )
    .fetch_one(&pool)
    .await
    .expect("sizes");
    assert_eq!(sizes_differ, 0);

    // The chains verify, every entry found by its batch's columns (its
    // member's call of its method too, 0112), and the checkpoints signed
    // before the move still match.
    let reports = verify(&pool, &LogKeys::of(&key), None, None).await.expect("verified");
    let intact = |node: &str, entries: i64, checkpoints: i64| ChainReport {
        node: node.to_owned(),
        entries,
        checkpoints,
        broken: None,
        signed_through: entries,
        witnessed_through: 0,
    };
    assert_eq!(reports, [intact("node-a", 1_800, 2), intact("node-b", 60, 1)]);
}
