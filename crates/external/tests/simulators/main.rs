//! The simulators of the six external systems, called through the gRPC
//! adapters, as esocial's processes will call them through the gateway.
//! Each test starts its own simulators on a port-0 listener.

mod adapters;
mod births;
mod notifications;
mod payments;
mod reflection;
mod registers;

use std::net::SocketAddr;

use chrono::{Days, NaiveDate};
use esocial_external::{FixedToken, GatewayClients, SandboxAdult, sandbox_adults, serve_simulators};
use esocial_identifiers::Sex;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint};

/// Running simulators and adapters pointed straight at them (the gateway is
/// not in between: it forwards by package and changes nothing the adapters
/// see).
#[derive(Debug)]
pub struct Sandbox {
    pub clients: GatewayClients,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Sandbox {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address: SocketAddr = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_simulators(listener, async move {
            let _ = stopped.await;
        }));
        let channel = Endpoint::from_shared(format!("http://{address}")).expect("endpoint").connect_lazy();
        let clients = GatewayClients::new(channel.clone(), FixedToken::new("test-token"));
        Self { clients, channel, stop: Some(stop), server: Some(server) }
    }

    /// Stops the server and waits for it to end cleanly.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ended cleanly");
        }
    }
}

/// A day a few days ago, as a newborn's birth date.
pub fn recent_birth_date() -> NaiveDate {
    esocial_kit::time::kyiv_today().checked_sub_days(Days::new(3)).expect("date")
}

/// A married woman of child-bearing age, a citizen with a declared
/// residence, and her husband.
pub fn parents() -> (&'static SandboxAdult, &'static SandboxAdult) {
    let adults = sandbox_adults();
    let today = esocial_kit::time::kyiv_today();
    adults
        .iter()
        .filter(|adult| adult.sex == Sex::Female && adult.ukrainian_citizen && adult.declared_residence.is_some())
        .filter(|adult| {
            let age = today.years_since(adult.birth_date).unwrap_or(0);
            (20..=42).contains(&age)
        })
        .find_map(|mother| {
            let father = adults.iter().find(|adult| Some(adult.rnokpp) == mother.spouse)?;
            Some((mother, father))
        })
        .expect("the sandbox has a couple who can be parents")
}
