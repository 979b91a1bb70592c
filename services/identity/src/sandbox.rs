//! The sandbox's people: an organization and accounts with roles, each with
//! a certificate from the sandbox CA and its private key written to
//! `<data dir>/people/<handle>/`, registered through the same operations as
//! the admin API. Idempotent.

use std::path::{Path, PathBuf};

use esocial_auth::Role;
use esocial_identifiers::{Edrpou, Katottg, Rnokpp, Sex};
use esocial_kit::ApiError;

use crate::admin::AccountFields;
use crate::ca::{CertificateAuthority, KeyAlgorithm};
use crate::domain::{Actor, OrganizationKind};
use crate::service::{Error, Identity};
use crate::store::Store;

/// File names inside a data directory.
pub const CA_CERTIFICATE: &str = "ca/ca-certificate.pem";
pub const CA_PRIVATE_KEY: &str = "ca/ca-private-key.pem";
pub const MASTER_KEY: &str = "identity-master.key";

/// A sandbox person's account and where their certificate and key are.
#[derive(Debug, Clone)]
pub struct SandboxPerson {
    pub handle: &'static str,
    pub full_name: &'static str,
    pub roles: &'static [Role],
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

struct PersonSpec {
    handle: &'static str,
    full_name: &'static str,
    birth: (i32, u32, u32),
    serial: u16,
    sex: Sex,
    position: &'static str,
    roles: &'static [Role],
    algorithm: KeyAlgorithm,
}

const PEOPLE: &[PersonSpec] = &[
    PersonSpec {
        handle: "security-admin",
        full_name: "Коваленко Олена Петрівна",
        birth: (1985, 3, 14),
        serial: 101,
        sex: Sex::Female,
        position: "адміністратор безпеки",
        roles: &[Role::SecurityAdmin],
        algorithm: KeyAlgorithm::EcdsaP256,
    },
    PersonSpec {
        handle: "classifier-admin",
        full_name: "Бондаренко Андрій Миколайович",
        birth: (1979, 11, 2),
        serial: 102,
        sex: Sex::Male,
        position: "адміністратор класифікаторів",
        roles: &[Role::ClassifierAdmin],
        algorithm: KeyAlgorithm::Ed25519,
    },
    PersonSpec {
        handle: "specialist",
        full_name: "Мельник Ірина Василівна",
        birth: (1992, 7, 21),
        serial: 103,
        sex: Sex::Female,
        position: "головний спеціаліст",
        roles: &[Role::SocialSpecialist],
        algorithm: KeyAlgorithm::EcdsaP256,
    },
];

/// Creates the sandbox CA and master key in `data_dir` if they are missing.
pub fn ensure_files(data_dir: &Path) -> anyhow::Result<()> {
    let ca_certificate = data_dir.join(CA_CERTIFICATE);
    if !ca_certificate.exists() {
        std::fs::create_dir_all(data_dir.join("ca"))?;
        let authority = CertificateAuthority::create("esocial sandbox qualified trust service provider")?;
        write_private(&data_dir.join(CA_PRIVATE_KEY), &authority.private_key_pem())?;
        std::fs::write(&ca_certificate, authority.certificate_pem())?;
    }
    let master_key = data_dir.join(MASTER_KEY);
    if !master_key.exists() {
        std::fs::create_dir_all(data_dir)?;
        write_private(&master_key, &crate::keys::MasterKey::generate_encoded()?)?;
    }
    Ok(())
}

/// Loads the sandbox CA from `data_dir`.
pub fn authority(data_dir: &Path) -> anyhow::Result<CertificateAuthority> {
    let certificate = std::fs::read_to_string(data_dir.join(CA_CERTIFICATE)).map_err(|error| {
        anyhow::anyhow!("no sandbox CA in {}: {error} (run `esocial identity ca init`)", data_dir.display())
    })?;
    let key = std::fs::read_to_string(data_dir.join(CA_PRIVATE_KEY))?;
    Ok(CertificateAuthority::load(&certificate, &key)?)
}

/// Writes a file only its owner can read, refusing to overwrite one.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

fn sandbox_edrpou() -> Result<Edrpou, Error> {
    Edrpou::compose(9_900_001).map_err(|error| ApiError::internal(anyhow::anyhow!("sandbox EDRPOU: {error}")).into())
}

/// Creates what is missing of the sandbox organization and people.
pub async fn seed_people(identity: &Identity, data_dir: &Path) -> anyhow::Result<Vec<SandboxPerson>> {
    let actor = Actor { subject: "esocial-sandbox".to_owned(), organization: None };
    let authority = authority(data_dir)?;
    let edrpou = sandbox_edrpou()?;
    let territory: Katottg = "UA80000000000093317".parse()?;
    let pool = identity.store.pool();

    let mut transaction = pool.begin().await?;
    let organization_id = Store::organization_id_by_edrpou(&mut transaction, edrpou.as_str()).await?;
    let organization_id = match organization_id {
        Some(id) => id,
        None => {
            let name = "Пісочниця E-SOCIAL: управління соціального захисту населення".to_owned();
            Identity::create_organization(
                &mut transaction,
                &actor,
                edrpou,
                name,
                OrganizationKind::SocialProtectionBody,
                territory,
            )
            .await?
            .id
        }
    };
    transaction.commit().await?;

    let mut people = Vec::new();
    for spec in PEOPLE {
        let birth = chrono::NaiveDate::from_ymd_opt(spec.birth.0, spec.birth.1, spec.birth.2)
            .ok_or_else(|| anyhow::anyhow!("sandbox birth date"))?;
        let rnokpp = Rnokpp::compose(birth, spec.serial, spec.sex)?;
        let directory = data_dir.join("people").join(spec.handle);
        let certificate_path = directory.join("certificate.pem");
        let key_path = directory.join("private-key.pem");

        let mut transaction = pool.begin().await?;
        let existing = Store::account_id_by_rnokpp(&mut transaction, rnokpp.as_str()).await?;
        let account_id = match existing {
            Some(id) => id,
            None => {
                let fields = AccountFields {
                    full_name: spec.full_name.to_owned(),
                    organization_id,
                    position: spec.position.to_owned(),
                    territories: vec![territory],
                };
                let account = Identity::create_account(&mut transaction, &actor, rnokpp, fields).await?;
                Identity::assign_roles(&mut transaction, &actor, account.id, spec.roles.to_vec()).await?;
                account.id
            }
        };
        let has_certificate =
            Store::active_certificate_of(&mut transaction, account_id).await.map_err(Error::from)?.is_some();
        if !(has_certificate && certificate_path.exists() && key_path.exists()) {
            let issued = authority.issue_person(&rnokpp, spec.full_name, spec.algorithm, -1, 730)?;
            identity.register_certificate(&mut transaction, &actor, account_id, issued.certificate_der.clone()).await?;
            std::fs::create_dir_all(&directory)?;
            let _ = std::fs::remove_file(&key_path);
            write_private(&key_path, &issued.private_key_pem)?;
            std::fs::write(&certificate_path, &issued.certificate_pem)?;
        }
        transaction.commit().await?;
        people.push(SandboxPerson {
            handle: spec.handle,
            full_name: spec.full_name,
            roles: spec.roles,
            certificate: certificate_path,
            private_key: key_path,
        });
    }
    Ok(people)
}

/// A system client of the sandbox: other state systems calling through the
/// gateway, and esocial's own services calling out.
#[derive(Debug, Clone)]
pub struct SandboxSystem {
    pub client_id: String,
    pub name: String,
    /// Its Ed25519 key (PKCS#8 PEM), for client credentials.
    pub private_key: PathBuf,
}

/// A system client of the sandbox.
#[derive(Debug, Clone, Copy)]
pub struct ClientSeed<'a> {
    pub client_id: &'a str,
    pub name: &'a str,
    pub scopes: &'a [Role],
    /// The services its tokens are good for; empty: every service.
    pub audiences: &'a [&'a str],
}

/// Where a sandbox system client's private key is kept.
pub fn system_client_key_path(data_dir: &Path, client_id: &str) -> PathBuf {
    data_dir.join("systems").join(client_id).join("private-key.pem")
}

/// Creates what is missing of the sandbox's system clients: each gets a key
/// in [`system_client_key_path`], registered (or its key rotated, when the
/// file was lost) through the admin operations.
pub async fn seed_system_clients(
    identity: &Identity,
    data_dir: &Path,
    clients: &[ClientSeed<'_>],
) -> anyhow::Result<Vec<SandboxSystem>> {
    let actor = Actor { subject: "esocial-sandbox".to_owned(), organization: None };
    let pool = identity.store.pool();
    let mut systems = Vec::with_capacity(clients.len());
    for seed in clients {
        let ClientSeed { client_id, name, scopes, audiences } = *seed;
        let key_path = system_client_key_path(data_dir, client_id);
        let directory = key_path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut transaction = pool.begin().await?;
        let existing = Store::system_client(&mut transaction, client_id).await.map_err(Error::from)?;
        if existing.is_none() || !key_path.exists() {
            let key = esocial_auth::SigningKey::generate();
            match existing {
                None => {
                    let client = crate::domain::SystemClient {
                        client_id: client_id.to_owned(),
                        name: name.to_owned(),
                        public_jwk: key.public_jwk().clone(),
                        scopes: scopes.to_vec(),
                        active: true,
                        audiences: audiences.iter().map(|audience| (*audience).to_owned()).collect(),
                        version: 1,
                    };
                    Identity::register_system_client(&mut transaction, &actor, client).await?;
                }
                Some(_) => {
                    Identity::rotate_system_client_key(&mut transaction, &actor, client_id, key.public_jwk()).await?;
                }
            }
            std::fs::create_dir_all(&directory)?;
            let _ = std::fs::remove_file(&key_path);
            write_private(&key_path, key.private_pkcs8_pem())?;
        }
        transaction.commit().await?;
        systems.push(SandboxSystem { client_id: client_id.to_owned(), name: name.to_owned(), private_key: key_path });
    }
    Ok(systems)
}
