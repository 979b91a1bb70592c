//! The sandbox: every service in one process, with its own test CA, people
//! with certificates, and seed data.

use esocial_auth::Role;
use esocial_identity::sandbox::ClientSeed;
use esocial_kit::shutdown::Shutdown;

use crate::services::{self, ProcessSettings};

/// Kyiv: the territory the sandbox people serve (identity's sandbox).
const KYIV: &str = "UA80000000000093317";

/// Persons generated into an empty register when the sandbox starts.
pub const SANDBOX_PERSONS: u64 = 1_000;

/// The sandbox's system clients. The Diia portal and the bank come in only
/// through the gateway, so their tokens are good there alone; the gateway
/// exchanges them for the services behind it with its own client.
const SYSTEM_CLIENTS: &[ClientSeed<'static>] = &[
    ClientSeed {
        client_id: "diia",
        name: "Портал Дія (пісочниця)",
        scopes: &[Role::Service],
        audiences: &[esocial_gateway::AUDIENCE],
    },
    ClientSeed {
        client_id: "sandbox-bank",
        name: "Банк (пісочниця)",
        scopes: &[Role::Integrator],
        audiences: &[esocial_gateway::AUDIENCE],
    },
    ClientSeed {
        client_id: "esocial-process",
        name: "E-SOCIAL: обробка заяв",
        scopes: &[Role::Service],
        audiences: &[],
    },
    ClientSeed {
        client_id: esocial_gateway::CLIENT_ID_DEFAULT,
        name: "E-SOCIAL: шлюз обміну",
        scopes: &[Role::Gateway],
        audiences: &[esocial_identity::AUDIENCE],
    },
];

fn member_id(class: &str, first_seven_of_edrpou: u32, subsystem: &str) -> anyhow::Result<String> {
    let edrpou = esocial_identifiers::Edrpou::compose(first_seven_of_edrpou)?;
    Ok(format!("UA/{class}/{edrpou}/{subsystem}"))
}

/// The member systems of the sandbox: the Diia portal and a bank calling in,
/// and esocial's process service calling the other state systems out.
fn sandbox_members() -> anyhow::Result<Vec<esocial_gateway::sandbox::SandboxMember>> {
    let outbound: Vec<String> = esocial_gateway::catalog::compiled()
        .keys()
        .filter(|service| esocial_external::PACKAGES.contains(&esocial_gateway::catalog::package_of(service)))
        .map(|service| format!("/{service}/*"))
        .collect();
    Ok(vec![
        esocial_gateway::sandbox::SandboxMember {
            member_id: member_id("GOV", 4_322_085, "diia")?,
            name: "Портал Дія".to_owned(),
            client_id: "diia".to_owned(),
            rights: vec![
                "/esocial.registry.v1.IdpService/*".to_owned(),
                "/esocial.classifier.v1.ClassifierService/GetSupportType".to_owned(),
                "/esocial.classifier.v1.ClassifierService/ListSupportTypes".to_owned(),
                "/esocial.classifier.v1.ClassifierService/GetReferenceEntry".to_owned(),
                "/esocial.classifier.v1.ClassifierService/SearchReferenceEntries".to_owned(),
            ],
            event_types: vec![
                "registry.idp.certificate.issued".to_owned(),
                "registry.idp.certificate.revoked".to_owned(),
            ],
        },
        esocial_gateway::sandbox::SandboxMember {
            member_id: "UA/COM/14360506/bank".to_owned(),
            name: "Банк".to_owned(),
            client_id: "sandbox-bank".to_owned(),
            rights: vec!["/esocial.registry.v1.IdpService/VerifyIdpCertificate".to_owned()],
            event_types: vec!["registry.idp.certificate.revoked".to_owned()],
        },
        esocial_gateway::sandbox::SandboxMember {
            member_id: member_id("GOV", 3_728_672, "esocial-process")?,
            name: "E-SOCIAL: обробка заяв".to_owned(),
            client_id: "esocial-process".to_owned(),
            rights: outbound,
            event_types: Vec::new(),
        },
    ])
}

/// Creates the sandbox CA, identity master key and register signing key if
/// missing, migrates, and creates the sandbox people.
pub async fn init(settings: &ProcessSettings) -> anyhow::Result<Vec<esocial_identity::sandbox::SandboxPerson>> {
    let common = settings.common();
    esocial_kit::db::ensure_database_exists(&common.database_url).await?;
    esocial_identity::sandbox::ensure_files(&common.data_dir)?;
    esocial_registry::ensure_signing_key(&settings.registry.signing_key_file)?;
    esocial_gateway::ensure_signing_key(&settings.gateway.signing_key_file)?;
    let identity = esocial_identity::IdentityServer::build(settings.identity.clone()).await?;
    let people = esocial_identity::sandbox::seed_people(identity.identity(), &common.data_dir).await?;
    esocial_identity::sandbox::seed_system_clients(identity.identity(), &common.data_dir, SYSTEM_CLIENTS).await?;
    identity.pool().close().await;
    esocial_gateway::sandbox::ensure_members(common, &sandbox_members()?).await?;
    Ok(people)
}

pub async fn up(settings: &ProcessSettings) -> anyhow::Result<()> {
    let common = settings.common();
    esocial_kit::db::ensure_database_exists(&common.database_url).await?;
    esocial_identity::sandbox::ensure_files(&common.data_dir)?;
    esocial_registry::ensure_signing_key(&settings.registry.signing_key_file)?;
    esocial_gateway::ensure_signing_key(&settings.gateway.signing_key_file)?;
    let shutdown = Shutdown::new();
    services::stop_on_signal(&shutdown);

    // Identity first: the others verify tokens with its keys.
    let identity = esocial_identity::IdentityServer::build(settings.identity.clone()).await?;
    let people = esocial_identity::sandbox::seed_people(identity.identity(), &common.data_dir).await?;
    let systems =
        esocial_identity::sandbox::seed_system_clients(identity.identity(), &common.data_dir, SYSTEM_CLIENTS).await?;
    let mut bound = vec![services::build_identity(settings, identity, &shutdown).await?];
    let mut tasks = tokio::task::JoinSet::new();
    let first = bound.remove(0);
    let mut endpoints = vec![(first.name, first.addresses.clone())];
    tasks.spawn(async move { ("identity", first.run().await) });

    let classifier = esocial_classifier::Classifier::build(settings.classifier.clone()).await?;
    let report = classifier.seed().await?;
    tracing::info!(
        support_type_versions = report.support_type_versions,
        reference_entries = report.reference_entries,
        "classifier seed data loaded"
    );
    let listener = tokio::net::TcpListener::bind(settings.classifier.listen_addr)
        .await
        .map_err(|error| anyhow::anyhow!("classifier cannot listen on {}: {error}", settings.classifier.listen_addr))?;
    endpoints.push((esocial_classifier::NAME, vec![("gRPC", listener.local_addr()?)]));
    let stop = shutdown.wait();
    tasks.spawn(async move { ("classifier", classifier.run(listener, stop).await) });

    let registry = esocial_registry::RegistryServer::build(settings.registry.clone()).await?;
    let register = registry.registry().clone();
    let listener = tokio::net::TcpListener::bind(settings.registry.listen_addr)
        .await
        .map_err(|error| anyhow::anyhow!("registry cannot listen on {}: {error}", settings.registry.listen_addr))?;
    endpoints.push((esocial_registry::NAME, vec![("gRPC", listener.local_addr()?)]));
    let stop = shutdown.wait();
    tasks.spawn(async move { ("registry", registry.run(listener, stop).await) });
    sandbox_persons(&register).await?;

    let simulators = services::build(settings, services::SIMULATORS, &shutdown).await?;
    endpoints.push((simulators.name, simulators.addresses.clone()));
    tasks.spawn(async move { (services::SIMULATORS, simulators.run().await) });

    // The gateway last, in front of the others, with the sandbox's members.
    let added = esocial_gateway::sandbox::ensure_members(common, &sandbox_members()?).await?;
    tracing::info!(added, "sandbox member systems registered");
    let gateway = esocial_gateway::Gateway::build(settings.gateway.clone()).await?;
    let listener = tokio::net::TcpListener::bind(settings.gateway.listen_addr)
        .await
        .map_err(|error| anyhow::anyhow!("gateway cannot listen on {}: {error}", settings.gateway.listen_addr))?;
    endpoints.push((esocial_gateway::NAME, vec![("gRPC", listener.local_addr()?)]));
    let stop = shutdown.wait();
    tasks.spawn(async move { ("gateway", gateway.run(listener, stop).await) });

    println!("esocial sandbox is up (Ctrl-C to stop)\n");
    println!("  {:<12} {:<8} address", "service", "protocol");
    for (name, addresses) in &endpoints {
        for (protocol, address) in addresses {
            println!("  {name:<12} {protocol:<8} {address}");
        }
    }
    println!("\nSandbox people (certificates from the sandbox CA in {}):", common.data_dir.display());
    for person in &people {
        let roles: Vec<&str> = person.roles.iter().map(|role| role.as_str()).collect();
        println!("  {:<18} {} ({})", person.handle, person.full_name, roles.join(", "));
    }
    if let Some(person) = people.iter().find(|person| person.handle == "classifier-admin") {
        let classifier = endpoints.iter().find(|(name, _)| *name == esocial_classifier::NAME);
        let address = classifier
            .and_then(|(_, addresses)| addresses.first())
            .map(|(_, address)| address.to_string())
            .unwrap_or_default();
        println!(
            "\nSign in with a qualified e-signature and call the classifier:\n\
             \n  TOKEN=$(esocial login --cert {} --key {})\
             \n  grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" -d '{{\"code\":\"BIRTH_ASSISTANCE\"}}' \\\
             \n    {address} esocial.classifier.v1.ClassifierService/GetSupportType\n",
            person.certificate.display(),
            person.private_key.display(),
        );
    }
    if let Some(person) = people.iter().find(|person| person.handle == "specialist") {
        let address = endpoints
            .iter()
            .find(|(name, _)| *name == esocial_registry::NAME)
            .and_then(|(_, addresses)| addresses.first())
            .map(|(_, address)| address.to_string())
            .unwrap_or_default();
        let rnokpp = register.some_rnokpp_within(KYIV).await?.unwrap_or_default();
        println!(
            "The specialist serves Kyiv and reads its persons in the register (each read is recorded):\n\
             \n  TOKEN=$(esocial login --cert {} --key {})\
             \n  grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" \\\
             \n    -d '{{\"rnokpp\":\"{rnokpp}\",\"purpose\":\"sandbox\"}}' {address} esocial.registry.v1.RegistryService/GetPerson\n",
            person.certificate.display(),
            person.private_key.display(),
        );
    }
    if let Some(diia) = systems.iter().find(|system| system.client_id == "diia") {
        let gateway = settings.gateway.listen_addr;
        println!(
            "Other state systems come in through the gateway. As the Diia portal (a member system):\n\
             \n  TOKEN=$(esocial client-token --client-id diia --key {})\
             \n  grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" {gateway} esocial.gateway.v1.MetaService/ListAllowedMethods\
             \n  grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" -d '{{\"code\":\"1234567890123452\"}}' \\\
             \n    {gateway} esocial.registry.v1.IdpService/VerifyIdpCertificate\n\
             \nEvery exchange is in the gateway's message log; `esocial gateway verify-log` checks its chain.\n",
            diia.private_key.display(),
        );
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

/// Fills an empty register with generated persons once the registry has the
/// classifier's territorial units.
async fn sandbox_persons(registry: &esocial_registry::Registry) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    while registry.territories.leaves(esocial_kit::time::kyiv_today()).await.is_empty() {
        if started.elapsed() > std::time::Duration::from_secs(60) {
            anyhow::bail!(
                "the registry received no territorial units from the classifier within a minute: is NATS up?"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if registry.has_persons().await? {
        return Ok(());
    }
    let generated = esocial_registry::generate::load(registry, SANDBOX_PERSONS, 2026, |_| {}).await?;
    tracing::info!(
        persons = generated.accepted,
        households = generated.households,
        family_links = generated.family_links,
        "sandbox persons registered"
    );
    Ok(())
}
