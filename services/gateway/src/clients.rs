//! What identity says of the members' system clients. Its
//! `identity.system_client.*` events (registered, key rotated, status
//! changed) are consumed once per deployment (a durable consumer, each
//! event recorded with its change in one transaction) into
//! `identity_clients`, whose change every replica's directory follows: a
//! member whose client identity deactivated is refused by the door and its
//! open streams end ([`crate::standing`]), without waiting for the tokens
//! it holds to expire.
//!
//! The events are not the only source: every few minutes
//! ([`read_from_identity`]) the gateway reads identity's list of its system
//! clients, so that a change whose event it has not had (the stream rebuilt
//! without identity's earlier events, or NATS away while identity is not)
//! still takes effect, within that interval. Of the two, identity's newer
//! version of the client wins.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use esocial_events::{EventHandler, HandleError, ReceivedEvent};
use esocial_kit::ApiError;
use esocial_kit::identity::ServiceTokens;
use esocial_proto::identity::v1 as identity;
use esocial_proto::identity::v1::identity_admin_service_client::IdentityAdminServiceClient;
use prost::Message as _;
use sqlx::{PgConnection, PgPool};
use tonic::transport::Channel;

/// How long one reading of identity's list may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Identity's list of system clients, read with the gateway's own
/// credentials (role `gateway`).
#[derive(Debug, Clone)]
pub struct ClientList {
    identity: IdentityAdminServiceClient<Channel>,
    credentials: ServiceTokens,
}

impl ClientList {
    pub fn new(identity_url: &str, credentials: ServiceTokens) -> Result<Self, tonic::transport::Error> {
        let channel = crate::internal_tokens::identity_channel(identity_url, READ_TIMEOUT)?;
        Ok(Self { identity: IdentityAdminServiceClient::new(channel), credentials })
    }
}

/// Reads identity's list of system clients, page by page, and records the
/// `active` of each whose version there is newer than the one recorded
/// (a deactivation the events did not bring, or a client never heard of),
/// within [`READ_TIMEOUT`]. How many it changed.
pub async fn read_from_identity(pool: &PgPool, list: &ClientList) -> anyhow::Result<u64> {
    tokio::time::timeout(READ_TIMEOUT, read_pages(pool, list))
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("identity's list of system clients took over {READ_TIMEOUT:?}")))
}

async fn read_pages(pool: &PgPool, list: &ClientList) -> anyhow::Result<u64> {
    let mut changed = 0;
    let mut page_token = String::new();
    loop {
        let request = tonic::Request::new(identity::ListSystemClientsRequest {
            page: Some(esocial_proto::common::v1::PageRequest { page_size: 0, page_token }),
        });
        let request = list.credentials.authorize(request).await?;
        let response = list.identity.clone().list_system_clients(request).await?.into_inner();
        let ids: Vec<&str> = response.clients.iter().map(|client| client.client_id.as_str()).collect();
        let active: Vec<bool> = response.clients.iter().map(|client| client.active).collect();
        let versions: Vec<i64> = response.clients.iter().map(|client| client.version).collect();
        changed += sqlx::query(
            "INSERT INTO identity_clients (client_id, active, version, changed_at, event_id)
             SELECT client_id, active, version, now(), NULL
             FROM unnest($1::text[], $2::boolean[], $3::bigint[]) AS listed (client_id, active, version)
             WHERE client_id <> '' AND version >= 0
             ON CONFLICT (client_id) DO UPDATE
                 SET active = excluded.active, version = excluded.version, changed_at = excluded.changed_at,
                     event_id = NULL
                 WHERE identity_clients.version < excluded.version",
        )
        .bind(&ids)
        .bind(&active)
        .bind(&versions)
        .execute(pool)
        .await?
        .rows_affected();
        page_token = response.page.map(|page| page.next_page_token).unwrap_or_default();
        if page_token.is_empty() {
            return Ok(changed);
        }
    }
}

/// Whether identity has a system client `client_id`, active or not: what
/// the gateway recorded of identity's clients, and when that does not name
/// it (a client registered since the last reading, its event not yet
/// consumed), identity's list read again. `UNAVAILABLE` when identity could
/// not be asked.
pub async fn at_identity(pool: &PgPool, list: &ClientList, client_id: &str) -> Result<bool, ApiError> {
    let recorded = || async {
        sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT FROM identity_clients WHERE client_id = $1)")
            .bind(client_id)
            .fetch_one(pool)
            .await
    };
    if recorded().await? {
        return Ok(true);
    }
    if let Err(error) = read_from_identity(pool, list).await {
        tracing::warn!(%error, client_id, "cannot ask identity whether it has a system client");
        return Err(ApiError::Unavailable(
            "cannot learn from identity whether it has this system client; retry later".to_owned(),
        ));
    }
    Ok(recorded().await?)
}

/// Reads identity's list at start and every `interval` until `stop`; a
/// reading that fails is logged and tried again at the next.
pub async fn follow_identity(pool: PgPool, list: ClientList, interval: Duration, stop: impl Future<Output = ()>) {
    let mut stopped = std::pin::pin!(stop);
    loop {
        match read_from_identity(&pool, &list).await {
            Ok(0) => {}
            Ok(recorded) => {
                tracing::info!(
                    recorded,
                    "system clients recorded from identity's list, newer than what its events brought"
                );
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read identity's list of system clients; trying again later");
            }
        }
        tokio::select! {
            () = &mut stopped => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
