//! The NATS connection of a service.

use std::time::Duration;

/// Connects to NATS without waiting for it: when the server is down at start
/// the client keeps retrying in the background (health shows NOT_SERVING and
/// the outbox keeps events until it is back).
pub async fn connect(url: &str, client_name: &str) -> anyhow::Result<async_nats::Client> {
    let client = async_nats::ConnectOptions::new()
        .name(client_name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            // 100 ms doubling, at most 5 s between attempts.
            let exponent = u32::try_from(attempts.min(6)).unwrap_or(6);
            Duration::from_millis(100 * 2u64.pow(exponent)).min(Duration::from_secs(5))
        })
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                other => tracing::debug!(event = %other, "NATS event"),
            }
        })
        .connect(url)
        .await?;
    Ok(client)
}
