//! Reading the copies of the message log's checkpoints from the event
//! stream, as `esocial gateway verify-log` does before it recomputes the
//! chains: every `gateway.log.checkpointed` event is read and its signature
//! checked.
//!
//! ```text
//! cargo bench -p esocial-gateway --bench witness
//! BENCH_CHECKPOINTS=100000 cargo bench -p esocial-gateway --bench witness
//! ```
//!
//! Publishes the checkpoints of one node, signed with a new key, to a stream
//! of its own on the machine's NATS, then times the read.

#![allow(clippy::print_stdout, clippy::cast_precision_loss)]

use std::time::Instant;

use ed25519_dalek::Signer as _;
use esocial_gateway::message_log::{CheckpointKey, checkpoint_event, checkpoint_message};
use esocial_gateway::verify::{CheckpointCopies, LogKeys};
use esocial_testkit::bench::env_number;

/// Publishes acknowledged in flight at most.
const IN_FLIGHT_MAX: usize = 512;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let checkpoints = i64::try_from(env_number("BENCH_CHECKPOINTS", 20_000))?;
        let events = esocial_testkit::TestEvents::default();
        let nats = async_nats::connect(&events.nats_url).await?;
        let jetstream = async_nats::jetstream::new(nats.clone());
        esocial_events::stream::ensure_stream(&jetstream, &events.settings).await?;
        let files = esocial_testkit::TempDir::new("witness-bench")?;
        let key_file = files.path().join("gateway-signing-key.pem");
        esocial_gateway::ensure_signing_key(&key_file)?;
        let key = CheckpointKey::from_pem(&std::fs::read_to_string(&key_file)?)?;
        let keys = LogKeys::of(&key);
        let copies = CheckpointCopies::new(nats, events.settings.clone());
        let subject = copies.subject();

        let started = Instant::now();
        let mut in_flight = Vec::with_capacity(IN_FLIGHT_MAX);
        for sequence in 1..=checkpoints {
            let hash = stand_in_hash(sequence);
            let signed_at = chrono::DateTime::from_timestamp(1_780_000_000 + sequence * 60, 0)
                .ok_or_else(|| anyhow::anyhow!("time out of range"))?;
            let signature = key.key.sign(&checkpoint_message("gateway-1", sequence, &hash, signed_at));
            let event = checkpoint_event("gateway-1", sequence, &hash, signed_at, &key.key_id, &signature);
            in_flight.push(jetstream.publish(subject.clone(), prost::Message::encode_to_vec(&event).into()).await?);
            if in_flight.len() == IN_FLIGHT_MAX {
                for acknowledgement in in_flight.drain(..) {
                    acknowledgement.await?;
                }
            }
        }
        for acknowledgement in in_flight.drain(..) {
            acknowledgement.await?;
        }
        println!("{checkpoints} checkpoint events of one node published in {:.2} s", started.elapsed().as_secs_f64());

        let started = Instant::now();
        let witness = copies.read(&keys).await?;
        let elapsed = started.elapsed().as_secs_f64();
        let newest = esocial_gateway::verify::newest_witnessed(&witness, "gateway-1");
        anyhow::ensure!(newest == Some(checkpoints), "the newest checkpoint read is {newest:?}");
        println!(
            "read with their signatures checked in {elapsed:.2} s ({:.0} a second); a year of one node's \
             checkpoints at one a minute (525,600) would take about {:.0} s",
            checkpoints as f64 / elapsed,
            525_600.0 * elapsed / checkpoints as f64
        );
        jetstream.delete_stream(&events.settings.stream_name).await?;
        Ok(())
    })
}

/// In place of a chain hash: 32 bytes of its own for each entry.
fn stand_in_hash(sequence: i64) -> [u8; 32] {
    let mut hash = [0u8; 32];
    hash[..8].copy_from_slice(&sequence.to_be_bytes());
    hash
}
