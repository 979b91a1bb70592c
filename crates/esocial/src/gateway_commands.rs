//! `esocial gateway …`: the gateway's signing key and the verification of
//! its message log.

use std::path::PathBuf;

use crate::arguments::Arguments;
use crate::services::ProcessSettings;

pub const USAGE: &str = "usage: esocial gateway <command>

  esocial gateway signing-key [--out FILE]
      create the key that signs message log checkpoints (default: ESOCIAL_GATEWAY_SIGNING_KEY_FILE) unless it exists
  esocial gateway verify-log [--node NODE] [--no-witness] [--earlier-key FILE]...
      recompute every message log chain (or one node's) from its first entry, check the stored bodies
      against their digests and every signed checkpoint against the signing key (and the earlier
      signing keys given: a new key starts a new chain under a new node name, and the chains of the
      nodes before it verify with the keys they were written with), and check that each
      chain reaches the newest checkpoint the event stream holds and matches every one it holds (a
      copy outside the database, so the end of a chain removed with its checkpoints is found;
      --no-witness skips it when NATS is not reachable); print the first broken entry of each
      chain; exit 1 if any chain is broken";

pub async fn run(settings: &ProcessSettings, arguments: &[String]) -> anyhow::Result<()> {
    let arguments = Arguments::parse_with_flags(arguments, &["no-witness"], USAGE)?;
    match arguments.command() {
        Some("signing-key") => {
            let path = arguments.get("out").map_or_else(|| settings.gateway.signing_key_file.clone(), PathBuf::from);
            let created = esocial_gateway::ensure_signing_key(&path)?;
            println!("gateway signing key {}: {}", if created { "created" } else { "already there" }, path.display());
            Ok(())
        }
        Some("verify-log") => {
            let with_witness = !arguments.flag("no-witness");
            let earlier_keys: Vec<PathBuf> = arguments.all("earlier-key").iter().map(PathBuf::from).collect();
            let reports = esocial_gateway::verify_stored_log(
                &settings.gateway,
                arguments.get("node"),
                with_witness,
                &earlier_keys,
            )
            .await?;
            if !with_witness {
                println!("not compared with the event stream's checkpoints: removed ends of chains may go unnoticed");
            }
            if reports.is_empty() {
                println!("the message log is empty");
            }
            let mut broken = 0;
            for report in &reports {
                match &report.broken {
                    None => println!(
                        "{}: intact, {} entries, {} checkpoints, signed through entry {}{}",
                        report.node,
                        report.entries,
                        report.checkpoints,
                        report.signed_through,
                        if with_witness {
                            format!(", the event stream's newest checkpoint at entry {}", report.witnessed_through)
                        } else {
                            String::new()
                        }
                    ),
                    Some((sequence, problem)) => {
                        broken += 1;
                        println!("{}: BROKEN at entry {sequence}: {problem}", report.node);
                    }
                }
            }
            if broken > 0 {
                anyhow::bail!("{broken} of {} message log chains do not verify", reports.len());
            }
            Ok(())
        }
        _ => Err(anyhow::anyhow!("{USAGE}")),
    }
}
