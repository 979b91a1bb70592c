//! Verifying a message log of production-shaped batches, as `esocial
//! gateway verify-log` does (through [`esocial_gateway::verify::verify`]).
//!
//! ```text
//! cargo bench -p esocial-gateway --bench log_verify
//! BENCH_ENTRIES=2000000 BENCH_REPEATS=3 cargo bench -p esocial-gateway --bench log_verify
//! ```
//!
//! The proxy benchmark verifies its own log after each run, but there every
//! batch names one member and one or two methods. Here the gateway's own
//! writer (default settings: batches of up to 500 entries, a checkpoint
//! every 100,000 entries) writes `BENCH_ENTRIES` entries (default 1,000,000)
//! into a database of its own: calls of 60 members (three of them rare) to
//! 12 methods of 4 services, so a full batch names about 450 member and
//! method or service pairs, as the log search benchmark's batches do. Then
//! the whole log is verified `BENCH_REPEATS` times (default 3): every entry's
//! hash recomputed, each entry's names checked against its batch's columns,
//! every checkpoint's signature checked. Prints the writer's rate and each
//! verification's.

#![allow(clippy::print_stdout, clippy::cast_precision_loss)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use esocial_gateway::message_log::{
    CheckpointKey, Direction, FailurePolicy, LogEntry, Reservation, WriterSettings, message_log,
};
use esocial_gateway::verify::{LogKeys, verify};
use esocial_testkit::TestDatabase;
use esocial_testkit::bench::env_number;
use sha2::{Digest as _, Sha256};

const NODE: &str = "bench";

/// The default of one of the gateway's settings.
fn default_of<T: std::str::FromStr>(variable: esocial_kit::config::Variable) -> anyhow::Result<T> {
    variable.default.parse().map_err(|_| anyhow::anyhow!("{}'s default {:?}", variable.name, variable.default))
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let entries = env_number("BENCH_ENTRIES", 1_000_000);
        let repeats = usize::try_from(env_number("BENCH_REPEATS", 3))?.max(1);
        let database = TestDatabase::create().await?;
        let pool = esocial_kit::db::pool(database.url(), "gateway", "esocial-gateway-verify-bench", 2)?;
        esocial_kit::db::migrate(&pool, "gateway", esocial_gateway::migrations()).await?;
        let files = esocial_testkit::TempDir::new("log-verify-bench")?;
        let key_file = files.path().join("gateway-signing-key.pem");
        esocial_gateway::ensure_signing_key(&key_file)?;
        let key = CheckpointKey::from_pem(&std::fs::read_to_string(&key_file)?)?;
        let keys = LogKeys::of(&key);

        // The writer's defaults; checkpoints by their count alone.
        let batch: usize = default_of(esocial_gateway::LOG_BATCH_MAX)?;
        let settings = WriterSettings {
            node: NODE.to_owned(),
            queue_capacity: default_of(esocial_gateway::LOG_QUEUE_MAX)?,
            batch_size_max: batch,
            batch_linger: Duration::from_millis(default_of(esocial_gateway::LOG_LINGER_MS)?),
            checkpoint_interval: Duration::from_secs(3600),
            checkpoint_entries: default_of(esocial_gateway::CHECKPOINT_ENTRIES)?,
        };
        let options = pool.connect_options().as_ref().clone();
        let (log, writer) = message_log(options, settings, Arc::new(key), FailurePolicy::Refuse);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let writing = tokio::spawn(writer.run(async move {
            let _ = stopped.await;
        }));

        let started = Instant::now();
        let mut waits = 0u64;
        for n in 0..entries {
            // A full queue refuses a place (as it would a call): wait for
            // the writer.
            let slot = loop {
                match log.slot(false) {
                    Ok(slot) => break slot,
                    Err(_) => {
                        waits += 1;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            };
            slot.send(entry(n), Reservation::default());
            if n.is_multiple_of(50_000) {
                print!("\rwriting: {n} of {entries} entries");
                std::io::Write::flush(&mut std::io::stdout())?;
            }
        }
        let _ = stop.send(());
        writing.await?;
        let written = started.elapsed().as_secs_f64();
        let (batches, size): (i64, String) = sqlx::query_as(
            "SELECT count(*), pg_size_pretty(pg_total_relation_size('message_log_batches')) FROM message_log_batches",
        )
        .fetch_one(&pool)
        .await?;
        let pairs: f64 = sqlx::query_scalar(
            "SELECT avg(cardinality(member_methods))::float8 FROM message_log_batches WHERE last_sequence - first_sequence = $1",
        )
        .bind(i64::try_from(batch)? - 1)
        .fetch_one(&pool)
        .await?;
        println!(
            "\r{entries} entries written by the gateway's writer in {written:.1} s ({:.0} a second, the queue full \
             {waits} times), {batches} batches, {pairs:.0} pairs in a full batch; the table with its indexes: {size}",
            entries as f64 / written
        );

        for round in 1..=repeats {
            let started = Instant::now();
            let reports = verify(&pool, &keys, None, None).await?;
            let elapsed = started.elapsed().as_secs_f64();
            anyhow::ensure!(reports.len() == 1, "one chain expected: {reports:?}");
            let report = &reports[0];
            anyhow::ensure!(report.is_intact(), "the chain does not verify: {report:?}");
            anyhow::ensure!(report.entries == i64::try_from(entries)?, "{} entries verified", report.entries);
            println!(
                "verification {round}: {} entries and {} checkpoints intact in {elapsed:.2} s ({:.0} entries a \
                 second); a year of one node at 200 calls a second would take about {:.0} min",
                report.entries,
                report.checkpoints,
                report.entries as f64 / elapsed,
                200.0 * 365.0 * 86_400.0 * elapsed / report.entries as f64 / 60.0
            );
        }
        pool.close().await;
        Ok(())
    })
}

/// Call `n`: one of 57 common members, or once in 10,000 calls one of
/// three rare ones, calling one of 12 methods of 4 services.
fn entry(n: u64) -> LogEntry {
    let member_id = if n % 10_000 == 7 {
        format!("UA/COM/rare-{}", n / 10_000 % 3)
    } else {
        format!("UA/GOV/member-{}", n * 7919 % 57)
    };
    let request = n.to_le_bytes();
    LogEntry {
        request_id: format!("request-{n}"),
        caller: format!("client:{member_id}"),
        member_id,
        method: format!("/esocial.bench.v1.Service{}/Method{}", n * 31 % 4, n * 17 % 3),
        direction: Direction::Inbound,
        started_at: chrono::Utc::now(),
        duration_us: 900 + n % 5000,
        status_code: if n.is_multiple_of(50) { 5 } else { 0 },
        request_bytes: 60 + n % 200,
        response_bytes: 120 + n % 900,
        request_sha256: Sha256::digest(request).to_vec(),
        response_sha256: Sha256::digest(Sha256::digest(request)).to_vec(),
        request_body: None,
        response_body: None,
    }
}
