//! Classifier lookups over gRPC: requests per second and latency percentiles.
//!
//! ```text
//! cargo bench -p esocial-classifier --bench lookups
//! BENCH_SECONDS=10 BENCH_CONCURRENCY=64 cargo bench -p esocial-classifier --bench lookups
//! ```
//!
//! Starts a seeded classifier on port 0 against the machine's PostgreSQL and
//! NATS (its own database and stream), with telemetry installed as in
//! production, and drives it from the same process through the generated
//! client: every call carries a bearer token that the server verifies. Client
//! and server share the machine's cores, so the figures are a floor for what
//! a separate client would see. The `steal` column is the share of CPU time
//! the hypervisor took during the workload (from `/proc/stat`): where it is
//! high, the figures say more about the host than about the code.

#![allow(clippy::print_stdout, clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use esocial_auth::Role;
use esocial_classifier::{AUDIENCE, Classifier, Settings};
use esocial_kit::config::Env;
use esocial_kit::shutdown::Shutdown;
use esocial_proto::classifier::v1 as pb;
use esocial_proto::classifier::v1::classifier_service_client::ClassifierServiceClient;
use esocial_proto::common::v1::Date;
use esocial_testkit::{TestDatabase, TestEvents, TestTokens};
use tonic::transport::Channel;

type Client = ClassifierServiceClient<Channel>;

#[derive(Clone, Copy, Debug)]
enum Workload {
    SupportTypeAsOf,
    TerritorialUnitByCode,
    ChildrenOfUnit,
    SearchByName,
}

impl Workload {
    const ALL: [Workload; 4] =
        [Workload::SupportTypeAsOf, Workload::TerritorialUnitByCode, Workload::ChildrenOfUnit, Workload::SearchByName];

    fn label(self) -> &'static str {
        match self {
            Workload::SupportTypeAsOf => "GetSupportType (as of a date)",
            Workload::TerritorialUnitByCode => "GetReferenceEntry (KATOTTG code)",
            Workload::ChildrenOfUnit => "ListReferenceEntries (children)",
            Workload::SearchByName => "SearchReferenceEntries (name)",
        }
    }

    async fn call(
        self,
        client: &mut Client,
        token: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
        turn: usize,
    ) -> Result<(), tonic::Status> {
        fn authorized<T>(
            message: T,
            token: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
        ) -> tonic::Request<T> {
            let mut request = tonic::Request::new(message);
            request.metadata_mut().insert("authorization", token.clone());
            request
        }
        let as_of = Some(if turn.is_multiple_of(2) {
            Date { year: 2025, month: 12, day: 31 }
        } else {
            Date { year: 2026, month: 1, day: 1 }
        });
        match self {
            Workload::SupportTypeAsOf => {
                let codes = [
                    "BIRTH_ASSISTANCE",
                    "BABY_PACKAGE_COMPENSATION",
                    "IDP_LIVING_ALLOWANCE",
                    "LARGE_FAMILY_CHILD_ASSISTANCE",
                ];
                let request = pb::GetSupportTypeRequest { code: codes[turn % codes.len()].to_owned(), as_of };
                client.get_support_type(authorized(request, token)).await.map(drop)
            }
            Workload::TerritorialUnitByCode => {
                let codes =
                    ["UA71020010000037786", "UA46060250010015970", "UA80000000000126643", "UA68020010080090491"];
                let request = pb::GetReferenceEntryRequest {
                    book: pb::ReferenceBook::TerritorialUnits.into(),
                    code: codes[turn % codes.len()].to_owned(),
                    as_of: Some(Date { year: 2026, month: 1, day: 1 }),
                };
                client.get_reference_entry(authorized(request, token)).await.map(drop)
            }
            Workload::ChildrenOfUnit => {
                let parents = ["UA71020010000037786", "UA80000000000093317", "UA46060250000025047"];
                let request = pb::ListReferenceEntriesRequest {
                    book: pb::ReferenceBook::TerritorialUnits.into(),
                    as_of: Some(Date { year: 2026, month: 1, day: 1 }),
                    parent_code: parents[turn % parents.len()].to_owned(),
                    page: None,
                };
                client.list_reference_entries(authorized(request, token)).await.map(drop)
            }
            Workload::SearchByName => {
                let queries = ["кам'ян", "львів", "звениг", "дубин"];
                let request = pb::SearchReferenceEntriesRequest {
                    book: pb::ReferenceBook::TerritorialUnits.into(),
                    query: queries[turn % queries.len()].to_owned(),
                    as_of: Some(Date { year: 2026, month: 1, day: 1 }),
                    page: None,
                };
                client.search_reference_entries(authorized(request, token)).await.map(drop)
            }
        }
    }
}

/// Total and stolen CPU time so far, from `/proc/stat` (Linux); on a virtual
/// machine the host may take cores away, which makes figures noisy.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> =
        stat.lines().next()?.split_whitespace().skip(1).filter_map(|field| field.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal …
    let total = fields.iter().take(8).sum();
    Some((total, *fields.get(7)?))
}

fn steal_percent(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> String {
    match (before, after) {
        (Some((total_before, steal_before)), Some((total_after, steal_after))) if total_after > total_before => {
            format!("{:.0}%", 100.0 * (steal_after - steal_before) as f64 / (total_after - total_before) as f64)
        }
        _ => "n/a".to_owned(),
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn percentile(sorted_micros: &[u64], fraction: f64) -> f64 {
    if sorted_micros.is_empty() {
        return 0.0;
    }
    let index = ((sorted_micros.len() as f64 - 1.0) * fraction).round() as usize;
    sorted_micros[index] as f64 / 1000.0
}

async fn measure(
    workload: Workload,
    clients: &[Client],
    token: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    concurrency: usize,
    duration: Duration,
) {
    let cpu_before = cpu_times();
    let warm_up_until = Instant::now() + Duration::from_millis(500);
    let stop_at = warm_up_until + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let mut client = clients[worker % clients.len()].clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let mut turn = worker;
            loop {
                let started = Instant::now();
                if started >= stop_at {
                    break;
                }
                let result = workload.call(&mut client, &token, turn).await;
                turn += 1;
                if started < warm_up_until {
                    continue;
                }
                match result {
                    Ok(()) => latencies.push(started.elapsed().as_micros() as u64),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (mut worker_latencies, worker_errors) = task.await.expect("worker");
        latencies.append(&mut worker_latencies);
        errors += worker_errors;
    }
    let steal = steal_percent(cpu_before, cpu_times());
    latencies.sort_unstable();
    let throughput = latencies.len() as f64 / duration.as_secs_f64();
    println!(
        "| {:<34} | {:>9} | {:>9.0} | {:>7.2} | {:>7.2} | {:>6} | {:>5} |",
        workload.label(),
        latencies.len(),
        throughput,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        errors,
        steal
    );
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let seconds = env_number("BENCH_SECONDS", 5);
        let concurrency = env_number("BENCH_CONCURRENCY", 32) as usize;
        let connections = env_number("BENCH_CONNECTIONS", 4) as usize;

        let telemetry = esocial_kit::config::TelemetrySettings {
            log_format: esocial_kit::config::LogFormat::Text,
            log_filter: "warn".to_owned(),
            otlp_endpoint: None,
        };
        let _telemetry = esocial_kit::telemetry::init("esocial-bench", &telemetry)?;
        let database = TestDatabase::create().await?;
        let events = TestEvents::new();
        let tokens = TestTokens::start().await?;
        let settings = Settings::from_env(&Env::from_pairs([
            ("DATABASE_URL", database.url().to_owned()),
            ("NATS_URL", events.nats_url.clone()),
            ("ESOCIAL_EVENT_STREAM", events.settings.stream_name.clone()),
            ("ESOCIAL_EVENT_SUBJECT_PREFIX", events.settings.subject_prefix.clone()),
            ("ESOCIAL_IDENTITY_URL", tokens.identity_url()),
            ("ESOCIAL_TOKEN_ISSUER", tokens.issuer.clone()),
            ("ESOCIAL_DATABASE_MAX_CONNECTIONS", "16".to_owned()),
        ]))?;
        let classifier = Classifier::build(settings).await?;
        classifier.seed().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let shutdown = Shutdown::new();
        let server = tokio::spawn(classifier.run(listener, shutdown.wait()));

        let mut clients = Vec::new();
        for _ in 0..connections.max(1) {
            let channel = Channel::from_shared(format!("http://{address}"))?.connect().await?;
            clients.push(ClassifierServiceClient::new(channel));
        }
        let token: tonic::metadata::MetadataValue<_> =
            format!("Bearer {}", tokens.token(AUDIENCE, &[Role::SocialSpecialist])).parse()?;
        let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
        println!(
            "\nclassifier lookups over gRPC: {concurrency} concurrent callers on {connections} connections, {seconds} s per workload, {cores} cores shared by client and server\n"
        );
        println!(
            "| {:<34} | {:>9} | {:>9} | {:>7} | {:>7} | {:>6} | {:>5} |",
            "workload", "requests", "req/s", "p50 ms", "p99 ms", "errors", "steal"
        );
        println!("| {:-<34} | {:->9} | {:->9} | {:->7} | {:->7} | {:->6} | {:->5} |", "", "", "", "", "", "", "");
        let clients = Arc::new(clients);
        for workload in Workload::ALL {
            measure(workload, &clients, &token, concurrency, Duration::from_secs(seconds)).await;
        }
        shutdown.trigger();
        server.await??;
        Ok(())
    })
}
