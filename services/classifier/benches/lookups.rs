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
use std::time::Duration;

use esocial_auth::Role;
use esocial_classifier::{AUDIENCE, Classifier, Settings};
use esocial_kit::config::Env;
use esocial_kit::shutdown::Shutdown;
use esocial_proto::classifier::v1 as pb;
use esocial_proto::classifier::v1::classifier_service_client::ClassifierServiceClient;
use esocial_proto::common::v1::Date;
use esocial_testkit::bench::{self, env_number};
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

async fn measure(
    workload: Workload,
    clients: &Arc<Vec<Client>>,
    token: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    concurrency: usize,
    duration: Duration,
) {
    let clients = clients.clone();
    let token = token.clone();
    let measured = bench::drive(concurrency, duration, move |worker, turn| {
        let mut client = clients[worker % clients.len()].clone();
        let token = token.clone();
        async move { workload.call(&mut client, &token, turn).await.is_ok() }
    })
    .await;
    println!("{}", measured.row(workload.label()));
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
        println!("{}", bench::Measured::header());
        let clients = Arc::new(clients);
        for workload in Workload::ALL {
            measure(workload, &clients, &token, concurrency, Duration::from_secs(seconds)).await;
        }
        shutdown.trigger();
        server.await??;
        Ok(())
    })
}
