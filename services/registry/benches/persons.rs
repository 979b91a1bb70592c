//! The register at scale: bulk import rows per second, then GetPerson by
//! RNOKPP and by id and name search over gRPC (requests per second,
//! p50/p99), on a register of a million generated persons.
//!
//! ```text
//! cargo bench -p esocial-registry --bench persons
//! BENCH_PERSONS=10000000 BENCH_SECONDS=10 cargo bench -p esocial-registry --bench persons
//! ```
//!
//! Starts a seeded classifier and a registry on port 0 against the
//! machine's PostgreSQL and NATS (their own database and stream), waits for
//! the registry to replicate the territorial units, generates households
//! with `esocial-people` (in memory, timed apart), and streams them as CSV
//! through `ImportPersons`: every row validated, written with COPY, an
//! event per batch. The reads carry a verified bearer token and each is
//! recorded in the access log, as in production. Client and server share
//! the machine's cores; `steal` is the CPU share the hypervisor took.

#![allow(clippy::print_stdout, clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

#[path = "../tests/api/harness.rs"]
#[allow(dead_code, unreachable_pub, unused_imports)]
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use esocial_auth::Role;
use esocial_identifiers::Katottg;
use esocial_proto::registry::v1 as pb;
use esocial_testkit::bench::{self, CpuTimes, env_number, steal_percent};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::harness::{TestApp, date};

type Client = pb::registry_service_client::RegistryServiceClient<Channel>;

const CHUNK_BYTES: usize = 256 * 1024;

fn authorized<T>(message: T, token: &MetadataValue<Ascii>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", token.clone());
    request
}

/// Households until `persons` persons, as CSV chunks for the import.
fn generate(territories: Vec<Katottg>, persons: u64) -> anyhow::Result<(Vec<Vec<u8>>, u64)> {
    let mut generator = esocial_people::Generator::new(2026, territories)?;
    let mut chunks = Vec::new();
    let mut chunk = String::with_capacity(CHUNK_BYTES + 4096);
    chunk.push_str(esocial_registry::generate::CSV_HEADER);
    let mut generated = 0u64;
    while generated < persons {
        for person in generator.next_household()?.members {
            esocial_registry::generate::push_csv_row(&mut chunk, &person);
            generated += 1;
        }
        if chunk.len() >= CHUNK_BYTES {
            chunks.push(std::mem::take(&mut chunk).into_bytes());
            chunk.reserve(CHUNK_BYTES + 4096);
        }
    }
    chunks.push(chunk.into_bytes());
    Ok((chunks, generated))
}

fn peak_memory_mib() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| status.lines().find(|line| line.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|line| line.split_whitespace().nth(1).and_then(|kib| kib.parse::<u64>().ok()))
        .map_or_else(|| "n/a".to_owned(), |kib| format!("{} MiB", kib / 1024))
}

struct Sample {
    id: String,
    rnokpp: String,
    name: String,
    birth: chrono::NaiveDate,
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let persons = env_number("BENCH_PERSONS", 1_000_000);
        let seconds = env_number("BENCH_SECONDS", 5);
        let concurrency = env_number("BENCH_CONCURRENCY", 32) as usize;
        let connections = env_number("BENCH_CONNECTIONS", 4) as usize;
        let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);

        let app = TestApp::spawn_with_connections(16).await;
        let territories: Vec<Katottg> = app
            .registry
            .territories
            .leaves(esocial_kit::time::kyiv_today())
            .await
            .iter()
            .filter_map(|code| code.parse().ok())
            .collect();
        let started = Instant::now();
        let (chunks, generated) = generate(territories, persons)?;
        let bytes: usize = chunks.iter().map(Vec::len).sum();
        println!(
            "\nregister benchmark: {generated} generated persons ({:.0} MB of CSV, generated in {:.1} s), {cores} cores shared by client and server\n",
            bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );

        let token: MetadataValue<Ascii> =
            format!("Bearer {}", app.tokens.sign(&app.claims("bench", &[Role::Service], &[]))).parse()?;
        let mut channels = Vec::new();
        for _ in 0..connections.max(1) {
            channels.push(Channel::from_shared(format!("http://{}", app.address))?.connect().await?);
        }

        // Bulk import through gRPC client streaming.
        let request_id = uuid::Uuid::new_v4().to_string();
        let messages: Vec<pb::ImportPersonsChunk> = chunks
            .into_iter()
            .enumerate()
            .map(|(index, data)| pb::ImportPersonsChunk {
                request_id: if index == 0 { request_id.clone() } else { String::new() },
                format: pb::ImportFormat::Csv.into(),
                source_document: "benchmark".to_owned(),
                data,
            })
            .collect();
        let mut importer = Client::new(channels[0].clone());
        let cpu_before = CpuTimes::now();
        let started = Instant::now();
        let report = importer
            .import_persons(authorized(futures_util::stream::iter(messages), &token))
            .await?
            .into_inner();
        let elapsed = started.elapsed().as_secs_f64();
        println!("| import | rows | registered | rejected | duplicates | seconds | rows/s | steal |");
        println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
        println!(
            "| ImportPersons (CSV, one stream) | {} | {} | {} | {} | {elapsed:.1} | {:.0} | {} |\n",
            report.rows,
            report.accepted,
            report.rejected,
            report.duplicates,
            report.rows as f64 / elapsed,
            steal_percent(cpu_before, CpuTimes::now())
        );

        // Planner statistics as autovacuum would leave them after a load.
        sqlx::query("ANALYZE registry.persons").execute(&app.pool).await?;
        let samples: Vec<(uuid::Uuid, String, String, String, String, chrono::NaiveDate)> = sqlx::query_as(
            "SELECT id, rnokpp, last_name, first_name, patronymic, birth_date FROM registry.persons
             TABLESAMPLE SYSTEM (2) WHERE rnokpp IS NOT NULL LIMIT 20000",
        )
        .fetch_all(&app.pool)
        .await?;
        let samples: Arc<Vec<Sample>> = Arc::new(
            samples
                .into_iter()
                .map(|(id, rnokpp, last, first, patronymic, birth)| Sample {
                    id: id.to_string(),
                    rnokpp,
                    name: format!("{last} {first} {patronymic}"),
                    birth,
                })
                .collect(),
        );
        anyhow::ensure!(!samples.is_empty(), "no persons to read");

        println!(
            "reads over gRPC: {concurrency} concurrent callers on {connections} connections, {seconds} s each, every read recorded in the access log\n"
        );
        println!("{}", bench::Measured::header());
        let duration = Duration::from_secs(seconds);
        let clients: Arc<Vec<Client>> = Arc::new(channels.iter().cloned().map(Client::new).collect());
        for workload in ["GetPerson (RNOKPP)", "GetPerson (id)", "SearchPersons (name + birth date)"] {
            let clients = clients.clone();
            let samples = samples.clone();
            let token = token.clone();
            let measured = bench::drive(concurrency, duration, move |worker, turn| {
                let mut client = clients[worker % clients.len()].clone();
                let sample = &samples[turn % samples.len()];
                let purpose = "benchmark".to_owned();
                let (rnokpp, id, name, birth) = (sample.rnokpp.clone(), sample.id.clone(), sample.name.clone(), sample.birth);
                let token = token.clone();
                async move {
                    match workload {
                        "GetPerson (RNOKPP)" => {
                            let key = Some(pb::get_person_request::Key::Rnokpp(rnokpp));
                            client.get_person(authorized(pb::GetPersonRequest { key, as_of: None, purpose }, &token)).await.is_ok()
                        }
                        "GetPerson (id)" => {
                            let key = Some(pb::get_person_request::Key::PersonId(id));
                            client.get_person(authorized(pb::GetPersonRequest { key, as_of: None, purpose }, &token)).await.is_ok()
                        }
                        _ => {
                            let query = pb::search_persons_request::Query::NameAndBirthDate(pb::NameAndBirthDate {
                                name,
                                birth_date: Some(date(&birth.to_string())),
                            });
                            let request = pb::SearchPersonsRequest { query: Some(query), purpose, page: None };
                            client
                                .search_persons(authorized(request, &token))
                                .await
                                .is_ok_and(|response| !response.into_inner().matches.is_empty())
                        }
                    }
                }
            })
            .await;
            println!("{}", measured.row(workload));
        }

        let sizes: Vec<(String, i64)> = sqlx::query_as(
            "SELECT relname::text, pg_total_relation_size(oid) FROM pg_class
             WHERE relnamespace = 'registry'::regnamespace AND relname IN ('persons', 'person_versions', 'access_log')
             ORDER BY 1",
        )
        .fetch_all(&app.pool)
        .await?;
        let sizes: Vec<String> = sizes.iter().map(|(name, size)| format!("{name} {:.0} MB", *size as f64 / 1e6)).collect();
        println!("\nstorage with indexes: {}; peak memory of this process (client and server): {}", sizes.join(", "), peak_memory_mib());
        Ok(())
    })
}
