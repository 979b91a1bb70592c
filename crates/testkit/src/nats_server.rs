use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::TempDir;

/// A `nats-server` process of the test's own, with JetStream storing in a
/// temporary directory, that the test can stop and start again on the same
/// port and store (a real outage and recovery).
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    store: TempDir,
    child: Option<Child>,
}

/// Where the server binary is: `NATS_SERVER_BIN`, then `PATH`, then Debian's.
fn find_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("NATS_SERVER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let from_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|directory| directory.join("nats-server"))
        .find(|candidate| candidate.is_file());
    from_path
        .or_else(|| Some(PathBuf::from("/usr/sbin/nats-server")).filter(|path| path.is_file()))
        .ok_or_else(|| anyhow::anyhow!("nats-server not found: install it or set NATS_SERVER_BIN"))
}

impl NatsServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub async fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut server = Self { binary: find_binary()?, port, store: TempDir::new("nats")?, child: None };
        server.resume().await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the server (as a crash would) and waits for it to exit.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Starts the server again on the same port and store.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.address()).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("nats-server did not start on port {}", self.port)
    }
}
