use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy in front of a server, which a test can cut (every connection
/// is closed and new ones are refused) and restore: a real network failure,
/// seen by the client as its server going away. It can also hold what the
/// client sends for a while before passing it on: a slow way to the server.
#[derive(Debug)]
pub struct TcpProxy {
    address: SocketAddr,
    open: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        Self::start_slow(target, Duration::ZERO).await
    }

    /// Holds every chunk the client sends for `delay` before passing it on;
    /// the server's answers come back at once.
    pub async fn start_slow(target: SocketAddr, delay: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let open = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0u64);
        let accept_open = open.clone();
        let accept_cut = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !accept_open.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut_signal = accept_cut.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = relay(&mut client, &mut server, delay) => {}
                        _ = cut_signal.changed() => {}
                    }
                });
            }
        });
        Ok(Self { address, open, cut, task })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cut.send_modify(|generation| *generation += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// Relays between `client` and `server` until either side closes, holding
/// each chunk from the client for `delay`.
async fn relay(client: &mut TcpStream, server: &mut TcpStream, delay: Duration) {
    if delay.is_zero() {
        let _ = tokio::io::copy_bidirectional(client, server).await;
        return;
    }
    let (mut from_client, mut to_client) = client.split();
    let (mut from_server, mut to_server) = server.split();
    let held = async {
        let mut chunk = vec![0_u8; 64 * 1024];
        while let Ok(read @ 1..) = from_client.read(&mut chunk).await {
            tokio::time::sleep(delay).await;
            if to_server.write_all(&chunk[..read]).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = held => {}
        _ = tokio::io::copy(&mut from_server, &mut to_client) => {}
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
