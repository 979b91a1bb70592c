//! `esocial identity …`: the sandbox CA, certificates for people, the master
//! key, and the first security administrator.

use std::path::PathBuf;

use esocial_identity::ca::KeyAlgorithm;
use esocial_identity::sandbox;

use crate::arguments::Arguments;
use crate::services::ProcessSettings;

pub const USAGE: &str = "usage:
  esocial identity ca init
  esocial identity issue-cert --rnokpp R --name \"FULL NAME\" --out DIR [--algorithm ecdsa-p256|ed25519] [--days N]
  esocial identity master-key --out FILE
  esocial identity bootstrap-admin --rnokpp R --name \"FULL NAME\" --cert FILE
      --organization-edrpou E --organization-name NAME --territory KATOTTG";

/// The `--name value` options after the subcommand; nothing else.
fn options(arguments: &[String]) -> anyhow::Result<Arguments> {
    let parsed = Arguments::parse(arguments, USAGE)?;
    if let Some(word) = parsed.positional.first() {
        anyhow::bail!("unexpected {word:?}\n{USAGE}");
    }
    Ok(parsed)
}

pub async fn run(settings: &ProcessSettings, arguments: &[String]) -> anyhow::Result<()> {
    let data_dir = &settings.common().data_dir;
    match arguments.first().map(String::as_str) {
        Some("ca") if arguments.get(1).map(String::as_str) == Some("init") => {
            let existed = data_dir.join(sandbox::CA_CERTIFICATE).exists();
            sandbox::ensure_files(data_dir)?;
            let state = if existed { "already there" } else { "created" };
            println!("sandbox CA {state}: {}", data_dir.join(sandbox::CA_CERTIFICATE).display());
            Ok(())
        }
        Some("issue-cert") => {
            let options = options(&arguments[1..])?;
            let rnokpp: esocial_identifiers::Rnokpp =
                options.required("rnokpp")?.parse().map_err(|error| anyhow::anyhow!("--rnokpp: {error}"))?;
            let name = options.required("name")?;
            let out = PathBuf::from(options.required("out")?);
            let algorithm = match options.get("algorithm") {
                None => KeyAlgorithm::EcdsaP256,
                Some(text) => {
                    KeyAlgorithm::parse(text).ok_or_else(|| anyhow::anyhow!("--algorithm: ecdsa-p256 or ed25519"))?
                }
            };
            let days: i64 = options.get("days").map(|text| text.parse()).transpose()?.unwrap_or(730);
            let issued = sandbox::authority(data_dir)?.issue_person(&rnokpp, name, algorithm, -1, days)?;
            std::fs::create_dir_all(&out)?;
            sandbox::write_private(&out.join("private-key.pem"), &issued.private_key_pem)?;
            std::fs::write(out.join("certificate.pem"), &issued.certificate_pem)?;
            println!("{}\n{}", out.join("certificate.pem").display(), out.join("private-key.pem").display());
            Ok(())
        }
        Some("master-key") => {
            let options = options(&arguments[1..])?;
            let out = PathBuf::from(options.required("out")?);
            sandbox::write_private(&out, &esocial_identity::keys::MasterKey::generate_encoded()?)?;
            println!("{}", out.display());
            Ok(())
        }
        Some("bootstrap-admin") => {
            let options = options(&arguments[1..])?;
            let rnokpp = options.required("rnokpp")?.parse().map_err(|error| anyhow::anyhow!("--rnokpp: {error}"))?;
            let edrpou = options
                .required("organization-edrpou")?
                .parse()
                .map_err(|error| anyhow::anyhow!("--organization-edrpou: {error}"))?;
            let territory =
                options.required("territory")?.parse().map_err(|error| anyhow::anyhow!("--territory: {error}"))?;
            let certificate_pem = std::fs::read_to_string(options.required("cert")?)?;
            let der = pem::parse(&certificate_pem).map_err(|error| anyhow::anyhow!("--cert: {error}"))?.into_contents();
            esocial_kit::db::ensure_database_exists(&settings.common().database_url).await?;
            let server = esocial_identity::IdentityServer::build(settings.identity.clone()).await?;
            let organization = (edrpou, options.required("organization-name")?.to_owned(), territory);
            let account = esocial_identity::bootstrap_security_admin(
                server.identity(),
                organization,
                rnokpp,
                options.required("name")?.to_owned(),
                der,
            )
            .await?;
            println!("security administrator {} ({})", account.full_name, account.id);
            Ok(())
        }
        _ => Err(anyhow::anyhow!("{USAGE}")),
    }
}
