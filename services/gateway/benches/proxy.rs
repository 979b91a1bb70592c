//! The same registry calls five ways, side by side in one run: straight to
//! the registry, through the exchange gateway (member authentication, access
//! check, rate limit, message log entry with SHA-256 digests), through a
//! bare forwarder made of the HTTP/2 server and client the gateway is built
//! on and nothing else (the floor under the gateway), and twice through
//! Debian's nginx with `grpc_pass` as the reference proxy: once as the
//! target has it (no access log), once writing its access log to a file as
//! Debian configures it, for the cost of a record of each exchange.
//!
//! ```text
//! cargo bench -p esocial-gateway --bench proxy
//! BENCH_SECONDS=10 BENCH_CONCURRENCY=64 BENCH_ROUNDS=2 cargo bench -p esocial-gateway --bench proxy
//! ```
//!
//! Starts a seeded classifier, a registry with generated persons and a
//! gateway on port 0 against the machine's PostgreSQL and NATS (their own
//! database and stream), and nginx (`/usr/sbin/nginx`, from Debian's
//! `nginx` package; skipped with a note when missing) with two worker
//! processes in a temporary directory. A call through the gateway carries
//! the member's token (good at the gateway only), which the gateway exchanges
//! at identity once for a token good at the registry; the direct and nginx
//! calls (and the bare forwarder's) carry a registry token of a system with
//! the same role. The registry
//! verifies a token whichever way the call came. Client,
//! proxies, registry and PostgreSQL share the machine's cores: a proxy's
//! own CPU use is taken from the others, which is what the ratios show.
//! Each proxy's own CPU time per call is also read off its threads and
//! processes: the gateway's serving threads and its message log writer's
//! PostgreSQL backend, the bare forwarder's threads, nginx's workers.

#![allow(clippy::print_stdout, clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

#[path = "../tests/api/harness.rs"]
#[allow(dead_code, unreachable_pub, unused_imports)]
mod harness;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use esocial_proto::gateway::v1 as gateway_pb;
use esocial_proto::registry::v1 as pb;
use esocial_testkit::bench::{self, Measured, Samples, env_number};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::harness::{DIIA, TestGateway};

const GET_PERSON: &str = "/esocial.registry.v1.RegistryService/GetPerson";
const VERIFY_CERTIFICATE: &str = "/esocial.registry.v1.IdpService/VerifyIdpCertificate";

fn authorized<T>(message: T, token: &MetadataValue<Ascii>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", token.clone());
    request
}

/// `connections` HTTP/2 connections to `address`.
async fn channels(address: SocketAddr, connections: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(Channel::from_shared(format!("http://{address}"))?.tcp_nodelay(true).connect().await?);
    }
    Ok(channels)
}

/// Debian's nginx.
const NGINX: &str = "/usr/sbin/nginx";

/// The path through nginx as the target has it, without an access log.
const NGINX_PLAIN: &str = "nginx grpc_pass";

/// The path through nginx that writes an access log.
const NGINX_LOGGING: &str = "nginx grpc_pass, access log";

/// Whose CPU time is a path's proxy's own.
#[derive(Debug, Clone, Copy)]
enum Proxy {
    None,
    /// The gateway's serving threads (in this process) and its message log
    /// writer's PostgreSQL backend.
    Gateway,
    /// The workers of the nginx master with this pid.
    Nginx(u32),
    /// The bare forwarder's threads.
    Bare,
}

/// The path through the bare forwarder.
const BARE: &str = "bare hyper forwarder";

/// The floor under the gateway: hyper's HTTP/2 server and client, which the
/// gateway is built on, and nothing else. Each call goes on to `upstream` as
/// it came (headers, body and trailers) and its answer comes back the same
/// way. Like the gateway, it serves on two threads of its own
/// (`bare-serve-N`), each with one HTTP/2 connection to the upstream. It
/// checks nothing and records nothing, so what the gateway spends beyond it
/// is the cost of the gateway's own work and of the layers it runs in.
fn start_bare_forwarder(upstream: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    for thread in 0..2 {
        let listener = listener.try_clone()?;
        std::thread::Builder::new().name(format!("bare-serve-{thread}")).spawn(move || {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| runtime.block_on(serve_bare(listener, upstream)));
            if let Err(error) = served {
                eprintln!("the bare forwarder's thread {thread} stopped: {error:#}");
            }
        })?;
    }
    Ok(address)
}

async fn serve_bare(listener: std::net::TcpListener, upstream: SocketAddr) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let authority: http::uri::Authority = upstream.to_string().parse()?;
    let stream = tokio::net::TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (sender, authority) = (sender.clone(), authority.clone());
        let forward = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let (mut sender, authority) = (sender.clone(), authority.clone());
            async move {
                let (mut parts, body) = request.into_parts();
                let path = parts.uri.path_and_query().map_or("/", http::uri::PathAndQuery::as_str);
                parts.uri = http::Uri::builder()
                    .scheme(http::uri::Scheme::HTTP)
                    .authority(authority)
                    .path_and_query(path)
                    .build()?;
                anyhow::Ok(sender.send_request(http::Request::from_parts(parts, body)).await?)
            }
        });
        tokio::spawn(
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), forward),
        );
    }
}

/// A proxy's own CPU time, in clock ticks, summed over a path's turns;
/// `None` once a reading failed.
#[derive(Debug, Clone, Copy)]
struct OwnTicks {
    proxy: Option<u64>,
    log_backend: Option<u64>,
}

impl Default for OwnTicks {
    fn default() -> Self {
        Self { proxy: Some(0), log_backend: Some(0) }
    }
}

/// The pid of the gateway's message log writer's PostgreSQL backend.
async fn log_backend(pool: &sqlx::PgPool) -> Option<u32> {
    let pid: Option<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'esocial-gateway-log' AND datname = current_database()",
    )
    .fetch_optional(pool)
    .await
    .ok()
    .flatten();
    pid.and_then(|pid| u32::try_from(pid).ok())
}

/// The proxy's readings now: its own ticks and its log writer backend's.
fn own_now(proxy: Proxy, log_backend: Option<u32>) -> (Option<u64>, Option<u64>) {
    match proxy {
        Proxy::None => (None, None),
        Proxy::Gateway => (bench::thread_ticks("gateway-serve-"), log_backend.and_then(bench::pid_ticks)),
        Proxy::Nginx(master) => (bench::children_ticks(master), None),
        Proxy::Bare => (bench::thread_ticks("bare-serve-"), None),
    }
}

/// nginx with `grpc_pass` to `upstream`, listening on a free port. With
/// `access_log`, it writes a line for each request to a file as Debian's
/// configuration has it (the combined format, a write for each request),
/// the nearest it comes to the gateway's message log; without, nothing.
struct Nginx {
    child: std::process::Child,
    address: SocketAddr,
    _directory: esocial_testkit::TempDir,
}

impl Nginx {
    fn start(upstream: SocketAddr, access_log: bool) -> anyhow::Result<Self> {
        let directory = esocial_testkit::TempDir::new("nginx-bench")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let root = directory.path().display().to_string();
        let access_log = if access_log { format!("{root}/access.log") } else { "off".to_owned() };
        let config = format!(
            "worker_processes 2;\n\
             daemon off;\n\
             pid {root}/nginx.pid;\n\
             error_log {root}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
               access_log {access_log};\n\
               client_body_temp_path {root}/body;\n\
               proxy_temp_path {root}/proxy;\n\
               fastcgi_temp_path {root}/fastcgi;\n\
               uwsgi_temp_path {root}/uwsgi;\n\
               scgi_temp_path {root}/scgi;\n\
               upstream registry {{ server {upstream}; keepalive 64; keepalive_requests 100000000; }}\n\
               server {{\n\
                 listen {address} http2;\n\
                 keepalive_requests 100000000;\n\
                 location / {{ grpc_pass grpc://registry; }}\n\
               }}\n\
             }}\n"
        );
        let config_path = directory.path().join("nginx.conf");
        std::fs::write(&config_path, config)?;
        let child = std::process::Command::new(NGINX)
            .arg("-p")
            .arg(directory.path())
            .arg("-c")
            .arg(&config_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()?;
        let started = Instant::now();
        while std::net::TcpStream::connect(address).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                anyhow::bail!("nginx did not start listening on {address}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self { child, address, _directory: directory })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers too (SIGKILL would orphan them).
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One run of a workload through one path, added to `samples`.
async fn measure(
    samples: &mut Samples,
    channels: &[Channel],
    token: &MetadataValue<Ascii>,
    person_ids: &Arc<Vec<String>>,
    method: &str,
    concurrency: usize,
    duration: Duration,
) {
    let channels = Arc::new(channels.to_vec());
    let token = token.clone();
    let person_ids = person_ids.clone();
    let get_person = method == GET_PERSON;
    bench::drive_into(samples, concurrency, duration, move |worker, turn| {
        let channel = channels[worker % channels.len()].clone();
        let token = token.clone();
        let person_ids = person_ids.clone();
        async move {
            if get_person {
                let mut client = pb::registry_service_client::RegistryServiceClient::new(channel);
                let request = pb::GetPersonRequest {
                    key: Some(pb::get_person_request::Key::PersonId(person_ids[turn % person_ids.len()].clone())),
                    as_of: None,
                    purpose: "benchmark".to_owned(),
                };
                client.get_person(authorized(request, &token)).await.is_ok()
            } else {
                let mut client = pb::idp_service_client::IdpServiceClient::new(channel);
                let request = pb::VerifyIdpCertificateRequest { code: format!("{:016}", 1_000_000_000_000_000 + turn) };
                client.verify_idp_certificate(authorized(request, &token)).await.is_ok()
            }
        }
    })
    .await;
}

/// The ratios of two paths' successful calls in each turn, in turn order.
fn turn_ratios(through: &[usize], other: &[usize]) -> String {
    let ratios: Vec<String> = through
        .iter()
        .zip(other)
        .map(
            |(through, other)| {
                if *other == 0 { "n/a".to_owned() } else { format!("{:.2}", *through as f64 / *other as f64) }
            },
        )
        .collect();
    ratios.join(", ")
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let seconds = env_number("BENCH_SECONDS", 8);
        let concurrency = usize::try_from(env_number("BENCH_CONCURRENCY", 32)).unwrap_or(32);
        let connections = usize::try_from(env_number("BENCH_CONNECTIONS", 4)).unwrap_or(4);
        let persons = env_number("BENCH_PERSONS", 20_000);
        let rounds = env_number("BENCH_ROUNDS", 4).max(1);
        let duration = Duration::from_secs(seconds);

        // The gateway's own variables may be set for a run (its upstream
        // connections, its log batch size, …).
        let mut configuration: Vec<(String, String)> =
            std::env::vars().filter(|(name, _)| name.starts_with("ESOCIAL_GATEWAY_")).collect();
        configuration.push(("ESOCIAL_DATABASE_MAX_CONNECTIONS".to_owned(), "16".to_owned()));
        let configuration: Vec<(&str, &str)> =
            configuration.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
        let mut gateway = TestGateway::spawn_with(&configuration).await;
        let limits = gateway_pb::Limits { requests_per_second: 100_000, burst: 100_000, message_bytes_max: 0 };
        gateway.register_member(DIIA, "diia", Some(limits), &[GET_PERSON, VERIFY_CERTIFICATE]).await;
        let generated = esocial_registry::generate::load(&gateway.registry, persons, 2026, |_| {}).await?;
        let person_ids: Vec<String> =
            sqlx::query_scalar("SELECT id::text FROM registry.persons ORDER BY random() LIMIT 10000")
                .fetch_all(&gateway.pool)
                .await?;
        let person_ids = Arc::new(person_ids);
        // The member's token is good at the gateway only (which exchanges it
        // for one good at the registry); the direct and nginx paths carry a
        // token for the registry, of a system with the same role.
        let member_token: MetadataValue<Ascii> = format!("Bearer {}", gateway.system_token("diia").await).parse()?;
        let registry_token: MetadataValue<Ascii> =
            format!("Bearer {}", gateway.service_token("diia-direct").await).parse()?;
        // BENCH_PATHS and BENCH_WORKLOADS (comma-separated) choose what runs,
        // for profiling one path at a time.
        let wanted = |variable: &str, name: &str| {
            std::env::var(variable).map_or(true, |list| list.split(',').any(|item| name.starts_with(item.trim())))
        };
        let mut nginxes = Vec::new();
        for (label, path, access_log) in [(NGINX_PLAIN, "nginx", false), (NGINX_LOGGING, "nginx-log", true)] {
            if !wanted("BENCH_PATHS", path) {
                continue;
            }
            if !Path::new(NGINX).exists() {
                println!("nginx is not installed (apt-get install nginx): the reference proxy is skipped\n");
                break;
            }
            nginxes.push((label, Nginx::start(gateway.registry_address, access_log)?));
        }

        println!(
            "{} persons in the register; {concurrency} concurrent callers on {connections} HTTP/2 connections, {seconds} s per path \
             and workload in {rounds} turns (paths in reverse order every other turn)\n",
            generated.accepted
        );
        let mut paths: Vec<(&str, Vec<Channel>, &MetadataValue<Ascii>, Proxy)> = Vec::new();
        if wanted("BENCH_PATHS", "direct") {
            paths.push((
                "direct",
                channels(gateway.registry_address, connections).await?,
                &registry_token,
                Proxy::None,
            ));
        }
        if wanted("BENCH_PATHS", "gateway") {
            paths.push(("gateway", channels(gateway.address, connections).await?, &member_token, Proxy::Gateway));
        }
        if wanted("BENCH_PATHS", "bare") {
            let bare = start_bare_forwarder(gateway.registry_address)?;
            paths.push((BARE, channels(bare, connections).await?, &registry_token, Proxy::Bare));
        }
        for (label, nginx) in &nginxes {
            paths.push((label, channels(nginx.address, connections).await?, &registry_token, Proxy::Nginx(nginx.child.id())));
        }
        let log_before = gateway.count("gateway.message_log").await;
        println!("{}", Measured::header());
        let mut ratios = Vec::new();
        for (label, method) in [("GetPerson by id", GET_PERSON), ("VerifyIdpCertificate", VERIFY_CERTIFICATE)] {
            if !wanted("BENCH_WORKLOADS", label) {
                continue;
            }
            // The paths take turns, in reverse order every other round, so
            // a machine that speeds up or slows down favours none of them.
            let mut samples: Vec<Samples> = paths.iter().map(|_| Samples::default()).collect();
            // Successful calls of each path in each turn (all turns last the
            // same), for the spread of the ratios from turn to turn.
            let mut per_turn: Vec<Vec<usize>> = paths.iter().map(|_| Vec::new()).collect();
            let mut own: Vec<OwnTicks> = paths.iter().map(|_| OwnTicks::default()).collect();
            let turn = duration / u32::try_from(rounds).unwrap_or(1);
            for round in 0..rounds {
                let mut order: Vec<usize> = (0..paths.len()).collect();
                if round % 2 == 1 {
                    order.reverse();
                }
                for index in order {
                    let (_, path_channels, token, proxy) = &paths[index];
                    let gateway_path = matches!(proxy, Proxy::Gateway);
                    let backend = if gateway_path { log_backend(&gateway.pool).await } else { None };
                    let own_before = own_now(*proxy, backend);
                    let before = samples[index].successes();
                    measure(&mut samples[index], path_channels, token, &person_ids, method, concurrency, turn).await;
                    per_turn[index].push(samples[index].successes() - before);
                    // A reading fails, or the writer reconnected: that
                    // figure is left out rather than guessed.
                    let own_after = own_now(*proxy, backend);
                    let backend_same = !gateway_path || log_backend(&gateway.pool).await == backend;
                    let add = |sum: Option<u64>, before: Option<u64>, after: Option<u64>| {
                        sum.zip(before.zip(after)).map(|(sum, (before, after))| sum + after.saturating_sub(before))
                    };
                    own[index].proxy = add(own[index].proxy, own_before.0, own_after.0);
                    own[index].log_backend =
                        add(own[index].log_backend, own_before.1, own_after.1).filter(|_| backend_same);
                }
            }
            let turns_of = |wanted: &str| {
                paths.iter().position(|(path, _, _, _)| *path == wanted).map(|index| per_turn[index].as_slice())
            };
            let calls: Vec<usize> = samples.iter().map(Samples::calls).collect();
            let mut results: Vec<(&str, Measured)> = Vec::new();
            for ((path, _, _, _), samples) in paths.iter().zip(samples) {
                let measured = samples.measured();
                println!("{}", measured.row(&format!("{label}, {path}")));
                results.push((path, measured));
            }
            let per_second = |wanted: &str| {
                results.iter().find(|(path, _)| *path == wanted).map(|(_, measured)| measured.per_second)
            };
            for (of, against) in
                [("direct", "direct"), ("the bare forwarder", BARE), ("nginx", NGINX_PLAIN), ("nginx with its access log", NGINX_LOGGING)]
            {
                if let (Some(through), Some(other)) = (per_second("gateway"), per_second(against)) {
                    let spread = turns_of("gateway")
                        .zip(turns_of(against))
                        .map(|(through, other)| turn_ratios(through, other))
                        .unwrap_or_default();
                    ratios.push(format!("{label}: gateway / {of} = {:.2} (turn by turn: {spread})", through / other));
                }
            }
            let cpu = |wanted: &str| {
                results
                    .iter()
                    .find(|(path, _)| *path == wanted)
                    .and_then(|(_, measured)| Some((measured.cpu_us_per_call?, measured.postgres_us_per_call?)))
            };
            if let Some((direct, direct_postgres)) = cpu("direct") {
                for proxy in ["gateway", BARE, NGINX_PLAIN, NGINX_LOGGING] {
                    if let Some((through, postgres)) = cpu(proxy) {
                        ratios.push(format!(
                            "{label}: {proxy} adds {:.0} µs of the machine's CPU per call ({through:.0} against {direct:.0}), \
                             of which PostgreSQL {:.0} µs",
                            through - direct,
                            postgres - direct_postgres
                        ));
                    }
                }
            }
            // What each proxy itself spent per call, read off its own
            // threads and processes rather than as the difference of two
            // paths' whole-machine figures.
            let mut own_parts = Vec::new();
            for (((path, _, _, proxy), own), calls) in paths.iter().zip(&own).zip(&calls) {
                let per_call = |ticks: Option<u64>| ticks.and_then(|ticks| bench::micros_per_call(ticks, *calls));
                match (proxy, per_call(own.proxy)) {
                    (Proxy::Gateway, Some(threads)) => {
                        let backend = per_call(own.log_backend)
                            .map_or_else(|| "n/a".to_owned(), |micros| format!("{micros:.0} µs"));
                        own_parts.push(format!(
                            "{path}'s serving threads {threads:.0} µs and its message log writer's PostgreSQL backend {backend}"
                        ));
                    }
                    (Proxy::Nginx(_), Some(workers)) => own_parts.push(format!("{path}'s workers {workers:.0} µs")),
                    (Proxy::Bare, Some(threads)) => own_parts.push(format!("the {path}'s threads {threads:.0} µs")),
                    _ => {}
                }
            }
            if !own_parts.is_empty() {
                ratios.push(format!("{label}: the proxy's own CPU per call: {}", own_parts.join("; ")));
            }
        }
        println!();
        for ratio in &ratios {
            println!("{ratio}");
        }

        // Every exchange through the gateway has its entry, and the chain verifies.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let logged = gateway.count("gateway.message_log").await - log_before;
        let started = Instant::now();
        let pool = gateway.gateway_pool().await;
        let witness = gateway.witness().await;
        let reports = esocial_gateway::verify::verify(&pool, &gateway.log_keys, None, Some(&witness)).await?;
        let verified_in = started.elapsed();
        let entries: i64 = reports.iter().map(|report| report.entries).sum();
        println!(
            "\nmessage log: {logged} entries written during the runs; verification of {entries} entries: {} in {:.2} s ({:.0} entries/s)",
            if reports.iter().all(esocial_gateway::verify::ChainReport::is_intact) { "intact" } else { "BROKEN" },
            verified_in.as_secs_f64(),
            entries as f64 / verified_in.as_secs_f64()
        );
        drop(nginxes);
        gateway.stop().await;
        Ok(())
    })
}
