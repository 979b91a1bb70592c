//! Searching a large message log, as auditors do (`MessageLogService`'s
//! `SearchLog`, through [`esocial_gateway::message_log::search`]).
//!
//! ```text
//! cargo bench -p esocial-gateway --bench log_search
//! BENCH_ENTRIES=4000000 BENCH_REPEATS=20 cargo bench -p esocial-gateway --bench log_search
//! ```
//!
//! Fills a database of its own with `BENCH_ENTRIES` entries (default
//! 2,000,000) in batches of 500, as the writer stores them: 200 calls a
//! second, spread over 60 members (a few of them rare) and 12 methods of 4
//! services. Then times each kind of search, `BENCH_REPEATS` times (default
//! 10), and prints the median and the slowest, with what the search found.
//! The entries' hashes are random: a search does not read them.

#![allow(clippy::print_stdout, clippy::cast_precision_loss)]

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone as _, Utc};
use esocial_gateway::message_log::{LogCursor, LogFilter, search};
use esocial_testkit::TestDatabase;
use esocial_testkit::bench::env_number;

/// Entries a batch holds (the writer's `ESOCIAL_GATEWAY_LOG_BATCH_MAX`).
const BATCH: i64 = 500;
/// Calls a second the log records.
const RATE: i64 = 200;
/// Batches one statement writes.
const BATCHES_A_STATEMENT: i64 = 100;
/// Entries a page holds (an auditor's page).
const PAGE: i64 = 100;
const BODY_BYTES_MAX: usize = 4 * 1024 * 1024;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).single().expect("time")
}

/// The member of entry `n`: one of 57 common members, or, once in 10,000
/// entries, one of three rare ones.
const MEMBER_OF: &str = "CASE WHEN n % 10000 = 7 THEN 'UA/COM/rare-' || (n / 10000 % 3)
                              ELSE 'UA/GOV/member-' || (n * 7919 % 57) END";
const METHOD_OF: &str = "'/esocial.bench.v1.Service' || (n * 31 % 4) || '/Method' || (n * 17 % 3)";

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let entries = i64::try_from(env_number("BENCH_ENTRIES", 2_000_000))?;
        let repeats = usize::try_from(env_number("BENCH_REPEATS", 10))?.max(1);
        let database = TestDatabase::create().await?;
        let pool = esocial_kit::db::pool(database.url(), "gateway", "esocial-gateway-search-bench", 2)?;
        esocial_kit::db::migrate(&pool, "gateway", esocial_gateway::migrations()).await?;

        let filling = Instant::now();
        let batches = (entries + BATCH - 1) / BATCH;
        for first in (0..batches).step_by(usize::try_from(BATCHES_A_STATEMENT)?) {
            fill(&pool, first, (first + BATCHES_A_STATEMENT).min(batches), entries).await?;
            print!("\rfilling: {} of {entries} entries", ((first + BATCHES_A_STATEMENT) * BATCH).min(entries));
            std::io::Write::flush(&mut std::io::stdout())?;
        }
        sqlx::query("VACUUM ANALYZE message_log_batches").execute(&pool).await?;
        let size: String = sqlx::query_scalar("SELECT pg_size_pretty(pg_total_relation_size('message_log_batches'))")
            .fetch_one(&pool)
            .await?;
        println!(
            "\r{entries} entries in {batches} batches written in {:.1} s; the table with its indexes: {size}",
            filling.elapsed().as_secs_f64()
        );

        let span = Duration::from_secs(u64::try_from(entries / RATE)?);
        let at = |fraction: f64| start() + chrono::Duration::from_std(span.mul_f64(fraction)).expect("span");
        let filter = LogFilter::default();
        let cases: Vec<(&str, LogFilter, usize)> = vec![
            (
                "a request id",
                LogFilter { request_id: Some(format!("request-{}", entries * 3 / 5)), ..filter.clone() },
                1,
            ),
            ("a member, first page", LogFilter { member_id: Some("UA/GOV/member-5".to_owned()), ..filter.clone() }, 1),
            ("a member, tenth page", LogFilter { member_id: Some("UA/GOV/member-5".to_owned()), ..filter.clone() }, 10),
            (
                "a member, from the middle of the log",
                LogFilter { member_id: Some("UA/GOV/member-5".to_owned()), from: Some(at(0.5)), ..filter.clone() },
                1,
            ),
            (
                "a rare member (1 in 30,000 entries)",
                LogFilter { member_id: Some("UA/COM/rare-1".to_owned()), ..filter.clone() },
                1,
            ),
            (
                "a method, an hour in the middle",
                LogFilter {
                    method: Some("/esocial.bench.v1.Service2/Method1".to_owned()),
                    from: Some(at(0.5)),
                    to: Some(at(0.5) + chrono::Duration::hours(1)),
                    ..filter.clone()
                },
                1,
            ),
            (
                "a service, a minute at the end",
                LogFilter {
                    method: Some("/esocial.bench.v1.Service3/".to_owned()),
                    from: Some(at(1.0) - chrono::Duration::minutes(1)),
                    ..filter.clone()
                },
                1,
            ),
            (
                "a rare member and a method it never calls",
                LogFilter {
                    member_id: Some("UA/COM/rare-0".to_owned()),
                    method: Some("/esocial.bench.v1.Service0/Method0".to_owned()),
                    ..filter.clone()
                },
                1,
            ),
            // A common member calls one method of each service (its entries'
            // `n` share their remainder by 3), here `Method2`, and every
            // batch names it and every method.
            (
                "a busy member and a method it calls",
                LogFilter {
                    member_id: Some("UA/GOV/member-5".to_owned()),
                    method: Some("/esocial.bench.v1.Service0/Method2".to_owned()),
                    ..filter.clone()
                },
                1,
            ),
            (
                "a busy member and a method it never calls",
                LogFilter {
                    member_id: Some("UA/GOV/member-5".to_owned()),
                    method: Some("/esocial.bench.v1.Service0/Method0".to_owned()),
                    ..filter.clone()
                },
                1,
            ),
        ];
        println!("{:<42} {:>6} {:>11} {:>11} {:>8}", "search", "pages", "median ms", "slowest ms", "entries");
        for (name, filter, pages) in cases {
            let mut times = Vec::with_capacity(repeats);
            let mut found = 0;
            for _ in 0..repeats {
                let started = Instant::now();
                let mut after: Option<LogCursor> = None;
                for _ in 0..pages {
                    let page = search(&pool, &filter, after.as_ref(), PAGE, BODY_BYTES_MAX).await?;
                    found = page.entries.len();
                    let (Some(last), Some(seen)) = (page.entries.last(), page.seen) else { break };
                    after = Some(LogCursor {
                        started_at_us: last.entry.started_at.timestamp_micros(),
                        node: last.node.clone(),
                        sequence: last.sequence,
                        seen,
                    });
                }
                times.push(started.elapsed());
            }
            times.sort();
            println!(
                "{name:<42} {pages:>6} {:>11.1} {:>11.1} {found:>8}",
                times[times.len() / 2].as_secs_f64() * 1e3,
                times[times.len() - 1].as_secs_f64() * 1e3,
            );
        }
        pool.close().await;
        Ok(())
    })
}

/// Writes batches `first..end` (of the log's `entries`): entry `n` is the
/// call that started `n / RATE` seconds after the start, give or take a
/// second (a batch holds the calls that ended together).
async fn fill(pool: &sqlx::PgPool, first: i64, end: i64, entries: i64) -> Result<(), sqlx::Error> {
    let statement = format!(
        "WITH e AS (
             SELECT b, n, {MEMBER_OF} AS member_id, {METHOD_OF} AS method,
                    $3::timestamptz + (n * 1000000 / $4 - (n * 7 % 1000) * 1000) * interval '1 microsecond' AS started_at
             FROM generate_series($1::bigint, $2::bigint - 1) b,
                  generate_series(b * $5 + 1, least((b + 1) * $5, $6)) n
         )
         INSERT INTO message_log_batches (node, first_sequence, last_sequence, first_started_at, last_started_at,
                                          member_ids, methods, services, request_ids, entries, member_methods)
         SELECT node, first_sequence, last_sequence, first_started_at, last_started_at,
                member_ids, methods, services, request_ids, entries::text, message_log_member_methods(entries)
         FROM (
             SELECT 'bench' AS node, min(n) AS first_sequence, max(n) AS last_sequence,
                    min(started_at) AS first_started_at, max(started_at) AS last_started_at,
                    array_agg(DISTINCT member_id) AS member_ids, array_agg(DISTINCT method) AS methods,
                    array_agg(DISTINCT message_log_service(method)) AS services,
                    array_agg('request-' || n ORDER BY n) AS request_ids,
                    json_agg(json_build_object(
                        'sequence', n, 'request_id', 'request-' || n, 'member_id', member_id,
                        'caller', 'client:' || member_id, 'method', method, 'direction', 'inbound',
                        'started_at_us', (extract(epoch FROM started_at) * 1000000)::bigint,
                        'duration_us', 900 + n % 5000, 'status_code', (n % 50 = 0)::int * 5,
                        'request_bytes', 60 + n % 200, 'response_bytes', 120 + n % 900,
                        'request_sha256', md5(n::text) || md5((n + 1)::text),
                        'response_sha256', md5((n + 2)::text) || md5((n + 3)::text),
                        'request_body', NULL, 'response_body', NULL,
                        'hash', md5((n + 4)::text) || md5((n + 5)::text)) ORDER BY n) AS entries
             FROM e GROUP BY b
         ) batches"
    );
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(first)
        .bind(end)
        .bind(start())
        .bind(RATE)
        .bind(BATCH)
        .bind(entries)
        .execute(pool)
        .await?;
    Ok(())
}
