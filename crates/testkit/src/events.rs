use std::time::Duration;

use esocial_kit::config::EventSettings;

use crate::{clean_up_in_background, nats_url, unique_suffix};

/// A stream name and subject prefix of its own for one test; the stream is
/// deleted with the handle.
#[derive(Debug, Clone)]
pub struct TestEvents {
    pub settings: EventSettings,
    pub nats_url: String,
}

impl TestEvents {
    pub fn new() -> Self {
        Self::on(&nats_url())
    }

    /// On a given NATS server (tests that start their own).
    pub fn on(nats_url: &str) -> Self {
        let suffix = unique_suffix();
        Self {
            settings: EventSettings {
                stream_name: format!("TEST_{suffix}"),
                subject_prefix: format!("t{suffix}"),
                duplicate_window: Duration::from_secs(120),
                stream_replicas: 1,
            },
            nats_url: nats_url.to_owned(),
        }
    }

    /// Every message on the test's stream under `filter` (a subject below
    /// the test's prefix, such as `registry.person.>`), read until the
    /// stream has been quiet for `quiet_for`. Waits for the stream to exist.
    pub async fn messages(
        &self,
        filter: &str,
        quiet_for: Duration,
    ) -> anyhow::Result<Vec<async_nats::jetstream::Message>> {
        use async_nats::jetstream::consumer::{self, pull};
        use futures_util::StreamExt as _;
        let jetstream = self.jetstream().await?;
        let mut stream = None;
        for _ in 0..100 {
            if let Ok(found) = jetstream.get_stream(&self.settings.stream_name).await {
                stream = Some(found);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stream = stream.ok_or_else(|| anyhow::anyhow!("stream {} was never created", self.settings.stream_name))?;
        let reader = stream
            .create_consumer(pull::Config {
                filter_subject: format!("{}.{filter}", self.settings.subject_prefix),
                ack_policy: consumer::AckPolicy::None,
                ..pull::Config::default()
            })
            .await?;
        let mut messages = reader.messages().await?;
        let mut received = Vec::new();
        while let Ok(Some(Ok(message))) = tokio::time::timeout(quiet_for, messages.next()).await {
            received.push(message);
        }
        Ok(received)
    }

    /// A plain JetStream context on the test's server.
    pub async fn jetstream(&self) -> anyhow::Result<async_nats::jetstream::Context> {
        let client = async_nats::connect(&self.nats_url).await?;
        Ok(async_nats::jetstream::new(client))
    }
}

impl Default for TestEvents {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestEvents {
    fn drop(&mut self) {
        let url = self.nats_url.clone();
        let stream = self.settings.stream_name.clone();
        clean_up_in_background(async move {
            if let Ok(client) =
                async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(2)).connect(&url).await
            {
                let _ = async_nats::jetstream::new(client).delete_stream(&stream).await;
            }
        });
    }
}
