use std::time::{Duration, Instant};

use esocial_gateway::message_log::{Digest, HashedFields, checkpoint_event, hex};
use esocial_gateway::verify;
use esocial_proto::gateway::v1 as pb;
use esocial_proto::registry::v1 as registry_pb;
use sha2::{Digest as _, Sha256};
use tonic::Code;

use crate::harness::*;

const VERIFY_CERTIFICATE: &str = "/esocial.registry.v1.IdpService/VerifyIdpCertificate";

/// The body of a unary gRPC request as sent: a 5-byte frame header, then
/// the message.
fn grpc_frame(message: &impl prost::Message) -> Vec<u8> {
    let encoded = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(encoded.len()).expect("length").to_be_bytes());
    frame.extend_from_slice(&encoded);
    frame
}

async fn verify_chain(gateway: &TestGateway) -> verify::ChainReport {
    let pool = gateway.gateway_pool().await;
    let witness = gateway.witness().await;
    let reports = verify::verify(&pool, &gateway.log_keys, None, Some(&witness)).await.expect("verification runs");
    assert_eq!(reports.len(), 1, "one node, one chain: {reports:?}");
    reports.into_iter().next().expect("one chain")
}

/// Asserts that `report` names entry `at` as the first that does not
/// verify, for a reason that says each of `words`.
fn assert_broken_at(report: &verify::ChainReport, at: i64, words: &[&str]) {
    assert_eq!(report.broken.as_ref().map(|(sequence, _)| *sequence), Some(at), "{report:?}");
    let problem = report.broken.as_ref().map_or("", |(_, problem)| problem.as_str());
    for word in words {
        assert!(problem.contains(word), "{word:?} in {report:?}");
    }
}

fn verify_request() -> registry_pb::VerifyIdpCertificateRequest {
    registry_pb::VerifyIdpCertificateRequest { code: "1234567890123452".to_owned() }
}

/// A gateway through which a member made `calls` calls.
async fn gateway_after_calls(calls: usize) -> TestGateway {
    gateway_after_calls_with(&[], calls).await
}

/// As [`gateway_after_calls`], with these settings of the gateway's.
async fn gateway_after_calls_with(gateway_only: &[(&str, &str)], calls: usize) -> TestGateway {
    let gateway = TestGateway::spawn_with_gateway(&[], gateway_only).await;
    gateway.register_member(DIIA, "diia", None, &[VERIFY_CERTIFICATE]).await;
    let mut idp = gateway.idp(Some(gateway.system_token("diia").await)).await;
    for _ in 0..calls {
        idp.verify_idp_certificate(verify_request()).await.expect("forwarded");
    }
    gateway
}

/// `member`'s exchanges are logged with their bodies from now on.
async fn log_in_full(gateway: &TestGateway, member: &str) {
    gateway
        .admin()
        .await
        .update_member(pb::UpdateMemberRequest {
            request_id: new_request_id(),
            member_id: member.to_owned(),
            log_mode: pb::LogMode::Full.into(),
            ..Default::default()
        })
        .await
        .expect("full logging");
}

/// The request and response bodies an entry keeps.
type KeptBodies = (Option<Vec<u8>>, Option<Vec<u8>>);

/// An entry's hashed fields as stored (no bodies: metadata mode).
type LogRow = (
    String,
    i64,
    String,
    String,
    String,
    String,
    String,
    chrono::DateTime<chrono::Utc>,
    i64,
    i32,
    i64,
    i64,
    Vec<u8>,
    Vec<u8>,
);

async fn log_rows(pool: &sqlx::PgPool) -> Vec<LogRow> {
    sqlx::query_as(
        "SELECT node, sequence, request_id, member_id, caller, method, direction, started_at, duration_us, status_code,
                request_bytes, response_bytes, request_sha256, response_sha256
         FROM gateway.message_log ORDER BY sequence",
    )
    .fetch_all(pool)
    .await
    .expect("rows")
}

/// Rewrites the hashes of `rows` as a chain after `previous`, each made by
/// `hash` from the previous one and the entry's fields.
async fn rechain(
    pool: &sqlx::PgPool,
    rows: &[LogRow],
    mut previous: Digest,
    hash: impl Fn(&Digest, &HashedFields<'_>) -> Digest,
) {
    for row in rows {
        let fields = HashedFields {
            node: &row.0,
            sequence: row.1,
            request_id: &row.2,
            member_id: &row.3,
            caller: &row.4,
            method: &row.5,
            direction: &row.6,
            started_at_us: row.7.timestamp_micros(),
            duration_us: row.8,
            status_code: row.9,
            request_bytes: row.10,
            response_bytes: row.11,
            request_sha256: &row.12,
            response_sha256: &row.13,
            request_body_stored: false,
            response_body_stored: false,
        };
        previous = hash(&previous, &fields);
        sqlx::query("UPDATE gateway.message_log SET hash = $1 WHERE node = $2 AND sequence = $3")
            .bind(previous.as_slice())
            .bind(&row.0)
            .bind(row.1)
            .execute(pool)
            .await
            .expect("hash rewritten");
    }
}

/// The hash stored with entry `sequence` of `node`'s chain.
async fn stored_hash(pool: &sqlx::PgPool, node: &str, sequence: i64) -> Digest {
    sqlx::query_scalar::<_, Vec<u8>>("SELECT hash FROM gateway.message_log WHERE node = $1 AND sequence = $2")
        .bind(node)
        .bind(sequence)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|error| panic!("the hash of {node}'s entry {sequence}: {error}"))
        .try_into()
        .expect("32 bytes")
}

/// Signs `hash` as the head of `node`'s chain at entry `sequence` with
/// `key`, now, and stores the checkpoint; returns its time and signature.
async fn store_checkpoint(
    pool: &sqlx::PgPool,
    key: &esocial_gateway::message_log::CheckpointKey,
    node: &str,
    sequence: i64,
    hash: &Digest,
) -> (chrono::DateTime<chrono::Utc>, ed25519_dalek::Signature) {
    use ed25519_dalek::Signer as _;

    let signed_at = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp(), 0).expect("now");
    let signature = key.key.sign(&esocial_gateway::message_log::checkpoint_message(node, sequence, hash, signed_at));
    sqlx::query(
        "INSERT INTO gateway.log_checkpoints (node, sequence, hash, signed_at, key_id, signature)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(node)
    .bind(sequence)
    .bind(hash.as_slice())
    .bind(signed_at)
    .bind(&key.key_id)
    .bind(signature.to_bytes().as_slice())
    .execute(pool)
    .await
    .expect("checkpoint stored");
    (signed_at, signature)
}

/// Waits until the last entry is signed and the event stream holds that
/// checkpoint; returns the entry.
async fn witnessed_head(gateway: &TestGateway) -> i64 {
    eventually(Duration::from_secs(20), || async {
        let head: i64 = sqlx::query_scalar("SELECT coalesce(max(sequence), 0) FROM gateway.message_log")
            .fetch_one(&gateway.pool)
            .await
            .expect("head");
        let witness = gateway.witness().await;
        let witnessed = witness.keys().filter_map(|node| verify::newest_witnessed(&witness, node)).max().unwrap_or(0);
        if head >= 8 && witnessed == head {
            Ok(head)
        } else {
            Err(format!("the stream holds no checkpoint of entry {head}"))
        }
    })
    .await
}

async fn search(log: &mut Log, request: pb::SearchMessageLogRequest) -> Vec<pb::LogEntry> {
    log.search_message_log(request).await.expect("search").into_inner().entries
}

#[tokio::test]
async fn every_exchange_is_logged_with_its_digests_and_auditors_find_it() {
    let gateway = TestGateway::spawn().await;
    gateway.register_member(DIIA, "diia", None, &[VERIFY_CERTIFICATE]).await;
    log_in_full(&gateway, DIIA).await;
    let token = gateway.system_token("diia").await;
    let mut idp = gateway.idp(Some(token.clone())).await;
    let mut request = tonic::Request::new(verify_request());
    request.metadata_mut().insert("x-request-id", "audit-trail-1".parse().expect("metadata"));
    idp.verify_idp_certificate(request).await.expect("forwarded");
    let mut providers = gateway.providers(Some(token.clone())).await;
    providers.register_provider(provider("Орган", 3_285_596)).await.expect_err("no right");

    let mut log = gateway.auditor().await;
    let by_member = pb::SearchMessageLogRequest { member_id: DIIA.to_owned(), ..Default::default() };
    let started = Instant::now();
    let entries = loop {
        let entries = search(&mut log, by_member.clone()).await;
        if entries.len() >= 2 {
            break entries;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "entries not written: {entries:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(entries.len(), 2, "{entries:?}");
    let (forwarded, denied) = (&entries[0], &entries[1]);
    let frame = grpc_frame(&verify_request());
    assert_eq!(forwarded.method, VERIFY_CERTIFICATE);
    assert_eq!(forwarded.request_id, "audit-trail-1");
    assert_eq!(forwarded.caller, "client:diia");
    assert_eq!(forwarded.direction, "inbound");
    assert_eq!(forwarded.status_code, 0);
    assert_eq!(forwarded.request_bytes, u64::try_from(frame.len()).expect("length"));
    assert_eq!(forwarded.request_sha256, hex(&Sha256::digest(&frame)));
    assert!(forwarded.response_bytes > 5, "{forwarded:?}");
    assert_eq!(forwarded.hash.len(), 64);
    assert!(forwarded.request_body.is_empty(), "bodies only when asked for");

    assert_eq!(denied.method, "/esocial.registry.v1.ProviderService/RegisterProvider");
    assert_eq!(denied.status_code, Code::PermissionDenied as i32);
    assert_eq!(denied.request_bytes, 0, "a refused body is not read");

    // Full mode keeps the bodies; they match their digests.
    let with_bodies = search(
        &mut log,
        pb::SearchMessageLogRequest {
            request_id: "audit-trail-1".to_owned(),
            include_bodies: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(with_bodies.len(), 1);
    assert_eq!(with_bodies[0].request_body, frame);
    assert_eq!(hex(&Sha256::digest(&with_bodies[0].response_body)), with_bodies[0].response_sha256);

    // By service prefix and time range.
    let by_service = search(
        &mut log,
        pb::SearchMessageLogRequest { method: "/esocial.registry.v1.IdpService/".to_owned(), ..Default::default() },
    )
    .await;
    assert_eq!(by_service.len(), 1);
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let none = search(
        &mut log,
        pb::SearchMessageLogRequest {
            member_id: DIIA.to_owned(),
            from: Some(prost_types::Timestamp { seconds: later.timestamp(), nanos: 0 }),
            ..Default::default()
        },
    )
    .await;
    assert!(none.is_empty());
    // Up to a time: what started before it.
    let timestamp =
        |at: chrono::DateTime<chrono::Utc>| Some(prost_types::Timestamp { seconds: at.timestamp(), nanos: 0 });
    let earlier = chrono::Utc::now() - chrono::Duration::hours(1);
    let until_earlier = search(
        &mut log,
        pb::SearchMessageLogRequest { member_id: DIIA.to_owned(), to: timestamp(earlier), ..Default::default() },
    )
    .await;
    assert!(until_earlier.is_empty(), "{until_earlier:?}");
    let between = search(
        &mut log,
        pb::SearchMessageLogRequest {
            member_id: DIIA.to_owned(),
            from: timestamp(earlier),
            to: timestamp(later),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(between, entries, "the same two entries");

    // By a member and a method or a service: that member's calls of them,
    // and none of another caller's (the auditor's searches).
    let of_member = |method: &str| pb::SearchMessageLogRequest {
        member_id: DIIA.to_owned(),
        method: method.to_owned(),
        ..Default::default()
    };
    assert_eq!(search(&mut log, of_member(VERIFY_CERTIFICATE)).await, std::slice::from_ref(forwarded));
    assert_eq!(
        search(&mut log, of_member("/esocial.registry.v1.ProviderService/")).await,
        std::slice::from_ref(denied)
    );
    let never = search(&mut log, of_member("/esocial.gateway.v1.MessageLogService/SearchMessageLog")).await;
    assert!(never.is_empty(), "{never:?}");

    // What an auditor asked of the log is kept with the entry of its call;
    // what the log answered is not copied into it.
    let searches: Vec<KeptBodies> = eventually(Duration::from_secs(10), || async {
        let searches: Vec<KeptBodies> = sqlx::query_as(
            "SELECT request_body, response_body FROM gateway.message_log
             WHERE method = '/esocial.gateway.v1.MessageLogService/SearchMessageLog' ORDER BY sequence",
        )
        .fetch_all(&gateway.pool)
        .await
        .expect("searches");
        if searches.len() >= 4 { Ok(searches) } else { Err(format!("{} searches logged", searches.len())) }
    })
    .await;
    let asked: Vec<pb::SearchMessageLogRequest> = searches
        .iter()
        .map(|(request, response)| {
            assert!(response.is_none(), "the answer is not kept");
            let request = request.as_deref().expect("the request is kept");
            prost::Message::decode(&request[5..]).expect("a search request")
        })
        .collect();
    assert!(asked.iter().any(|search| search.request_id == "audit-trail-1" && search.include_bodies), "{asked:?}");

    // The administrator's calls are exchanges too, with who made them.
    let admin_calls = search(
        &mut log,
        pb::SearchMessageLogRequest {
            method: "/esocial.gateway.v1.GatewayAdminService/".to_owned(),
            ..Default::default()
        },
    )
    .await;
    assert!(admin_calls.len() >= 3, "register, grant, update: {admin_calls:?}");
    assert!(admin_calls.iter().all(|entry| entry.caller == PERSON_ACCOUNT && entry.status_code == 0));

    // Bad filters name their field; members may not read the log.
    let bad = log
        .search_message_log(pb::SearchMessageLogRequest { method: "GetPerson".to_owned(), ..Default::default() })
        .await
        .expect_err("bad method");
    assert_eq!(violated_fields(&bad), ["method"]);
    let mut member_log =
        esocial_proto::gateway::v1::message_log_service_client::MessageLogServiceClient::with_interceptor(
            gateway.channel().await,
            BearerToken(Some(token)),
        );
    let refused = member_log.search_message_log(by_member).await.expect_err("not an auditor");
    assert_eq!(refused.code(), Code::PermissionDenied);
}

/// Sets `assignment` (whose value, if bound, is `$2`) in the batch of
/// node `gateway-1` that begins with entry `first`.
fn edit_batch(
    first: i64,
    assignment: &str,
) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE gateway.message_log_batches SET {assignment} WHERE node = 'gateway-1' AND first_sequence = $1"
    )))
    .bind(first)
}

#[tokio::test]
async fn the_chain_verifies_and_a_changed_byte_or_a_removed_entry_is_found() {
    let gateway = gateway_after_calls(10).await;
    gateway.wait_for_log_entries(12).await;
    // Checkpoints are signed every second here: wait until one covers the head.
    let report = eventually(Duration::from_secs(10), || async {
        let report = verify_chain(&gateway).await;
        assert!(report.is_intact(), "{report:?}");
        let covered = report.signed_through == report.entries && report.entries >= 12;
        if covered { Ok(report) } else { Err(format!("no checkpoint covers the head: {report:?}")) }
    })
    .await;
    let entries = report.entries;

    // The same through the gateway's own method, for an auditor.
    let mut log = gateway.auditor().await;
    let chains =
        log.verify_message_log(pb::VerifyMessageLogRequest::default()).await.expect("verify").into_inner().chains;
    assert_eq!(chains.len(), 1);
    assert!(chains[0].intact && chains[0].entries >= entries, "{chains:?}");
    gateway.wait_for_log_entries(entries + 1).await;
    // Stop the traffic the auditor's call made from racing the edits below.
    verify_chain(&gateway).await;

    // One byte of one entry changed.
    const FLIP_REQUEST_DIGEST_BIT: &str =
        "UPDATE gateway.message_log SET request_sha256 = set_byte(request_sha256, 0, get_byte(request_sha256, 0) # 1)
         WHERE sequence = 8";
    gateway.tamper("UPDATE gateway.message_log SET status_code = 13 WHERE sequence = 5", &[]).await;
    let report = verify_chain(&gateway).await;
    assert_broken_at(&report, 5, &["altered"]);
    gateway.tamper("UPDATE gateway.message_log SET status_code = 0 WHERE sequence = 5", &[]).await;
    assert!(verify_chain(&gateway).await.is_intact());

    gateway.tamper(FLIP_REQUEST_DIGEST_BIT, &[]).await;
    assert_eq!(verify_chain(&gateway).await.broken.map(|(sequence, _)| sequence), Some(8));
    gateway.tamper(FLIP_REQUEST_DIGEST_BIT, &[]).await;
    assert!(verify_chain(&gateway).await.is_intact());

    // An entry hidden from searches: its batch's columns no longer name
    // its member (the entries, and so the chain, unchanged).
    let (member, method, request_id, batch): (String, String, String, i64) = sqlx::query_as(
        "SELECT member_id, method, request_id, batch_first_sequence FROM gateway.message_log WHERE sequence = 5",
    )
    .fetch_one(&gateway.pool)
    .await
    .expect("entry 5");
    let first_of_member: i64 = sqlx::query_scalar(
        "SELECT min(sequence) FROM gateway.message_log WHERE batch_first_sequence = $1 AND member_id = $2",
    )
    .bind(batch)
    .bind(&member)
    .fetch_one(&gateway.pool)
    .await
    .expect("the member's first entry in the batch");
    let name_member = |how: &'static str| edit_batch(batch, how).bind(member.clone());
    let search = pb::SearchMessageLogRequest { member_id: member.clone(), request_id, ..Default::default() };
    let found = log.search_message_log(search.clone()).await.expect("search").into_inner().entries;
    assert_eq!(found.iter().map(|entry| entry.sequence).collect::<Vec<_>>(), [5]);
    name_member("member_ids = array_remove(member_ids, $2)").execute(&gateway.pool).await.expect("hidden");
    let found = log.search_message_log(search).await.expect("search").into_inner().entries;
    assert!(found.is_empty(), "a search misses it: {found:?}");
    let report = verify_chain(&gateway).await;
    assert_broken_at(&report, first_of_member, &["hidden from searches"]);
    name_member("member_ids = array_append(member_ids, $2)").execute(&gateway.pool).await.expect("named again");
    assert!(verify_chain(&gateway).await.is_intact());

    // …or its batch no longer names the member's calls of its method.
    let first_of_pair: i64 = sqlx::query_scalar(
        "SELECT min(sequence) FROM gateway.message_log
         WHERE batch_first_sequence = $1 AND member_id = $2 AND method = $3",
    )
    .bind(batch)
    .bind(&member)
    .bind(&method)
    .fetch_one(&gateway.pool)
    .await
    .expect("the member's first call of the method in the batch");
    let name_pair = |how: &'static str| edit_batch(batch, how).bind(format!("{member} {method}"));
    let search =
        pb::SearchMessageLogRequest { member_id: member.clone(), method: method.clone(), ..Default::default() };
    let found = log.search_message_log(search.clone()).await.expect("search").into_inner().entries;
    assert!(found.iter().any(|entry| entry.sequence == 5), "{found:?}");
    name_pair("member_methods = array_remove(member_methods, $2)").execute(&gateway.pool).await.expect("hidden");
    let found = log.search_message_log(search).await.expect("search").into_inner().entries;
    assert!(!found.iter().any(|entry| entry.sequence == 5), "a search misses it: {found:?}");
    let report = verify_chain(&gateway).await;
    assert_broken_at(&report, first_of_pair, &["hidden from searches"]);
    name_pair("member_methods = array_append(member_methods, $2)").execute(&gateway.pool).await.expect("named again");
    assert!(verify_chain(&gateway).await.is_intact());
    // …or of its method's service.
    let service = &method[..method[1..].find('/').expect("a service") + 2];
    let name_service = |how: &'static str| edit_batch(batch, how).bind(format!("{member} {service}"));
    name_service("member_methods = array_remove(member_methods, $2)").execute(&gateway.pool).await.expect("hidden");
    let by_service =
        pb::SearchMessageLogRequest { member_id: member.clone(), method: service.to_owned(), ..Default::default() };
    let found = log.search_message_log(by_service).await.expect("search").into_inner().entries;
    assert!(!found.iter().any(|entry| entry.sequence == 5), "a search misses it: {found:?}");
    assert_broken_at(&verify_chain(&gateway).await, first_of_pair, &["hidden from searches"]);
    name_service("member_methods = array_append(member_methods, $2)")
        .execute(&gateway.pool)
        .await
        .expect("named again");
    assert!(verify_chain(&gateway).await.is_intact());

    // A copy of entry 7 smuggled in after the last entry of a batch (searches
    // would show it twice), the batch's columns left as they were.
    let (first, last, entries): (i64, i64, String) = sqlx::query_as(
        "SELECT first_sequence, last_sequence, entries FROM gateway.message_log_batches
         ORDER BY first_sequence DESC LIMIT 1",
    )
    .fetch_one(&gateway.pool)
    .await
    .expect("the last batch");
    edit_batch(
        first,
        "entries = rtrim(entries, ']') || ',' || (SELECT e::text FROM gateway.message_log_batches b,
                                                  json_array_elements(b.entries::json) e
                                                  WHERE (e ->> 'sequence')::bigint = 7) || ']'",
    )
    .execute(&gateway.pool)
    .await
    .expect("smuggled");
    assert_broken_at(&verify_chain(&gateway).await, last + 1, &["numbered 7", "altered"]);
    edit_batch(first, "entries = $2").bind(&entries).execute(&gateway.pool).await.expect("as it was");
    assert!(verify_chain(&gateway).await.is_intact());

    // A batch of entries far past the end of the chain.
    sqlx::query(
        "INSERT INTO gateway.message_log_batches (node, first_sequence, last_sequence, first_started_at, last_started_at,
                                                  member_ids, methods, services, request_ids, entries, member_methods)
         SELECT node, 1000000, 1000000, first_started_at, last_started_at, member_ids, methods, services,
                request_ids[1:1], '[' || jsonb_set((entries::jsonb) -> 0, '{sequence}', '1000000')::text || ']',
                member_methods
         FROM gateway.message_log_batches WHERE first_sequence = $1",
    )
    .bind(first)
    .execute(&gateway.pool)
    .await
    .expect("a batch past the end");
    let report = verify_chain(&gateway).await;
    let (at, problem) = report.broken.clone().expect("broken");
    assert!(at > last && problem.contains("missing"), "{report:?}");
    sqlx::query("DELETE FROM gateway.message_log_batches WHERE first_sequence = 1000000")
        .execute(&gateway.pool)
        .await
        .expect("removed");
    assert!(verify_chain(&gateway).await.is_intact());

    // A batch whose entries are not what the writer writes: not JSON, with
    // a field it never writes, or a hash not in hexadecimal.
    for (edit, problem) in [
        ("entries = 'not JSON'", "cannot be read"),
        ("entries = jsonb_set(entries::jsonb, '{0,note}', '\"x\"')::text", "unknown field `note`"),
        ("entries = jsonb_set(entries::jsonb, '{0,hash}', '\"zz\"')::text", "cannot be read"),
    ] {
        edit_batch(first, edit).execute(&gateway.pool).await.expect("edited");
        assert_broken_at(&verify_chain(&gateway).await, first, &[problem, "altered"]);
        edit_batch(first, "entries = $2").bind(&entries).execute(&gateway.pool).await.expect("as it was");
        assert!(verify_chain(&gateway).await.is_intact());
    }

    // One entry removed.
    gateway.tamper("DELETE FROM gateway.message_log WHERE sequence = 7", &[]).await;
    let report = verify_chain(&gateway).await;
    assert_broken_at(&report, 7, &["missing"]);

    // The signed tail removed: the checkpoint tells.
    gateway.tamper("DELETE FROM gateway.message_log WHERE sequence >= 7", &[]).await;
    let report = verify_chain(&gateway).await;
    assert_broken_at(&report, 7, &["removed"]);
}

#[tokio::test]
async fn a_checkpoint_follows_every_so_many_entries_without_waiting_for_the_interval() {
    let mut gateway = TestGateway::spawn_with(&[
        ("ESOCIAL_GATEWAY_CHECKPOINT_SECONDS", "3600"),
        ("ESOCIAL_GATEWAY_CHECKPOINT_ENTRIES", "5"),
        // Batches of a few entries each (the default linger would gather
        // all twelve calls into one), so that several checkpoints are due.
        ("ESOCIAL_GATEWAY_LOG_LINGER_MS", "0"),
    ])
    .await;
    gateway.register_member(DIIA, "diia", None, &[VERIFY_CERTIFICATE]).await;
    let mut idp = gateway.idp(Some(gateway.system_token("diia").await)).await;
    for _ in 0..12 {
        idp.verify_idp_certificate(verify_request()).await.expect("forwarded");
    }
    gateway.wait_for_log_entries(13).await;
    let pool = gateway.pool.clone();
    let (head, signed) = eventually(Duration::from_secs(10), || {
        let pool = pool.clone();
        async move {
            let head = newest(&pool, "message_log").await;
            let signed: Vec<i64> = sqlx::query_scalar("SELECT sequence FROM gateway.log_checkpoints ORDER BY sequence")
                .fetch_all(&pool)
                .await
                .expect("checkpoints");
            let unsigned = head - signed.last().copied().unwrap_or(0);
            if unsigned < 5 { Ok((head, signed)) } else { Err(format!("{unsigned} entries after {signed:?}")) }
        }
    })
    .await;
    // An hour has not passed: every checkpoint came after at least 5 new
    // entries (a batch may bring more at once).
    assert!(signed.len() >= 2, "{signed:?} of {head}");
    let mut previous = 0;
    for sequence in &signed {
        assert!(sequence - previous >= 5, "{signed:?}");
        previous = *sequence;
    }
    let report = verify_chain(&gateway).await;
    assert!(report.is_intact(), "{report:?}");
    assert!(report.signed_through >= *signed.last().expect("one"), "{report:?}");

    // Fewer entries than that after the last checkpoint (one more call if
    // there are none): signed when the gateway stops.
    if newest(&pool, "log_checkpoints").await == newest(&pool, "message_log").await {
        idp.verify_idp_certificate(verify_request()).await.expect("forwarded");
        gateway.wait_for_log_entries(head + 1).await;
    }
    assert!(newest(&pool, "log_checkpoints").await < newest(&pool, "message_log").await, "unsigned entries");
    gateway.stop().await;
    assert_eq!(
        newest(&pool, "log_checkpoints").await,
        newest(&pool, "message_log").await,
        "the last checkpoint covers the head"
    );
}

/// The highest sequence number in `gateway.<table>`.
async fn newest(pool: &sqlx::PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT coalesce(max(sequence), 0) FROM gateway.{table}")))
        .fetch_one(pool)
        .await
        .expect("sequence")
}

/// A gateway whose log queue holds 16 entries, written 4 at a time, with
/// `ESOCIAL_GATEWAY_LOG_FAILURE` set to `policy`; the Diia portal's member
/// may verify certificates, and its registration is logged. The gateway
/// and a client of the member's.
async fn gateway_with_a_small_log_queue(policy: &str) -> (TestGateway, Idp) {
    let gateway = TestGateway::spawn_with(&[
        ("ESOCIAL_GATEWAY_LOG_QUEUE_MAX", "16"),
        ("ESOCIAL_GATEWAY_LOG_BATCH_MAX", "4"),
        ("ESOCIAL_GATEWAY_LOG_FAILURE", policy),
    ])
    .await;
    gateway.register_member(DIIA, "diia", None, &[VERIFY_CERTIFICATE]).await;
    gateway.wait_for_log_entries(2).await;
    let idp = gateway.idp(Some(gateway.system_token("diia").await)).await;
    (gateway, idp)
}

/// Holds the message log's table, so that the writer's insert waits, until
/// the transaction is rolled back. (Reading the log waits too meanwhile.)
async fn hold_the_log(gateway: &TestGateway) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut blocker = gateway.pool.begin().await.expect("transaction");
    sqlx::query("LOCK TABLE gateway.message_log IN ACCESS EXCLUSIVE MODE").execute(&mut *blocker).await.expect("lock");
    blocker
}

/// How many of the Diia portal's calls the log holds as served.
async fn served_calls_logged(gateway: &TestGateway) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM gateway.message_log WHERE member_id = $1 AND status_code = 0")
        .bind(DIIA)
        .fetch_one(&gateway.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn calls_are_refused_while_the_log_cannot_be_written_and_served_again_after() {
    let (gateway, mut idp) = gateway_with_a_small_log_queue("refuse").await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(gateway.channel().await);
    let started = Instant::now();
    while serving(&mut health).await != tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
        assert!(started.elapsed() < Duration::from_secs(10), "the gateway never became healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Hold the log table: the writer's insert waits, the queue fills.
    let blocker = hold_the_log(&gateway).await;
    let mut served = 0;
    let refusal = loop {
        match idp.verify_idp_certificate(verify_request()).await {
            Ok(_) => served += 1,
            Err(status) => break status,
        }
        assert!(served < 40, "the queue of 16 never filled");
    };
    assert_eq!(refusal.code(), Code::Unavailable, "{refusal:?}");
    assert!(refusal.message().contains("message log"), "{}", refusal.message());
    assert!(served >= 10, "served {served} before the queue filled");
    // Health says so too, so that a load balancer sends calls elsewhere.
    let started = Instant::now();
    while serving(&mut health).await != tonic_health::pb::health_check_response::ServingStatus::NotServing as i32 {
        assert!(started.elapsed() < Duration::from_secs(10), "health still says serving");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    blocker.rollback().await.expect("unlock");

    let started = Instant::now();
    loop {
        if idp.verify_idp_certificate(verify_request()).await.is_ok() {
            served += 1;
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "calls not served again after the log recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    while serving(&mut health).await != tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
        assert!(started.elapsed() < Duration::from_secs(10), "health does not say serving again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every call served has its entry; none was served unlogged.
    eventually(Duration::from_secs(10), || async {
        let logged = served_calls_logged(&gateway).await;
        assert!(logged <= served, "more entries than calls");
        (logged == served).then_some(()).ok_or(format!("{logged} of {served} served calls logged"))
    })
    .await;
    assert!(verify_chain(&gateway).await.is_intact());
}

/// With `ESOCIAL_GATEWAY_LOG_FAILURE=serve`, calls go on being served while
/// the log cannot be written: those the queue took are logged once it can
/// be written again, the others not at all, and the chain stays intact.
#[tokio::test]
async fn with_the_serve_policy_calls_are_served_while_the_log_cannot_be_written() {
    let (gateway, mut idp) = gateway_with_a_small_log_queue("serve").await;
    idp.verify_idp_certificate(verify_request()).await.expect("served");
    let logged = || served_calls_logged(&gateway);
    eventually(Duration::from_secs(10), || async {
        (logged().await == 1).then_some(()).ok_or_else(|| "the first call's entry is not written".to_owned())
    })
    .await;

    // Hold the log table: the writer's insert waits, the queue fills, and
    // the calls after that are served without an entry.
    let blocker = hold_the_log(&gateway).await;
    let held = 40;
    for call in 0..held {
        let answer = idp.verify_idp_certificate(verify_request()).await;
        assert!(answer.is_ok(), "call {call} with the log held: {answer:?}");
    }
    let mut health = tonic_health::pb::health_client::HealthClient::new(gateway.channel().await);
    assert_eq!(
        serving(&mut health).await,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
        "serving, unlogged"
    );
    blocker.rollback().await.expect("unlock");

    // What the queue took is written; what it could not take is not. A
    // call after that is logged again.
    let written = eventually(Duration::from_secs(10), || async {
        let now = logged().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        (now > 1 && logged().await == now).then_some(now).ok_or(format!("{now} entries, still being written"))
    })
    .await;
    let taken = written - 1;
    assert!(taken >= 16, "the queue's 16 places (and the batch in hand) were taken: {taken}");
    assert!(taken < held, "{taken} of {held} logged: some should have been served unlogged");
    idp.verify_idp_certificate(verify_request()).await.expect("served");
    eventually(Duration::from_secs(10), || async {
        (logged().await == written + 1)
            .then_some(())
            .ok_or_else(|| "the call after the log came back is not logged".to_owned())
    })
    .await;
    assert!(verify_chain(&gateway).await.is_intact());
}

#[tokio::test]
async fn an_entry_changed_and_its_chain_recomputed_without_the_key_is_found_at_that_entry() {
    use esocial_gateway::message_log::{CHAIN_KEY_PURPOSE, MacKey, entry_hash};

    let gateway = gateway_after_calls(6).await;
    gateway.wait_for_log_entries(8).await;
    assert!(verify_chain(&gateway).await.is_intact());

    // Someone with write access to the database but not the gateway's key
    // turns entry 4 into a success and rewrites every hash from there on,
    // with a key of their own, after the last checkpoint too.
    gateway.tamper("DELETE FROM gateway.log_checkpoints", &[]).await;
    gateway
        .tamper(
            "UPDATE gateway.message_log SET status_code = 0, member_id = 'UA/GOV/00032129/other' WHERE sequence = 4",
            &[],
        )
        .await;
    let forger = MacKey::derive(&ed25519_dalek::SigningKey::from_bytes(&[42; 32]), CHAIN_KEY_PURPOSE);
    let rows: Vec<LogRow> = log_rows(&gateway.pool).await.into_iter().filter(|row| row.1 >= 4).collect();
    let after = stored_hash(&gateway.pool, "gateway-1", 3).await;
    rechain(&gateway.pool, &rows, after, |previous, fields| entry_hash(&forger, previous, fields)).await;
    let report = verify_chain(&gateway).await;
    assert_broken_at(&report, 4, &[]);
}

#[tokio::test]
async fn the_end_of_a_chain_removed_with_its_checkpoints_is_found_with_the_event_streams_copy() {
    let gateway = gateway_after_calls(6).await;
    let head = witnessed_head(&gateway).await;
    let report = verify_chain(&gateway).await;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.entries, report.witnessed_through), (head, head));

    // A checkpoint event published by someone without the key is ignored.
    let forged = checkpoint_event(
        &report.node,
        head + 100,
        &[7; 32],
        chrono::Utc::now(),
        &gateway.log_keys.checkpoint_keys[0].key_id,
        &ed25519_dalek::Signature::from_bytes(&[0; 64]),
    );
    gateway.publish_checkpoint(&forged).await;
    let witness = gateway.witness().await;
    assert_eq!(verify::newest_witnessed(&witness, &report.node), Some(head), "the forged event is skipped");
    // The reader of the copies leaves no consumer behind.
    let nats = async_nats::connect(&gateway.events.nats_url).await.expect("nats");
    let stream =
        async_nats::jetstream::new(nats).get_stream(&gateway.events.settings.stream_name).await.expect("stream");
    let mut consumers = stream.consumers();
    while let Some(consumer) = futures_util::StreamExt::next(&mut consumers).await {
        let description = consumer.expect("consumer info").config.description.unwrap_or_default();
        assert!(!description.contains("checkpoints witnessed"), "left behind: {description}");
    }

    // A stored checkpoint the stream's copy disagrees with is reported
    // where it was signed.
    gateway
        .tamper(
            "UPDATE gateway.log_checkpoints SET signed_at = signed_at + interval '1 second' WHERE sequence = $1",
            &[head],
        )
        .await;
    let report = verify_chain(&gateway).await;
    assert_broken_at(&report, head, &["not the one"]);

    // Someone with write access to the database removes the last three
    // entries and every checkpoint: what is left is a whole chain.
    gateway.tamper("DELETE FROM gateway.log_checkpoints", &[]).await;
    gateway.tamper("DELETE FROM gateway.message_log WHERE sequence > $1", &[head - 3]).await;
    let pool = gateway.gateway_pool().await;
    let alone = verify::verify(&pool, &gateway.log_keys, None, None).await.expect("verification runs");
    assert!(alone[0].is_intact(), "the database alone cannot tell: {alone:?}");

    // The stream's copy of the last checkpoint tells.
    let report = verify_chain(&gateway).await;
    assert_broken_at(&report, head - 2, &["removed", "event stream"]);
}

#[tokio::test]
async fn a_chain_cut_back_and_continued_with_the_key_is_found_at_the_stream_s_older_checkpoint() {
    use esocial_gateway::message_log::entry_hash;

    let gateway = gateway_after_calls(6).await;
    let cut_at = witnessed_head(&gateway).await;
    let report = verify_chain(&gateway).await;
    assert!(report.is_intact(), "{report:?}");

    // What a gateway started again on a database cut back to before that
    // checkpoint (three entries, or to the stream's checkpoint before it)
    // would leave: other entries under the same numbers and one more,
    // chained and signed with its own key.
    let earlier = gateway
        .witness()
        .await
        .get(&report.node)
        .and_then(|checkpoints| checkpoints.range(..cut_at).next_back().map(|(sequence, _)| *sequence))
        .unwrap_or(0);
    let kept = earlier.max(cut_at - 3);
    let key = gateway.signing_key();
    gateway.tamper("DELETE FROM gateway.log_checkpoints WHERE sequence > $1", &[kept]).await;
    gateway
        .tamper(
            "UPDATE gateway.message_log SET status_code = 14, duration_us = duration_us + 1 WHERE sequence > $1",
            &[kept],
        )
        .await;
    gateway
        .tamper(
            "INSERT INTO gateway.message_log (node, sequence, request_id, member_id, caller, method, direction,
                                              started_at, duration_us, status_code, request_bytes, response_bytes,
                                              request_sha256, response_sha256, hash)
             SELECT node, sequence + 1, request_id, member_id, caller, method, direction, started_at, duration_us,
                    status_code, request_bytes, response_bytes, request_sha256, response_sha256, hash
             FROM gateway.message_log WHERE sequence = $1",
            &[cut_at],
        )
        .await;
    let rows: Vec<LogRow> = log_rows(&gateway.pool).await.into_iter().filter(|row| row.1 > kept).collect();
    let before = stored_hash(&gateway.pool, "gateway-1", kept).await;
    let chain_key = key.chain_key();
    rechain(&gateway.pool, &rows, before, |previous, fields| entry_hash(&chain_key, previous, fields)).await;
    let head = cut_at + 1;
    let hash = stored_hash(&gateway.pool, "gateway-1", head).await;
    let node = report.node.clone();
    let (signed_at, signature) = store_checkpoint(&gateway.pool, &key, &node, head, &hash).await;
    let event = checkpoint_event(&node, head, &hash, signed_at, &key.key_id, &signature);
    gateway.publish_checkpoint(&event).await;

    // The database alone, and the stream's newest checkpoint, agree with it.
    let pool = gateway.gateway_pool().await;
    let alone = verify::verify(&pool, &gateway.log_keys, None, None).await.expect("verification runs");
    assert!(alone[0].is_intact(), "the database alone cannot tell: {alone:?}");
    let witness = gateway.witness().await;
    assert_eq!(verify::newest_witnessed(&witness, &node), Some(head));
    // The stream's checkpoint of the entries cut away does not.
    let report = verify_chain(&gateway).await;
    assert_broken_at(&report, cut_at, &["rewritten", "event stream"]);
    assert_eq!(report.witnessed_through, head, "{report:?}");
}

#[tokio::test]
async fn of_several_things_wrong_the_one_at_the_lowest_entry_is_reported() {
    let gateway = gateway_after_calls(6).await;
    gateway.wait_for_log_entries(8).await;
    // A checkpoint far beyond the chain, signed with no key the gateway has.
    gateway
        .tamper(
            "INSERT INTO gateway.log_checkpoints (node, sequence, hash, signed_at, key_id, signature)
             SELECT node, 1000000000, hash, now(), 'forged', decode(repeat('00', 64), 'hex') FROM gateway.message_log
             WHERE sequence = 1",
            &[],
        )
        .await;
    let report = verify_chain(&gateway).await;
    assert_broken_at(&report, 1_000_000_000, &["unknown key"]);

    // An entry changed before it is what is reported.
    gateway.tamper("UPDATE gateway.message_log SET duration_us = duration_us + 1 WHERE sequence = 4", &[]).await;
    let report = verify_chain(&gateway).await;
    assert_broken_at(&report, 4, &["altered"]);
}

#[tokio::test]
async fn entries_removed_while_the_writer_reconnects_leave_a_gap_and_are_not_numbered_again() {
    let gateway = gateway_after_calls(6).await;
    gateway.wait_for_log_entries(8).await;
    let head = newest(&gateway.pool, "message_log").await;
    // Someone with write access to the database removes the last three
    // entries (and any checkpoint of them) and ends the writer's connection.
    gateway.tamper("DELETE FROM gateway.log_checkpoints WHERE sequence > $1", &[head - 3]).await;
    gateway.tamper("DELETE FROM gateway.message_log WHERE sequence > $1", &[head - 3]).await;
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = 'esocial-gateway-log' AND datname = current_database()",
    )
    .fetch_all(&gateway.pool)
    .await
    .expect("writer's connection ended");
    assert_eq!(ended, [true], "one writer connection");

    // The next calls' entries come after the ones removed.
    let mut idp = gateway.idp(Some(gateway.system_token("diia").await)).await;
    for _ in 0..2 {
        idp.verify_idp_certificate(verify_request()).await.expect("forwarded");
    }
    eventually(Duration::from_secs(20), || async {
        let newest = newest(&gateway.pool, "message_log").await;
        (newest >= head + 2).then_some(()).ok_or(format!("the log ends at entry {newest}"))
    })
    .await;
    let pool = gateway.gateway_pool().await;
    let alone = verify::verify(&pool, &gateway.log_keys, None, None).await.expect("verification runs");
    assert_broken_at(&alone[0], head - 2, &[&format!("entries {} to {head} are missing", head - 2)]);
}

#[tokio::test]
async fn a_search_with_bodies_pages_before_the_response_would_pass_the_size_limit() {
    // Half of a 64 KiB response limit is left for bodies.
    let gateway = TestGateway::spawn_with(&[("ESOCIAL_GRPC_MESSAGE_BYTES_MAX", "65536")]).await;
    gateway.register_member(DIIA, "diia", None, &[VERIFY_CERTIFICATE]).await;
    log_in_full(&gateway, DIIA).await;
    let mut idp = gateway.idp(Some(gateway.system_token("diia").await)).await;
    // Eight requests of about 10 kB each (the registry refuses the code;
    // the gateway logs the exchange all the same).
    let long = registry_pb::VerifyIdpCertificateRequest { code: "1".repeat(10_000) };
    for _ in 0..8 {
        idp.verify_idp_certificate(long.clone()).await.expect_err("not a certificate code");
    }
    // Then two of 40 kB: each passes the bodies' share of a page alone.
    let longer = registry_pb::VerifyIdpCertificateRequest { code: "1".repeat(40_000) };
    for _ in 0..2 {
        idp.verify_idp_certificate(longer.clone()).await.expect_err("not a certificate code");
    }
    let pool = gateway.pool.clone();
    eventually(Duration::from_secs(20), || {
        let pool = pool.clone();
        async move {
            let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM gateway.message_log WHERE member_id = $1")
                .bind(DIIA)
                .fetch_one(&pool)
                .await
                .expect("log");
            (logged == 10).then_some(()).ok_or(format!("{logged} of 10 logged"))
        }
    })
    .await;

    let mut log = gateway.auditor().await;
    let request =
        pb::SearchMessageLogRequest { member_id: DIIA.to_owned(), include_bodies: true, ..Default::default() };
    let pages = every_page(&mut log, request, 100).await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [3, 3, 2, 1, 1], "about 30 kB of bodies a page, and one that passes it alone");
    let entries: Vec<pb::LogEntry> = pages.into_iter().flatten().collect();
    let (frame, longer_frame) = (grpc_frame(&long), grpc_frame(&longer));
    for (position, entry) in entries.iter().enumerate() {
        let expected = if position < 8 { &frame } else { &longer_frame };
        assert_eq!(&entry.request_body, expected, "entry {position}");
        assert_eq!(hex(&Sha256::digest(&entry.response_body)), entry.response_sha256, "entry {position}");
    }
    let sequences: Vec<i64> = entries.iter().map(|entry| entry.sequence).collect();
    let mut sorted = sequences.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, sequences, "each entry once, in order");
}

#[tokio::test]
async fn a_stored_body_removed_is_found_at_its_entry() {
    let gateway = TestGateway::spawn().await;
    gateway.register_member(DIIA, "diia", None, &[VERIFY_CERTIFICATE]).await;
    log_in_full(&gateway, DIIA).await;
    let mut idp = gateway.idp(Some(gateway.system_token("diia").await)).await;
    for _ in 0..3 {
        idp.verify_idp_certificate(verify_request()).await.expect("forwarded");
    }
    let pool = gateway.pool.clone();
    let with_bodies: Vec<i64> = eventually(Duration::from_secs(20), || {
        let pool = pool.clone();
        async move {
            let sequences: Vec<i64> = sqlx::query_scalar(
                "SELECT sequence FROM gateway.message_log
                 WHERE member_id = $1 AND request_body IS NOT NULL AND response_body IS NOT NULL ORDER BY sequence",
            )
            .bind(DIIA)
            .fetch_all(&pool)
            .await
            .expect("log");
            (sequences.len() == 3).then_some(sequences.clone()).ok_or(format!("{sequences:?}"))
        }
    })
    .await;
    assert!(verify_chain(&gateway).await.is_intact());

    // The digest stays, so only the removal of the evidence itself shows.
    gateway.tamper("UPDATE gateway.message_log SET response_body = NULL WHERE sequence = $1", &[with_bodies[1]]).await;
    let report = verify_chain(&gateway).await;
    assert_broken_at(&report, with_bodies[1], &["altered"]);
}

#[tokio::test]
async fn entries_written_in_the_earlier_hash_form_still_verify_and_an_altered_one_is_found() {
    use esocial_gateway::message_log::{GENESIS, entry_hash_v1};

    let gateway = gateway_after_calls(3).await;
    gateway.wait_for_log_entries(5).await;
    // The chain as a gateway wrote it before 2026-12-04: the same key, the
    // hash without whether bodies are stored (none are here).
    gateway.tamper("DELETE FROM gateway.log_checkpoints", &[]).await;
    let rows = log_rows(&gateway.pool).await;
    let key = &gateway.log_keys.chain_keys[0];
    rechain(&gateway.pool, &rows, GENESIS, |previous, fields| entry_hash_v1(key, previous, fields)).await;
    let pool = gateway.gateway_pool().await;
    let verify_without_witness = async || {
        let reports = verify::verify(&pool, &gateway.log_keys, None, None).await.expect("verification runs");
        reports.into_iter().next().expect("one chain")
    };
    let report = verify_without_witness().await;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.entries, i64::try_from(rows.len()).expect("count"));

    gateway.tamper("UPDATE gateway.message_log SET status_code = 7 WHERE sequence = 2", &[]).await;
    let report = verify_without_witness().await;
    assert_broken_at(&report, 2, &[]);
}

#[tokio::test]
async fn a_chain_written_with_a_replaced_key_verifies_with_that_key_trusted_and_does_not_go_on_with_another() {
    use esocial_gateway::message_log::entry_hash;

    let gateway = gateway_after_calls(6).await;
    let head = witnessed_head(&gateway).await;
    // The gateway's key is replaced (a new one starts a new chain under a
    // new node name): the chain written so far was keyed with the old one.
    let files = esocial_testkit::TempDir::new("replacing-key").expect("temporary directory");
    let path = files.path().join("new-signing-key.pem");
    assert!(esocial_gateway::ensure_signing_key(&path).expect("a new key"), "a new key file");
    let current = esocial_gateway::read_signing_key(&path).expect("the new key");
    let current_chain_key = current.chain_key();
    let pool = gateway.gateway_pool().await;
    let copies = gateway.checkpoint_copies().await;
    let verify_with = async |keys: &verify::LogKeys, witnessed: bool| {
        let witness = if witnessed { Some(copies.read(keys).await.expect("the stream's checkpoints")) } else { None };
        let reports = verify::verify(&pool, keys, None, witness.as_ref()).await.expect("verification runs");
        assert_eq!(reports.len(), 1, "one node, one chain: {reports:?}");
        reports.into_iter().next().expect("one chain")
    };

    // With the new key alone, nothing of the chain verifies.
    let report = verify_with(&verify::LogKeys::of(&current), true).await;
    assert_broken_at(&report, 1, &["altered"]);

    // With the key it replaced trusted too (after it, as `verify-log
    // --earlier-key` puts it), the chain verifies through the stream's
    // newest checkpoint.
    let both = verify::LogKeys::of(&current).trusting(&gateway.signing_key());
    let report = verify_with(&both, true).await;
    assert!(report.is_intact(), "{report:?}");
    assert!(report.signed_through >= head && report.witnessed_through >= head, "{report:?}");

    // Whoever holds the new key cannot rewrite the old chain with it: the
    // first entry decides the key, and the second does not verify with it.
    // (Without the checkpoints, the database holds nothing else to tell.)
    gateway.tamper("DELETE FROM gateway.log_checkpoints", &[]).await;
    let first = stored_hash(&gateway.pool, "gateway-1", 1).await;
    let rows: Vec<LogRow> = log_rows(&gateway.pool).await.into_iter().filter(|row| row.1 >= 2).collect();
    rechain(&gateway.pool, &rows, first, |previous, fields| entry_hash(&current_chain_key, previous, fields)).await;
    let report = verify_with(&both, false).await;
    assert_broken_at(&report, 2, &["altered"]);
}

#[tokio::test]
async fn the_auditors_verification_trusts_the_earlier_keys_configured_for_the_chains_they_wrote() {
    use esocial_gateway::message_log::{GENESIS, entry_hash};

    // A key this gateway's key replaced; the node that used it was
    // gateway-0.
    let files = esocial_testkit::TempDir::new("earlier-key").expect("temporary directory");
    let earlier_path = files.path().join("earlier-signing-key.pem");
    esocial_gateway::ensure_signing_key(&earlier_path).expect("an earlier key");
    let earlier = esocial_gateway::read_signing_key(&earlier_path).expect("the earlier key");
    let earlier_files = format!(" {}, ", earlier_path.display());
    let gateway =
        gateway_after_calls_with(&[("ESOCIAL_GATEWAY_EARLIER_SIGNING_KEY_FILES", earlier_files.as_str())], 3).await;
    gateway.wait_for_log_entries(4).await;

    // gateway-0's chain: four entries keyed with the earlier key, the last
    // signed with it.
    gateway
        .tamper(
            "INSERT INTO gateway.message_log (node, sequence, request_id, member_id, caller, method, direction,
                                              started_at, duration_us, status_code, request_bytes, response_bytes,
                                              request_sha256, response_sha256, hash)
             SELECT 'gateway-0', sequence, request_id, member_id, caller, method, direction, started_at, duration_us,
                    status_code, request_bytes, response_bytes, request_sha256, response_sha256, hash
             FROM gateway.message_log WHERE node = 'gateway-1' AND sequence <= $1",
            &[4],
        )
        .await;
    let rows: Vec<LogRow> = log_rows(&gateway.pool).await.into_iter().filter(|row| row.0 == "gateway-0").collect();
    assert_eq!(rows.len(), 4);
    let chain_key = earlier.chain_key();
    rechain(&gateway.pool, &rows, GENESIS, |previous, fields| entry_hash(&chain_key, previous, fields)).await;
    let head = stored_hash(&gateway.pool, "gateway-0", 4).await;
    store_checkpoint(&gateway.pool, &earlier, "gateway-0", 4, &head).await;

    // The auditor's verification finds both chains intact.
    let chains = gateway
        .auditor()
        .await
        .verify_message_log(pb::VerifyMessageLogRequest::default())
        .await
        .expect("verify")
        .into_inner()
        .chains;
    let by_node: std::collections::BTreeMap<&str, &pb::ChainReport> =
        chains.iter().map(|chain| (chain.node.as_str(), chain)).collect();
    assert_eq!(by_node.keys().copied().collect::<Vec<_>>(), ["gateway-0", "gateway-1"], "{chains:?}");
    let earlier_chain = by_node["gateway-0"];
    assert!(
        earlier_chain.intact && earlier_chain.entries == 4 && earlier_chain.signed_through_sequence == 4,
        "{chains:?}"
    );
    assert!(by_node["gateway-1"].intact, "{chains:?}");

    // Trusting the current key alone, gateway-0's chain is not one of ours.
    let pool = gateway.gateway_pool().await;
    let current = verify::LogKeys::of(&gateway.signing_key());
    let reports = verify::verify(&pool, &current, Some("gateway-0"), None).await.expect("verification runs");
    assert_broken_at(&reports[0], 1, &["altered"]);
}

#[tokio::test]
async fn a_writer_with_another_key_does_not_go_on_with_the_chain_of_its_node() {
    use esocial_gateway::message_log::{FailurePolicy, WriterSettings, message_log};

    let mut gateway = gateway_after_calls(6).await;
    let head = witnessed_head(&gateway).await;
    // The gateway stops: its writer lets go of the node, after a last
    // checkpoint signed with its key.
    gateway.stop().await;
    let pool = gateway.gateway_pool().await;
    let options = pool.connect_options().as_ref().clone();
    let settings = WriterSettings {
        node: "gateway-1".to_owned(),
        queue_capacity: 16,
        batch_size_max: 4,
        batch_linger: Duration::from_millis(5),
        checkpoint_interval: Duration::from_secs(60),
        checkpoint_entries: 1_000,
    };

    // Started again with a new key but the same node name, the writer does
    // not take entries (so calls are refused), rather than key the next
    // entries with the new key and break the chain there.
    let files = esocial_testkit::TempDir::new("other-key").expect("temporary directory");
    let path = files.path().join("other-signing-key.pem");
    assert!(esocial_gateway::ensure_signing_key(&path).expect("a new key"), "a new key file");
    let other = esocial_gateway::read_signing_key(&path).expect("the new key");
    let (log, writer) =
        message_log(options.clone(), settings.clone(), std::sync::Arc::new(other), FailurePolicy::Refuse);
    let writing = tokio::spawn(writer.run(std::future::pending()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!log.accepts_calls(), "a writer with another key took the chain on");
    assert!(log.slot(false).is_err(), "a call would be served");
    writing.abort();

    // With the key the chain was written with, a writer goes on from it.
    let (log, writer) =
        message_log(options, settings, std::sync::Arc::new(gateway.signing_key()), FailurePolicy::Refuse);
    let writing = tokio::spawn(writer.run(std::future::pending()));
    eventually(Duration::from_secs(10), || async {
        log.accepts_calls().then_some(()).ok_or_else(|| "the writer with the chain's key never took entries".to_owned())
    })
    .await;
    writing.abort();
    let reports = verify::verify(&pool, &gateway.log_keys, None, None).await.expect("verification runs");
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(reports[0].is_intact(), "{reports:?}");
    assert_eq!(reports[0].entries, head, "{reports:?}");
}

/// An entry as a test writes it straight into a writer's queue.
fn test_entry(request_id: &str) -> esocial_gateway::message_log::LogEntry {
    esocial_gateway::message_log::LogEntry {
        request_id: request_id.to_owned(),
        member_id: DIIA.to_owned(),
        caller: "diia".to_owned(),
        method: VERIFY_CERTIFICATE.to_owned(),
        direction: esocial_gateway::message_log::Direction::Inbound,
        started_at: chrono::Utc::now(),
        duration_us: 1,
        status_code: 0,
        request_bytes: 0,
        response_bytes: 0,
        request_sha256: Sha256::digest(b"").to_vec(),
        response_sha256: Sha256::digest(b"").to_vec(),
        request_body: None,
        response_body: None,
    }
}

/// A writer of a chain of its own (`node`), with a queue of
/// `queue_capacity` places, taking entries; stopped by the sender.
struct OwnWriter {
    pool: sqlx::PgPool,
    log: esocial_gateway::message_log::MessageLog,
    stop: tokio::sync::oneshot::Sender<()>,
    writing: tokio::task::JoinHandle<()>,
}

async fn own_writer(gateway: &TestGateway, node: &str, queue_capacity: usize) -> OwnWriter {
    use esocial_gateway::message_log::{FailurePolicy, WriterSettings, message_log};

    let pool = gateway.gateway_pool().await;
    let settings = WriterSettings {
        node: node.to_owned(),
        queue_capacity,
        batch_size_max: 4,
        batch_linger: Duration::from_millis(5),
        checkpoint_interval: Duration::from_secs(60),
        checkpoint_entries: 1_000,
    };
    let options = pool.connect_options().as_ref().clone();
    let (log, writer) =
        message_log(options, settings, std::sync::Arc::new(gateway.signing_key()), FailurePolicy::Refuse);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let writing = tokio::spawn(writer.run(async move {
        let _ = stopped.await;
    }));
    eventually(Duration::from_secs(10), || async {
        log.accepts_calls().then_some(()).ok_or_else(|| "the writer never took entries".to_owned())
    })
    .await;
    OwnWriter { pool, log, stop, writing }
}

#[tokio::test]
async fn the_entry_of_a_stream_that_waits_for_room_when_the_gateway_stops_is_written() {
    use esocial_gateway::message_log::{DRAIN_TIMEOUT, Reservation};

    let gateway = TestGateway::spawn().await;
    // A writer of a chain of its own, with a queue of one place.
    let node = "streams-at-shutdown";
    let OwnWriter { pool, log, stop, writing } = own_writer(&gateway, node, 1).await;

    // A stream starts (it holds no place while it streams), and a unary
    // call takes the queue's one place.
    let stream = log.slot(true).expect("a stream is served");
    let call = log.slot(false).expect("a call is served");
    // The stream ends with the queue full, on a serving thread whose
    // runtime ends with the server: its entry waits for room all the same.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async move { stream.send(test_entry("the stream"), Reservation::default()) });
    })
    .join()
    .expect("the serving thread");
    // The gateway stops while the call still runs; the writer sees it
    // before the call ends.
    stop.send(()).expect("the writer waits for the stop");
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.send(test_entry("the call"), Reservation::default());
    tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(5), writing)
        .await
        .expect("the writer stops")
        .expect("the writer ran to its end");

    // Both entries are written, the stream's after the call's, which
    // held the place it waited for; the last checkpoint signs both.
    let written: Vec<String> =
        sqlx::query_scalar("SELECT request_id FROM message_log WHERE node = $1 ORDER BY sequence")
            .bind(node)
            .fetch_all(&pool)
            .await
            .expect("entries read");
    assert_eq!(written, ["the call", "the stream"]);
    let reports = verify::verify(&pool, &gateway.log_keys, Some(node), None).await.expect("verification runs");
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(reports[0].is_intact(), "{reports:?}");
    assert_eq!((reports[0].entries, reports[0].signed_through), (2, 2), "{reports:?}");
}

/// Writes an entry of another node, as a gateway would, within `executor`'s
/// transaction: started at `started_at`.
async fn write_late_entry<'c>(
    executor: impl sqlx::PgExecutor<'c>,
    sequence: i64,
    request_id: &str,
    started_at: chrono::DateTime<chrono::Utc>,
) {
    write_entry(executor, sequence, request_id, DIIA, VERIFY_CERTIFICATE, started_at).await;
}

/// Writes an entry of another node (`gateway-late`), a batch of its own.
async fn write_entry<'c>(
    executor: impl sqlx::PgExecutor<'c>,
    sequence: i64,
    request_id: &str,
    member: &str,
    method: &str,
    started_at: chrono::DateTime<chrono::Utc>,
) {
    sqlx::query(
        "INSERT INTO gateway.message_log (node, sequence, request_id, member_id, caller, method, direction,
                                          started_at, duration_us, status_code, request_bytes, response_bytes,
                                          request_sha256, response_sha256, hash)
         VALUES ('gateway-late', $1, $2, $3, 'client:diia', $4, 'inbound', $5, 1000, 0, 0, 0, '', '', $6)",
    )
    .bind(sequence)
    .bind(request_id)
    .bind(member)
    .bind(method)
    .bind(started_at)
    .bind([7u8; 32].as_slice())
    .execute(executor)
    .await
    .expect("entry written");
}

#[tokio::test]
async fn the_pages_of_a_search_show_the_log_as_it_stood_at_the_first_page() {
    use base64::Engine as _;
    use esocial_proto::common::v1::PageRequest;

    let gateway = gateway_after_calls(3).await;
    let calls: Vec<(String, i64, chrono::DateTime<chrono::Utc>)> = eventually(Duration::from_secs(10), || async {
        let calls: Vec<(String, i64, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
            "SELECT node, sequence, started_at FROM gateway.message_log WHERE member_id = $1 ORDER BY started_at",
        )
        .bind(DIIA)
        .fetch_all(&gateway.pool)
        .await
        .expect("entries");
        (calls.len() == 3).then_some(calls.clone()).ok_or(format!("{calls:?}"))
    })
    .await;
    let started: Vec<_> = calls.iter().map(|call| call.2).collect();
    let entry = |index: usize| (calls[index].0.clone(), calls[index].1);
    let mut log = gateway.auditor().await;
    let asked = |page_size: u32, page_token: String| pb::SearchMessageLogRequest {
        member_id: DIIA.to_owned(),
        page: Some(PageRequest { page_size, page_token }),
        ..Default::default()
    };
    let carried = |entries: &[pb::LogEntry]| -> Vec<(String, i64)> {
        entries.iter().map(|entry| (entry.node.clone(), entry.sequence)).collect()
    };

    // Calls of another node, all started between the second and the third
    // (after where the first page ends): one is being written while the
    // first page is read, one is written after it, and one after it as an
    // entry written before searches had snapshots (none of its own).
    let between = |quarters: i32| started[1] + (started[2] - started[1]) * quarters / 4;
    let mut writing = gateway.pool.begin().await.expect("transaction");
    write_late_entry(&mut *writing, 1, "running", between(1)).await;
    let first = log.search_message_log(asked(2, String::new())).await.expect("first page").into_inner();
    writing.commit().await.expect("written");
    write_late_entry(&gateway.pool, 2, "written-after", between(2)).await;
    let mut old_form = gateway.pool.begin().await.expect("transaction");
    write_late_entry(&mut *old_form, 3, "before-snapshots", between(3)).await;
    sqlx::query("UPDATE gateway.message_log SET written_by = NULL WHERE request_id = 'before-snapshots'")
        .execute(&mut *old_form)
        .await
        .expect("no transaction of its own");
    old_form.commit().await.expect("written");
    let next = first.page.as_ref().expect("page").next_page_token.clone();
    let second = log.search_message_log(asked(2, next)).await.expect("second page").into_inner();

    // The pages hold the entries there were at the first page: neither the
    // one still being written then nor the one written after (before, the
    // second page held both), and the one without a transaction.
    assert_eq!(carried(&first.entries), [entry(0), entry(1)]);
    assert_eq!(carried(&second.entries), [("gateway-late".to_owned(), 3), entry(2)]);
    assert!(second.page.expect("page").next_page_token.is_empty(), "the last page");

    // A new search shows all six in the order they started.
    let again = log.search_message_log(asked(10, String::new())).await.expect("a new search").into_inner();
    let ids: Vec<&str> = again.entries.iter().map(|entry| entry.request_id.as_str()).collect();
    assert_eq!(ids.len(), 6, "{ids:?}");
    assert_eq!(ids[2..5], ["running", "written-after", "before-snapshots"], "{ids:?}");

    // A page token of the form before (no snapshot) is refused.
    let old = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("after:{}:1:gateway-1", started[0].timestamp_micros()));
    let refused = log.search_message_log(asked(2, old)).await.expect_err("an old page token");
    assert_eq!(violated_fields(&refused), ["page.page_token"]);
}

/// The entries of every page of `request`, `page_size` a page, page by page.
async fn every_page(log: &mut Log, request: pb::SearchMessageLogRequest, page_size: u32) -> Vec<Vec<pb::LogEntry>> {
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let asked = pb::SearchMessageLogRequest {
            page: Some(esocial_proto::common::v1::PageRequest { page_size, page_token }),
            ..request.clone()
        };
        let response = log.search_message_log(asked).await.expect("a page").into_inner();
        pages.push(response.entries);
        page_token = response.page.expect("page").next_page_token;
        if page_token.is_empty() {
            return pages;
        }
    }
}

/// Makes the entries `first` to `last` of node `gateway-late` one batch, as
/// one insert of the writer's would have.
async fn one_batch(pool: &sqlx::PgPool, first: i64, last: i64) {
    let mut transaction = pool.begin().await.expect("transaction");
    let entries: String = sqlx::query_scalar(
        "SELECT json_agg(e ORDER BY (e ->> 'sequence')::bigint)::text
         FROM gateway.message_log_batches b, json_array_elements(b.entries::json) e
         WHERE node = 'gateway-late' AND first_sequence BETWEEN $1 AND $2",
    )
    .bind(first)
    .bind(last)
    .fetch_one(&mut *transaction)
    .await
    .expect("entries");
    sqlx::query(
        "DELETE FROM gateway.message_log_batches WHERE node = 'gateway-late' AND first_sequence BETWEEN $1 AND $2",
    )
    .bind(first)
    .bind(last)
    .execute(&mut *transaction)
    .await
    .expect("batches removed");
    sqlx::query("SELECT gateway.tamper_rewrite('gateway-late', $1, $2::json, pg_current_xact_id())")
        .bind(first)
        .bind(entries)
        .execute(&mut *transaction)
        .await
        .expect("one batch");
    transaction.commit().await.expect("written");
}

#[tokio::test]
async fn a_search_finds_entries_in_the_order_they_started_whichever_batches_hold_them() {
    const GET_PERSON: &str = "/esocial.registry.v1.RegistryService/GetPerson";
    let gateway = gateway_after_calls(0).await;
    let base = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() - 3600, 0).expect("an hour ago");
    // Twelve of the member's calls, each entry a batch of its own, written
    // in the reverse order of their starts (as a long call's entry comes
    // after those of calls that started later).
    for sequence in 1..=12 {
        let started = base - chrono::TimeDelta::seconds(sequence);
        write_late_entry(&gateway.pool, sequence, &format!("call-{sequence:02}"), started).await;
    }
    // Then five batches that name both the member and the method, though
    // none of their entries has both, and last an entry that has.
    for pair in 0..5 {
        let first = 13 + 2 * pair;
        let started = base + chrono::TimeDelta::seconds(10 + pair);
        write_entry(&gateway.pool, first, &format!("decoy-{first}"), DIIA, GET_PERSON, started).await;
        write_entry(
            &gateway.pool,
            first + 1,
            &format!("decoy-{}", first + 1),
            "UA/GOV/00000001/other",
            VERIFY_CERTIFICATE,
            started,
        )
        .await;
        one_batch(&gateway.pool, first, first + 1).await;
    }
    write_late_entry(&gateway.pool, 23, "late-23", base + chrono::TimeDelta::seconds(100)).await;

    let log = gateway.auditor().await;
    let search = |from: Option<chrono::DateTime<chrono::Utc>>| {
        let mut log = log.clone();
        async move {
            let request = pb::SearchMessageLogRequest {
                member_id: DIIA.to_owned(),
                method: VERIFY_CERTIFICATE.to_owned(),
                from: from.map(|from| prost_types::Timestamp { seconds: from.timestamp(), nanos: 0 }),
                ..Default::default()
            };
            let pages = every_page(&mut log, request, 5).await;
            pages.into_iter().flatten().map(|entry| entry.request_id).collect::<Vec<_>>()
        }
    };
    // Pages of five, each read from as many batches as it needs.
    let mut expected: Vec<String> = (1..=12).rev().map(|sequence| format!("call-{sequence:02}")).collect();
    expected.push("late-23".to_owned());
    assert_eq!(search(None).await, expected);
    // The batches read first hold nothing that matches: more are read.
    assert_eq!(search(Some(base)).await, ["late-23"]);
}

#[tokio::test]
async fn each_answer_of_a_search_is_recorded_with_the_entries_it_carried_and_one_not_recorded_is_not_sent() {
    use esocial_proto::common::v1::PageRequest;

    let gateway = gateway_after_calls(3).await;
    eventually(Duration::from_secs(10), || async {
        let written: i64 = sqlx::query_scalar("SELECT count(*) FROM gateway.message_log WHERE member_id = $1")
            .bind(DIIA)
            .fetch_one(&gateway.pool)
            .await
            .expect("count");
        (written >= 3).then_some(()).ok_or(format!("{written} of the member's 3 entries written"))
    })
    .await;
    let mut log = gateway.auditor().await;
    let asked = |page_token: String| pb::SearchMessageLogRequest {
        member_id: DIIA.to_owned(),
        page: Some(PageRequest { page_size: 2, page_token }),
        ..Default::default()
    };
    let first = log.search_message_log(asked(String::new())).await.expect("first page").into_inner();
    let next = first.page.as_ref().expect("page").next_page_token.clone();
    assert!(!next.is_empty(), "a second page");
    let second = log.search_message_log(asked(next.clone())).await.expect("second page").into_inner();
    assert_eq!((first.entries.len(), second.entries.len()), (2, 1));

    // Each answer is on record: who asked, what, and which entries it
    // carried, in its order.
    let carried = |entries: &[pb::LogEntry]| -> Vec<pb::LogEntryRef> {
        entries.iter().map(|entry| pb::LogEntryRef { node: entry.node.clone(), sequence: entry.sequence }).collect()
    };
    let recorded = |log: &mut Log| {
        let mut log = log.clone();
        async move {
            log.list_log_searches(pb::ListLogSearchesRequest { searched_by: PERSON_ACCOUNT.to_owned(), page: None })
                .await
                .expect("the searches")
                .into_inner()
                .searches
        }
    };
    let searches = recorded(&mut log).await;
    assert_eq!(searches.len(), 2, "{searches:?}");
    for (search, (answer, page_token)) in searches.iter().zip([(&first, String::new()), (&second, next)]) {
        let searched_by = search.searched_by.as_ref().expect("who searched");
        assert_eq!(searched_by.subject, PERSON_ACCOUNT);
        let request = search.request.as_ref().expect("what was asked");
        assert_eq!(request.member_id, DIIA);
        assert!(!request.include_bodies);
        assert_eq!(request.page.as_ref().map(|page| page.page_token.clone()), Some(page_token));
        assert_eq!(search.entries, carried(&answer.entries));
        assert!(search.searched_at.is_some());
    }

    // Bad input names its field.
    let bad = log
        .list_log_searches(pb::ListLogSearchesRequest { searched_by: "a\0b".to_owned(), page: None })
        .await
        .expect_err("a control character");
    assert_eq!(violated_fields(&bad), ["searched_by"]);
    let bad = log
        .search_message_log(pb::SearchMessageLogRequest { request_id: "x".repeat(300), ..Default::default() })
        .await
        .expect_err("too long");
    assert_eq!(violated_fields(&bad), ["request_id"]);

    // Only auditors and security administrators read it; it is not changed.
    let mut member_log =
        esocial_proto::gateway::v1::message_log_service_client::MessageLogServiceClient::with_interceptor(
            gateway.channel().await,
            BearerToken(Some(gateway.system_token("diia").await)),
        );
    let refused = member_log
        .list_log_searches(pb::ListLogSearchesRequest::default())
        .await
        .expect_err("a member system is not an auditor");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let changed =
        sqlx::query("UPDATE gateway.log_searches SET searched_by = 'someone else'").execute(&gateway.pool).await;
    assert!(changed.is_err(), "the record of searches is append-only");

    // While no record can be written, a search is not answered.
    sqlx::query("ALTER TABLE gateway.log_searches ADD CONSTRAINT refuse_every_row CHECK (false) NOT VALID")
        .execute(&gateway.pool)
        .await
        .expect("records refused");
    let unrecorded = log.search_message_log(asked(String::new())).await.expect_err("not recorded, not answered");
    assert_eq!(unrecorded.code(), Code::Unavailable, "{unrecorded:?}");
    sqlx::query("ALTER TABLE gateway.log_searches DROP CONSTRAINT refuse_every_row")
        .execute(&gateway.pool)
        .await
        .expect("records taken again");
    log.search_message_log(asked(String::new())).await.expect("answered once recorded");
    assert_eq!(recorded(&mut log).await.len(), 3, "the refused search is not on record, the next is");
}

#[tokio::test]
async fn at_the_end_of_its_drain_time_the_writer_stops_taking_entries_whatever_is_still_to_come() {
    use esocial_gateway::message_log::{DRAIN_TIMEOUT, Reservation};

    let gateway = TestGateway::spawn().await;
    let node = "drain-deadline";
    let OwnWriter { pool, log, stop, writing } = own_writer(&gateway, node, 16).await;

    // A stream that never ends keeps the queue open at shutdown, and calls
    // on connections the server has not closed yet keep it full.
    let _endless = log.slot(true).expect("a stream is served");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = tokio::spawn({
        let (log, done) = (log.clone(), done.clone());
        async move {
            let mut served = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(slot) = log.slot(false) {
                    slot.send(test_entry(&format!("call {served}")), Reservation::default());
                    served += 1;
                }
                tokio::task::yield_now().await;
            }
            served
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = Instant::now();
    stop.send(()).expect("the writer waits for the stop");

    // At the end of its drain time the writer refuses them, writes what was
    // queued and stops.
    tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(5), writing)
        .await
        .expect("the writer stops after its drain time")
        .expect("the writer ran to its end");
    assert!(stopping.elapsed() >= DRAIN_TIMEOUT, "it waited its drain time for the stream");
    assert!(log.slot(false).is_err(), "a call is refused once the writer stopped");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let served = calls.await.expect("the calls' task");
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM message_log WHERE node = $1")
        .bind(node)
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(written, served, "every call served has its entry");
}

/// The verification reads the batches a page at a time and the next page
/// while it checks one: a chain over many pages verifies whole, and what
/// is wrong on a later page is found where it is.
#[tokio::test]
async fn a_chain_over_many_pages_of_batches_verifies_and_a_change_or_a_gap_on_a_later_page_is_found() {
    use esocial_gateway::message_log::Reservation;

    let gateway = TestGateway::spawn().await;
    let node = "many-pages";
    let OwnWriter { pool, log, stop, writing } = own_writer(&gateway, node, 16).await;
    // Batches of at most 4 entries: 200 entries make at least 50, more than
    // three pages of the verification's 16.
    const ENTRIES: i64 = 200;
    let mut sent = 0;
    while sent < ENTRIES {
        match log.slot(false) {
            Ok(slot) => {
                // One with what JSON escapes, which the verifier reads
                // unescaped (the others it borrows as they stand).
                let request_id = if sent == 100 { "call \"100\" \\ \t".to_owned() } else { format!("call {sent}") };
                slot.send(test_entry(&request_id), Reservation::default());
                sent += 1;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    stop.send(()).expect("the writer waits for the stop");
    writing.await.expect("the writer ran to its end");
    let batches: i64 = sqlx::query_scalar("SELECT count(*) FROM message_log_batches WHERE node = $1")
        .bind(node)
        .fetch_one(&pool)
        .await
        .expect("count");
    assert!(batches > 48, "{batches} batches");

    let verified = || async {
        let reports = verify::verify(&pool, &gateway.log_keys, Some(node), None).await.expect("verification runs");
        assert_eq!(reports.len(), 1, "{reports:?}");
        reports.into_iter().next().expect("one chain")
    };
    let report = verified().await;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.entries, report.signed_through), (ENTRIES, ENTRIES), "{report:?}");
    let escaped: String = sqlx::query_scalar("SELECT request_id FROM message_log WHERE node = $1 AND sequence = 101")
        .bind(node)
        .fetch_one(&pool)
        .await
        .expect("entry 101");
    assert_eq!(escaped, "call \"100\" \\ \t");

    // One entry near the end changed, and changed back.
    gateway
        .tamper("UPDATE gateway.message_log SET status_code = 13 WHERE node = 'many-pages' AND sequence = 190", &[])
        .await;
    assert_broken_at(&verified().await, 190, &["altered"]);
    gateway
        .tamper("UPDATE gateway.message_log SET status_code = 0 WHERE node = 'many-pages' AND sequence = 190", &[])
        .await;
    assert!(verified().await.is_intact());

    // A whole batch on the third page removed.
    let (first, last): (i64, i64) = sqlx::query_as(
        "SELECT first_sequence, last_sequence FROM message_log_batches WHERE node = $1
         ORDER BY first_sequence OFFSET 40 LIMIT 1",
    )
    .bind(node)
    .fetch_one(&pool)
    .await
    .expect("the 41st batch");
    sqlx::query("DELETE FROM message_log_batches WHERE node = $1 AND first_sequence = $2")
        .bind(node)
        .bind(first)
        .execute(&pool)
        .await
        .expect("removed");
    let missing = if first == last {
        format!("entry {first} is missing")
    } else {
        format!("entries {first} to {last} are missing")
    };
    assert_broken_at(&verified().await, first, &[&missing]);
}

/// The entries a search finds, page by page of `page` (as `SearchMessageLog`
/// goes on after each page's last), as (node, sequence).
async fn searched_pages(
    pool: &sqlx::PgPool,
    filter: &esocial_gateway::message_log::LogFilter,
    page: i64,
    body_bytes_max: usize,
) -> Vec<Vec<esocial_gateway::message_log::StoredEntry>> {
    use esocial_gateway::message_log::{LogCursor, search};

    let mut pages = Vec::new();
    let mut after: Option<LogCursor> = None;
    loop {
        let found = search(pool, filter, after.as_ref(), page, body_bytes_max).await.expect("a search runs");
        let Some(seen) = found.seen else {
            assert!(found.entries.is_empty());
            return pages;
        };
        let last = found.entries.last().expect("a page with a snapshot has entries");
        after = Some(LogCursor {
            started_at_us: last.entry.started_at.timestamp_micros(),
            node: last.node.clone(),
            sequence: last.sequence,
            seen,
        });
        pages.push(found.entries);
    }
}

#[tokio::test]
async fn a_search_over_many_batches_of_two_nodes_finds_page_by_page_what_the_log_s_view_finds() {
    use esocial_gateway::message_log::{LogFilter, Reservation};

    const METHODS: [&str; 4] =
        ["/esocial.a.v1.One/First", "/esocial.a.v1.One/Second", "/esocial.b.v1.Two/First", "/esocial.b.v1.Two/Second"];
    const ENTRIES: i64 = 240;
    let gateway = TestGateway::spawn().await;
    let base = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() - 3600, 0).expect("an hour ago");
    // Entry `i` of either node: one of three members, one of four methods,
    // a start a millisecond after the one before (the same on both nodes,
    // so the node orders them), except each 17th, a long call that started
    // 30 ms earlier (its entry comes in a later batch than calls that
    // started after it); each fifth keeps its request body.
    let entry = |node: &str, i: i64| {
        let mut entry = test_entry(&format!("{node}-{i}"));
        entry.member_id = format!("UA/GOV/0000000{}/member", i % 3);
        entry.method = METHODS[usize::try_from(i * 7 % 4).expect("small")].to_owned();
        let late = if i % 17 == 0 { 30_000 } else { 0 };
        entry.started_at = base + chrono::TimeDelta::microseconds(i * 1_000 - late);
        if i % 5 == 0 {
            let body = format!("body of {node} {i}").repeat(usize::try_from(i % 4 + 1).expect("small"));
            entry.request_bytes = u64::try_from(body.len()).expect("small");
            entry.request_sha256 = Sha256::digest(body.as_bytes()).to_vec();
            entry.request_body = Some(body.into_bytes());
        }
        entry
    };
    for node in ["search-a", "search-b"] {
        let OwnWriter { log, stop, writing, .. } = own_writer(&gateway, node, 16).await;
        let mut sent = 0;
        while sent < ENTRIES {
            match log.slot(false) {
                Ok(slot) => {
                    sent += 1;
                    slot.send(entry(node, sent), Reservation::default());
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
        stop.send(()).expect("the writer waits for the stop");
        writing.await.expect("the writer ran to its end");
    }
    let pool = gateway.gateway_pool().await;
    let batches: i64 =
        sqlx::query_scalar("SELECT count(*) FROM message_log_batches").fetch_one(&pool).await.expect("count");
    // More than a search's first reads (4, 8, 16 and 32 batches) hold.
    assert!(batches >= 120, "{batches} batches");

    let member = "UA/GOV/00000001/member".to_owned();
    let at = |ms: i64| base + chrono::TimeDelta::milliseconds(ms);
    let filters = [
        LogFilter::default(),
        LogFilter { member_id: Some(member.clone()), ..Default::default() },
        LogFilter { member_id: Some(member.clone()), method: Some(METHODS[2].to_owned()), ..Default::default() },
        LogFilter { method: Some("/esocial.a.v1.One/".to_owned()), ..Default::default() },
        LogFilter {
            member_id: Some(member.clone()),
            method: Some("/esocial.b.v1.Two/".to_owned()),
            from: Some(at(40)),
            ..Default::default()
        },
        LogFilter { from: Some(at(100)), to: Some(at(130)), ..Default::default() },
        LogFilter { request_id: Some("search-b-170".to_owned()), ..Default::default() },
        LogFilter { member_id: Some("UA/GOV/00000009/nobody".to_owned()), ..Default::default() },
    ];
    for filter in filters {
        // The view unpacks the batches in PostgreSQL, and orders and
        // filters there.
        let expected: Vec<(String, i64)> = sqlx::query_as(
            "SELECT node, sequence FROM message_log
             WHERE ($1::text IS NULL OR member_id = $1)
               AND ($2::text IS NULL OR method = $2 OR right($2, 1) = '/' AND starts_with(method, $2))
               AND ($3::timestamptz IS NULL OR started_at >= $3)
               AND ($4::timestamptz IS NULL OR started_at < $4)
               AND ($5::text IS NULL OR request_id = $5)
             ORDER BY started_at, node, sequence",
        )
        .bind(&filter.member_id)
        .bind(&filter.method)
        .bind(filter.from)
        .bind(filter.to)
        .bind(&filter.request_id)
        .fetch_all(&pool)
        .await
        .expect("the view's entries");
        let pages = searched_pages(&pool, &filter, 7, usize::MAX).await;
        // Every page but the last full (a short one would be taken for the
        // last), and the last not empty.
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        let (last, before) = sizes.split_last().unwrap_or((&1, &[]));
        assert!(before.iter().all(|size| *size == 7) && (1..=7).contains(last), "{filter:?}: {sizes:?}");
        let found: Vec<(String, i64)> =
            pages.iter().flatten().map(|stored| (stored.node.clone(), stored.sequence)).collect();
        assert_eq!(found, expected, "{filter:?}");
        // Without bodies asked for, none are carried.
        assert!(pages.iter().flatten().all(|stored| stored.entry.request_body.is_none()), "{filter:?}");
    }
    // A whole entry as it was written (and as the view reads it back).
    let pages = searched_pages(
        &pool,
        &LogFilter { request_id: Some("search-a-85".to_owned()), include_bodies: true, ..Default::default() },
        7,
        usize::MAX,
    )
    .await;
    let [page] = pages.as_slice() else { panic!("{pages:?}") };
    let [stored] = page.as_slice() else { panic!("{page:?}") };
    assert_eq!((stored.node.as_str(), stored.sequence), ("search-a", 85));
    assert_eq!(stored.entry, entry("search-a", 85));
    let hash: Vec<u8> = sqlx::query_scalar("SELECT hash FROM message_log WHERE node = 'search-a' AND sequence = 85")
        .fetch_one(&pool)
        .await
        .expect("the stored hash");
    assert_eq!(stored.hash, hash);

    // With bodies, a page ends once the bodies before an entry pass the
    // limit (holding at least two), and the next goes on from there.
    let budget = 15;
    let filter = LogFilter { method: Some(METHODS[0].to_owned()), include_bodies: true, ..Default::default() };
    let pages = searched_pages(&pool, &filter, 7, budget).await;
    let mut all = Vec::new();
    for page in &pages {
        let mut bytes_before = 0;
        for (position, stored) in page.iter().enumerate() {
            assert!(position < 2 || bytes_before <= budget, "{page:?}");
            bytes_before += stored.entry.request_body.as_ref().map_or(0, Vec::len);
            assert_eq!(stored.entry, entry(&stored.node, stored.sequence), "bodies as written");
        }
        all.extend(page.iter().map(|stored| (stored.node.clone(), stored.sequence)));
    }
    assert!(pages.iter().any(|page| page.len() < 7 && page.len() >= 2), "the budget cut a page: {pages:?}");
    let expected: Vec<(String, i64)> =
        sqlx::query_as("SELECT node, sequence FROM message_log WHERE method = $1 ORDER BY started_at, node, sequence")
            .bind(METHODS[0])
            .fetch_all(&pool)
            .await
            .expect("the view's entries");
    assert_eq!(all, expected);
}

#[tokio::test]
async fn a_search_reads_batches_of_large_bodies_a_few_at_a_time_and_misses_none() {
    use esocial_gateway::message_log::{LogFilter, Reservation};

    // Ten calls that kept 3 MiB bodies, each written as a batch of its own
    // (4 MiB as stored: base64 of random bytes does not compress). A read
    // of a search stops at 16 MiB of batches, so its second read, asked
    // for the next eight batches of the six left, carries four; a page of
    // the verification's (16 batches) carries four.
    const ENTRIES: i64 = 10;
    let gateway = TestGateway::spawn().await;
    let node = "large-bodies";
    let OwnWriter { pool, log, stop, writing } = own_writer(&gateway, node, 4).await;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut random_bytes = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect()
    };
    for sequence in 1..=ENTRIES {
        let mut entry = test_entry(&format!("large-{sequence}"));
        let body = random_bytes(3 << 20);
        entry.request_bytes = u64::try_from(body.len()).expect("small");
        entry.request_sha256 = Sha256::digest(&body).to_vec();
        entry.request_body = Some(body);
        let slot = log.slot(false).expect("the queue has room");
        slot.send(entry, Reservation::default());
        eventually(Duration::from_secs(10), || async {
            let written: i64 = sqlx::query_scalar("SELECT count(*) FROM message_log_batches WHERE node = $1")
                .bind(node)
                .fetch_one(&pool)
                .await
                .expect("count");
            (written == sequence).then_some(()).ok_or_else(|| format!("{written} batches written"))
        })
        .await;
    }
    stop.send(()).expect("the writer waits for the stop");
    writing.await.expect("the writer ran to its end");
    let stored: i32 =
        sqlx::query_scalar("SELECT min(pg_column_size(entries)) FROM message_log_batches WHERE node = $1")
            .bind(node)
            .fetch_one(&pool)
            .await
            .expect("sizes");
    assert!(stored > 4 << 20, "a batch is {stored} bytes as stored");

    let filter = LogFilter { member_id: Some(DIIA.to_owned()), ..Default::default() };
    let pages = searched_pages(&pool, &filter, 20, usize::MAX).await;
    // One page: a page shorter than asked for would be taken for the last.
    let [page] = pages.as_slice() else { panic!("{} pages", pages.len()) };
    let found: Vec<i64> = page.iter().map(|stored| stored.sequence).collect();
    assert_eq!(found, (1..=ENTRIES).collect::<Vec<_>>());
    assert!(page.iter().all(|stored| stored.entry.request_body.is_none()));
    // With the bodies: pages of two, as each body passes the limit alone.
    let with_bodies = LogFilter { include_bodies: true, ..filter };
    let pages = searched_pages(&pool, &with_bodies, 20, 1 << 20).await;
    assert!(pages.iter().all(|page| page.len() == 2), "{:?}", pages.iter().map(Vec::len).collect::<Vec<_>>());
    let found: Vec<i64> = pages.iter().flatten().map(|stored| stored.sequence).collect();
    assert_eq!(found, (1..=ENTRIES).collect::<Vec<_>>());
    let body = |sequence: i64| {
        let (pages, pool) = (&pages, &pool);
        async move {
            let stored: Vec<u8> = sqlx::query_scalar(
                "SELECT request_body FROM message_log WHERE node = 'large-bodies' AND sequence = $1",
            )
            .bind(sequence)
            .fetch_one(pool)
            .await
            .expect("the body");
            let found = pages.iter().flatten().find(|stored| stored.sequence == sequence).expect("found");
            (stored, found.entry.request_body.clone().expect("carried"))
        }
    };
    let (stored, carried) = body(9).await;
    assert_eq!(carried.len(), 3 << 20);
    assert_eq!(carried, stored);

    // The verification reads such batches a few at a time too.
    let reports = verify::verify(&pool, &gateway.log_keys, Some(node), None).await.expect("verification runs");
    let [report] = reports.as_slice() else { panic!("{reports:?}") };
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.entries, report.signed_through), (ENTRIES, ENTRIES), "{report:?}");
}
