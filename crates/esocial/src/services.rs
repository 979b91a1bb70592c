//! The services this binary knows, their settings, and running them.

use std::net::SocketAddr;

use esocial_kit::config::{ConfigError, Env, VARIABLES, Variable};
use esocial_kit::shutdown::Shutdown;

/// The simulated external state systems (sandbox and tests).
pub const SIMULATORS: &str = "simulators";

/// Every service the binary can run, by name, in start order (identity
/// first: the others verify tokens with its keys; the gateway last, in
/// front of them).
pub const NAMES: &[&str] =
    &[esocial_identity::NAME, esocial_classifier::NAME, esocial_registry::NAME, SIMULATORS, esocial_gateway::NAME];

pub const SIMULATORS_ADDR: Variable = Variable {
    name: "ESOCIAL_SIMULATORS_ADDR",
    default: "127.0.0.1:50070",
    meaning: "where the simulators of the external state systems listen (civil registry, demographic and tax registers, e-health, a bank, Diia notifications)",
};

/// Every environment variable the binary reads: the kit's and each service's.
pub fn variables() -> Vec<Variable> {
    let mut all: Vec<Variable> = VARIABLES.to_vec();
    all.extend_from_slice(esocial_identity::VARIABLES);
    all.extend_from_slice(esocial_classifier::VARIABLES);
    all.extend_from_slice(esocial_registry::VARIABLES);
    all.extend_from_slice(esocial_gateway::VARIABLES);
    all.push(SIMULATORS_ADDR);
    all
}

/// The settings of every service, all read and checked up front.
#[derive(Debug, Clone)]
pub struct ProcessSettings {
    pub identity: esocial_identity::Settings,
    pub classifier: esocial_classifier::Settings,
    pub registry: esocial_registry::Settings,
    pub gateway: esocial_gateway::Settings,
    pub simulators_addr: SocketAddr,
}

impl ProcessSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let identity = esocial_identity::Settings::from_env(env);
        let classifier = esocial_classifier::Settings::from_env(env);
        let registry = esocial_registry::Settings::from_env(env);
        let gateway = esocial_gateway::Settings::from_env(env);
        let simulators_addr = {
            let mut reader = esocial_kit::config::Reader::new(env);
            let address = reader.socket_addr(SIMULATORS_ADDR);
            reader.finish().map(|()| address)
        };
        match (identity, classifier, registry, gateway, simulators_addr) {
            (Ok(identity), Ok(classifier), Ok(registry), Ok(gateway), Ok(simulators_addr)) => {
                Ok(Self { identity, classifier, registry, gateway, simulators_addr })
            }
            (identity, classifier, registry, gateway, simulators_addr) => {
                // All read the kit's variables: report each problem once.
                let mut problems: Vec<String> = Vec::new();
                for error in [identity.err(), classifier.err(), registry.err(), gateway.err(), simulators_addr.err()]
                    .into_iter()
                    .flatten()
                {
                    for problem in error.problems {
                        if !problems.contains(&problem) {
                            problems.push(problem);
                        }
                    }
                }
                Err(ConfigError { problems })
            }
        }
    }

    pub fn common(&self) -> &esocial_kit::config::CommonSettings {
        &self.classifier.common
    }
}

/// A service built and bound, ready to run.
pub struct Bound {
    pub name: &'static str,
    /// gRPC first; identity also serves HTTP.
    pub addresses: Vec<(&'static str, SocketAddr)>,
    run: std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Bound")
            .field("name", &self.name)
            .field("addresses", &self.addresses)
            .finish_non_exhaustive()
    }
}

impl Bound {
    pub async fn run(self) -> anyhow::Result<()> {
        self.run.await
    }
}

async fn bind(address: SocketAddr, what: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| anyhow::anyhow!("{what} cannot listen on {address}: {error}"))
}

/// Builds a service (pool, migrations, connections) and binds its listeners.
pub async fn build(settings: &ProcessSettings, name: &str, shutdown: &Shutdown) -> anyhow::Result<Bound> {
    match name {
        esocial_identity::NAME => {
            let identity = esocial_identity::IdentityServer::build(settings.identity.clone()).await?;
            build_identity(settings, identity, shutdown).await
        }
        esocial_classifier::NAME => {
            let classifier = esocial_classifier::Classifier::build(settings.classifier.clone()).await?;
            let listener = bind(settings.classifier.listen_addr, name).await?;
            let address = listener.local_addr()?;
            Ok(Bound {
                name: esocial_classifier::NAME,
                addresses: vec![("gRPC", address)],
                run: Box::pin(classifier.run(listener, shutdown.wait())),
            })
        }
        esocial_registry::NAME => {
            let registry = esocial_registry::RegistryServer::build(settings.registry.clone()).await?;
            let listener = bind(settings.registry.listen_addr, name).await?;
            let address = listener.local_addr()?;
            Ok(Bound {
                name: esocial_registry::NAME,
                addresses: vec![("gRPC", address)],
                run: Box::pin(registry.run(listener, shutdown.wait())),
            })
        }
        esocial_gateway::NAME => {
            let gateway = esocial_gateway::Gateway::build(settings.gateway.clone()).await?;
            let listener = bind(settings.gateway.listen_addr, name).await?;
            let address = listener.local_addr()?;
            Ok(Bound {
                name: esocial_gateway::NAME,
                addresses: vec![("gRPC", address)],
                run: Box::pin(gateway.run(listener, shutdown.wait())),
            })
        }
        SIMULATORS => {
            let listener = bind(settings.simulators_addr, name).await?;
            let address = listener.local_addr()?;
            Ok(Bound {
                name: SIMULATORS,
                addresses: vec![("gRPC", address)],
                run: Box::pin(esocial_external::serve_simulators(listener, shutdown.wait())),
            })
        }
        other => Err(anyhow::anyhow!("unknown service {other:?}; services: {}", NAMES.join(", "))),
    }
}

/// Binds an identity service that is already built.
pub async fn build_identity(
    settings: &ProcessSettings,
    identity: esocial_identity::IdentityServer,
    shutdown: &Shutdown,
) -> anyhow::Result<Bound> {
    let grpc = bind(settings.identity.listen_addr, "identity").await?;
    let http = bind(settings.identity.http_addr, "identity (HTTP)").await?;
    let addresses = vec![("gRPC", grpc.local_addr()?), ("HTTP", http.local_addr()?)];
    let listeners = esocial_identity::Listeners { grpc, http };
    Ok(Bound { name: esocial_identity::NAME, addresses, run: Box::pin(identity.run(listeners, shutdown.wait())) })
}

/// Triggers `shutdown` on SIGTERM or SIGINT.
pub fn stop_on_signal(shutdown: &Shutdown) {
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        esocial_kit::shutdown::signal().await;
        shutdown.trigger();
    });
}

pub async fn serve(settings: &ProcessSettings, name: &str) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    stop_on_signal(&shutdown);
    let bound = build(settings, name, &shutdown).await?;
    for (protocol, address) in &bound.addresses {
        tracing::info!(service = bound.name, protocol, %address, "serving");
    }
    bound.run().await
}

pub async fn migrate(settings: &ProcessSettings) -> anyhow::Result<()> {
    esocial_kit::db::ensure_database_exists(&settings.common().database_url).await?;
    esocial_identity::migrate(settings.common()).await?;
    esocial_classifier::migrate(settings.common()).await?;
    esocial_registry::migrate(settings.common()).await?;
    esocial_gateway::migrate(settings.common()).await?;
    println!("migrated: identity, classifier, registry, gateway");
    Ok(())
}

/// Reference data: the classifier's support types and reference books.
pub async fn seed(settings: &ProcessSettings) -> anyhow::Result<()> {
    let classifier = esocial_classifier::Classifier::build(settings.classifier.clone()).await?;
    let report = classifier.seed().await?;
    println!(
        "classifier: {} support type versions and {} reference entries added",
        report.support_type_versions, report.reference_entries
    );
    classifier.pool().close().await;
    Ok(())
}

pub fn print_configuration() {
    println!("| variable | default | meaning |");
    println!("| --- | --- | --- |");
    for variable in variables() {
        let default =
            if variable.default.is_empty() { "(unset)".to_owned() } else { format!("`{}`", variable.default) };
        println!("| `{}` | {default} | {} |", variable.name, variable.meaning);
    }
}

/// Asks the gRPC health service at `address` about the whole server.
pub async fn check_health(address: &str) -> anyhow::Result<()> {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(3));
    let mut client = HealthClient::new(endpoint.connect().await?);
    let status = client.check(HealthCheckRequest { service: String::new() }).await?.into_inner().status;
    if status == ServingStatus::Serving as i32 {
        println!("SERVING");
        Ok(())
    } else {
        anyhow::bail!("{address} is not serving (status {status})")
    }
}
