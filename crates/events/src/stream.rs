//! The JetStream stream that holds every event.

use async_nats::jetstream::{self, stream};
use esocial_kit::config::EventSettings;

/// The stream configuration for these settings: file storage, every subject
/// under the prefix, the de-duplication window for `Nats-Msg-Id`.
pub fn stream_config(settings: &EventSettings) -> stream::Config {
    stream::Config {
        name: settings.stream_name.clone(),
        description: Some("esocial events (CloudEvents, protobuf payloads)".to_owned()),
        subjects: vec![format!("{}.>", settings.subject_prefix)],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        duplicate_window: settings.duplicate_window,
        num_replicas: settings.stream_replicas,
        ..stream::Config::default()
    }
}

/// Creates the stream, or brings an existing one to this configuration.
/// Safe to call from every service at every start.
pub async fn ensure_stream(jetstream: &jetstream::Context, settings: &EventSettings) -> anyhow::Result<stream::Info> {
    let info = jetstream
        .create_or_update_stream(stream_config(settings))
        .await
        .map_err(|error| anyhow::anyhow!("cannot provision JetStream stream {}: {error}", settings.stream_name))?;
    Ok(info)
}
