//! The sandbox: every service in one process, seeded, with a local token
//! signing key standing in for the identity service.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use esocial_auth::{Audience, Claims, Role, SigningKey};
use esocial_kit::config::{CommonSettings, Env};
use esocial_kit::shutdown::Shutdown;

use crate::services::{self, ProcessSettings};

const KEY_FILE: &str = "sandbox-signing-key.pem";
const TOKEN_MINUTES_MAX: u64 = 24 * 60;

fn key_path(common: &CommonSettings) -> PathBuf {
    common.data_dir.join(KEY_FILE)
}

/// The sandbox signing key, created on first use, and its JWKS written where
/// the services read it.
fn ensure_sandbox_keys(common: &CommonSettings) -> anyhow::Result<SigningKey> {
    let path = key_path(common);
    let key = if path.exists() {
        SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&path)?)?
    } else {
        std::fs::create_dir_all(&common.data_dir)?;
        let key = SigningKey::generate();
        write_private(&path, key.private_pkcs8_pem())?;
        key
    };
    if let Some(directory) = common.auth.jwks_file.parent().filter(|directory| !directory.as_os_str().is_empty()) {
        std::fs::create_dir_all(directory)?;
    }
    std::fs::write(&common.auth.jwks_file, serde_json::to_vec_pretty(&SigningKey::key_set([&key]))?)?;
    Ok(key)
}

/// Writes a file readable only by its owner.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

pub async fn up(settings: &ProcessSettings) -> anyhow::Result<()> {
    let common = &settings.classifier.common;
    esocial_kit::db::ensure_database_exists(&common.database_url).await?;
    ensure_sandbox_keys(common)?;
    let shutdown = Shutdown::new();
    services::stop_on_signal(&shutdown);

    let mut bound = Vec::new();
    for name in services::NAMES {
        bound.push(services::build(settings, name, true, &shutdown).await?);
    }
    println!("esocial sandbox is up (Ctrl-C to stop)\n");
    println!("  {:<12} {:<22} protocol", "service", "address");
    for service in &bound {
        println!("  {:<12} {:<22} gRPC, with health and reflection", service.name, service.address);
    }
    let classifier = bound.first().map(|service| service.address.to_string()).unwrap_or_default();
    println!(
        "\nTokens are signed with the sandbox key in {} until the identity service exists:\n\
         \n  TOKEN=$(esocial token --role classifier_admin)\
         \n  grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" -d '{{\"code\":\"BIRTH_ASSISTANCE\"}}' \\\
         \n    {classifier} esocial.classifier.v1.ClassifierService/GetSupportType\n",
        common.data_dir.display()
    );
    let mut tasks = tokio::task::JoinSet::new();
    for service in bound {
        let name = service.name;
        tasks.spawn(async move { (name, service.run().await) });
    }
    let mut outcome = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let (name, result) = joined?;
        if let Err(error) = result {
            // One service failing stops the sandbox.
            shutdown.trigger();
            outcome = Err(error.context(format!("{name} stopped")));
        }
    }
    outcome
}

/// `esocial sandbox-keys`
pub fn create_keys(env: &Env) -> anyhow::Result<()> {
    let common = CommonSettings::from_env(env)?;
    let key = ensure_sandbox_keys(&common)?;
    println!(
        "sandbox key {} in {}, JWKS in {}",
        key.key_id(),
        key_path(&common).display(),
        common.auth.jwks_file.display()
    );
    Ok(())
}

/// `esocial token [--role R]... [--audience A] [--minutes N] [--subject S]`
pub fn print_token(env: &Env, arguments: &[String]) -> anyhow::Result<()> {
    let common = CommonSettings::from_env(env)?;
    let path = key_path(&common);
    if !path.exists() {
        anyhow::bail!("no sandbox key at {}: run `esocial up` first", path.display());
    }
    let key = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&path)?)?;
    let mut roles = Vec::new();
    let mut audiences = Vec::new();
    let mut minutes = 60u64;
    let mut subject = "sandbox-user".to_owned();
    let mut remaining = arguments.iter();
    while let Some(flag) = remaining.next() {
        let value = remaining.next().ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--role" => {
                let role = Role::parse(value).ok_or_else(|| {
                    let known: Vec<&str> = Role::ALL.iter().map(|role| role.as_str()).collect();
                    anyhow::anyhow!("unknown role {value:?}; roles: {}", known.join(", "))
                })?;
                roles.push(role.as_str().to_owned());
            }
            "--audience" => audiences.push(value.clone()),
            "--minutes" => {
                minutes = value.parse()?;
                if !(1..=TOKEN_MINUTES_MAX).contains(&minutes) {
                    anyhow::bail!("--minutes must be between 1 and {TOKEN_MINUTES_MAX}");
                }
            }
            "--subject" => subject.clone_from(value),
            other => anyhow::bail!("unknown option {other:?}"),
        }
    }
    if audiences.is_empty() {
        audiences = services::NAMES.iter().map(|name| format!("esocial.{name}")).collect();
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = Claims {
        iss: common.auth.token_issuer,
        aud: Audience::Many(audiences),
        sub: subject,
        exp: now + minutes * 60,
        iat: now,
        nbf: None,
        jti: uuid::Uuid::new_v4().to_string(),
        roles,
        org: None,
        territories: Vec::new(),
        amr: vec!["sandbox".to_owned()],
    };
    println!("{}", key.sign(&claims)?);
    Ok(())
}
