//! What identity says of the members' system clients. Its
//! `identity.system_client.*` events (registered, key rotated, status
//! changed) are consumed once per deployment (a durable consumer, each
//! event recorded with its change in one transaction) into
//! `identity_clients`, whose change every replica's directory follows: a
//! member whose client identity deactivated is refused by the door and its
//! open streams end ([`crate::standing`]), without waiting for the tokens
//! it holds to expire.

use std::future::Future;
use std::pin::Pin;

use esocial_events::{EventHandler, HandleError, ReceivedEvent};
use esocial_proto::identity::v1 as identity;
use prost::Message as _;
use sqlx::PgConnection;

/// The durable consumer's name.
pub const CONSUMER: &str = "gateway-identity-clients";
/// What it reads, under the events' subject prefix.
pub const SUBJECTS: &str = "identity.system_client.>";

/// Records each system client's `active` as of its newest change.
#[derive(Debug, Default)]
pub struct IdentityClients;

impl EventHandler for IdentityClients {
    fn handle<'a>(
        &'a self,
        transaction: &'a mut PgConnection,
        event: &'a ReceivedEvent,
    ) -> Pin<Box<dyn Future<Output = Result<(), HandleError>> + Send + 'a>> {
        Box::pin(async move {
            let changed = identity::SystemClientChanged::decode(event.payload.as_slice())
                .map_err(|error| HandleError::Reject(error.into()))?;
            let Some(client) = changed.client else {
                return Err(HandleError::Reject(anyhow::anyhow!("a system client event without its client")));
            };
            if client.client_id.is_empty() {
                return Err(HandleError::Reject(anyhow::anyhow!("a system client event without a client id")));
            }
            if client.version < 0 {
                return Err(HandleError::Reject(anyhow::anyhow!("a system client event with a negative version")));
            }
            // The newer change wins, by identity's version of the client
            // (the order its changes committed), then by time.
            sqlx::query(
                "INSERT INTO identity_clients (client_id, active, version, changed_at, event_id)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (client_id) DO UPDATE
                     SET active = excluded.active, version = excluded.version, changed_at = excluded.changed_at,
                         event_id = excluded.event_id
                     WHERE (identity_clients.version, identity_clients.changed_at)
                         < (excluded.version, excluded.changed_at)",
            )
            .bind(&client.client_id)
            .bind(client.active)
            .bind(client.version)
            .bind(event.time)
            .bind(event.id)
            .execute(transaction)
            .await?;
            if !client.active {
                tracing::info!(client_id = %client.client_id, "identity deactivated a system client");
            }
            Ok(())
        })
    }
}
