//! `esocial registry …`: the register's signing key, synthetic persons, and
//! bulk import of a file through the registry's API.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use esocial_proto::registry::v1 as pb;

use crate::arguments::Arguments;
use crate::services::ProcessSettings;

pub const USAGE: &str = "usage:
  esocial registry signing-key [--out FILE]
      create the register's signing key (default: ESOCIAL_REGISTRY_SIGNING_KEY_FILE) unless it exists
  esocial registry generate --persons N [--seed S] [--out FILE]
      synthetic persons in households: loaded into the register (with family links),
      or written to FILE as CSV for `esocial registry import`
  esocial registry import FILE [--format csv|ndjson] [--address HOST:PORT]
      stream FILE to the registry's ImportPersons; the token is read from ESOCIAL_TOKEN
      (`export ESOCIAL_TOKEN=$(esocial login --cert … --key …)`)";

pub async fn run(settings: &ProcessSettings, arguments: &[String]) -> anyhow::Result<()> {
    let arguments = Arguments::parse(arguments, USAGE)?;
    match arguments.command() {
        Some("signing-key") => {
            let path = arguments.get("out").map_or_else(|| settings.registry.signing_key_file.clone(), PathBuf::from);
            let created = esocial_registry::ensure_signing_key(&path)?;
            println!("register signing key {}: {}", if created { "created" } else { "already there" }, path.display());
            Ok(())
        }
        Some("generate") => {
            let persons =
                arguments.number("persons")?.ok_or_else(|| anyhow::anyhow!("--persons is required\n{USAGE}"))?;
            let seed = arguments.number("seed")?.unwrap_or(2026);
            match arguments.get("out") {
                Some(out) => write_generated(settings, persons, seed, &PathBuf::from(out)).await,
                None => load_generated(settings, persons, seed).await,
            }
        }
        Some("import") => {
            let file = arguments.positional.get(1).ok_or_else(|| anyhow::anyhow!("which file?\n{USAGE}"))?;
            let address =
                arguments.get("address").map_or_else(|| settings.registry.listen_addr.to_string(), str::to_owned);
            import(file, arguments.get("format"), &address).await
        }
        _ => Err(anyhow::anyhow!("{USAGE}")),
    }
}

/// The territorial units the registry has replicated (the generator's
/// places); the registry must have seen the classifier's events.
async fn load_generated(settings: &ProcessSettings, persons: u64, seed: u64) -> anyhow::Result<()> {
    let server = esocial_registry::RegistryServer::build(settings.registry.clone()).await?;
    let started = Instant::now();
    let generated = esocial_registry::generate::load(server.registry(), persons, seed, |done| {
        let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
        eprint!("\r  {done} persons generated ({rate:.0}/s)   ");
    })
    .await?;
    eprintln!();
    println!(
        "{} households, {} persons: {} registered, {} already in the register, {} rejected; {} family links; {:.1} s",
        generated.households,
        generated.persons,
        generated.accepted,
        generated.duplicates,
        generated.rejected,
        generated.family_links,
        started.elapsed().as_secs_f64()
    );
    server.pool().close().await;
    Ok(())
}

/// Persons for a file: the territories are the settlements of the
/// classifier's seed data (no database needed).
async fn write_generated(
    _settings: &ProcessSettings,
    persons: u64,
    seed: u64,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let territories = esocial_classifier::seed::settlement_codes()?;
    let mut generator = esocial_people::Generator::new(seed, territories)?;
    let file =
        std::fs::File::create(out).map_err(|error| anyhow::anyhow!("cannot create {}: {error}", out.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    writer.write_all(esocial_registry::generate::CSV_HEADER.as_bytes())?;
    let mut written = 0u64;
    let mut row = String::new();
    while written < persons {
        let household = generator.next_household()?;
        for person in &household.members {
            row.clear();
            esocial_registry::generate::push_csv_row(&mut row, person);
            writer.write_all(row.as_bytes())?;
            written += 1;
        }
    }
    writer.flush()?;
    println!("{written} persons written to {}", out.display());
    Ok(())
}

/// Streams a file to ImportPersons in 256 KiB chunks, showing progress.
async fn import(file: &str, format: Option<&str>, address: &str) -> anyhow::Result<()> {
    let token = std::env::var("ESOCIAL_TOKEN")
        .map_err(|_| anyhow::anyhow!("ESOCIAL_TOKEN is not set: sign in with `esocial login`"))?;
    let format = match format.map(str::to_ascii_lowercase).as_deref() {
        Some("csv") | None if !file.ends_with(".ndjson") && !file.ends_with(".jsonl") => pb::ImportFormat::Csv,
        Some("ndjson") | None => pb::ImportFormat::Ndjson,
        Some(other) => anyhow::bail!("--format must be csv or ndjson, not {other:?}"),
    };
    let total = std::fs::metadata(file).map_err(|error| anyhow::anyhow!("{file}: {error}"))?.len();
    let mut reader = tokio::fs::File::open(file).await?;
    let request_id = uuid::Uuid::new_v4().to_string();
    let (sender, receiver) = tokio::sync::mpsc::channel::<pb::ImportPersonsChunk>(8);
    let started = Instant::now();
    let sending = tokio::spawn(async move {
        use tokio::io::AsyncReadExt as _;
        let mut sent = 0u64;
        let mut first = true;
        loop {
            let mut buffer = vec![0u8; 256 * 1024];
            let read = reader.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            buffer.truncate(read);
            let chunk = pb::ImportPersonsChunk {
                request_id: if first { request_id.clone() } else { String::new() },
                format: format.into(),
                source_document: String::new(),
                data: buffer,
            };
            first = false;
            if sender.send(chunk).await.is_err() {
                break;
            }
            sent += u64::try_from(read).unwrap_or_default();
            let percent = if total == 0 { 100.0 } else { sent as f64 * 100.0 / total as f64 };
            eprint!("\r  sent {sent} of {total} bytes ({percent:.0}%)   ");
        }
        anyhow::Ok(())
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?.connect().await?;
    let mut client = pb::registry_service_client::RegistryServiceClient::new(channel);
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(receiver));
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
    let response = client
        .import_persons(request)
        .await
        .map_err(|status| anyhow::anyhow!("{}: {}", status.code(), status.message()))?;
    sending.await??;
    eprintln!();
    let report = response.into_inner();
    println!(
        "import {}: {} rows, {} registered, {} rejected, {} duplicates in {:.1} s ({:.0} rows/s)",
        report.import_id,
        report.rows,
        report.accepted,
        report.rejected,
        report.duplicates,
        started.elapsed().as_secs_f64(),
        report.rows as f64 / started.elapsed().as_secs_f64().max(0.001)
    );
    for problem in report.problems.iter().take(20) {
        println!("  row {}: {} {}", problem.row, problem.person_id, problem.reason);
    }
    if report.problems.len() > 20 {
        println!("  … `GetImportReport` lists them all");
    }
    Ok(())
}
