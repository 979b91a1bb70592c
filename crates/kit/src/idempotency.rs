//! Idempotent mutations: a retry with the same request id gets the first
//! result; the same id with different content is refused.
//!
//! Used inside the transaction that makes the change:
//! 1. [`claim`] inserts the key (waiting for a concurrent holder to finish);
//! 2. on [`Claim::New`] the service makes its change and calls [`complete`]
//!    with the encoded response, then commits: the change, its events and the
//!    stored response become visible together;
//! 3. on [`Claim::Replay`] it returns the stored response.
//!
//! A failed call stores nothing, so a retry after an error runs again.

use sha2::{Digest as _, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ApiError;

/// The result of claiming a request id.
#[derive(Debug)]
pub enum Claim {
    /// First use: do the work.
    New,
    /// Seen before with the same content: this is the response then given.
    Replay(Vec<u8>),
}

/// Parses the `request_id` field of a request (a UUID, required); the error
/// describes the problem for a field violation.
pub fn parse_request_id(text: &str) -> Result<Uuid, &'static str> {
    if text.is_empty() {
        return Err("is required: a UUID chosen by the client, reused when retrying");
    }
    Uuid::parse_str(text).map_err(|_| "must be a UUID")
}

/// SHA-256 of the method and the encoded request, the request id excluded
/// by the caller (it encodes the request with the id cleared).
pub fn fingerprint(method: &str, encoded_request: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update([0]);
    hasher.update(encoded_request);
    hasher.finalize().into()
}

pub async fn claim(
    connection: &mut PgConnection,
    request_id: Uuid,
    method: &str,
    fingerprint: &[u8; 32],
) -> Result<Claim, ApiError> {
    // Takes the key with an empty response; a concurrent transaction holding
    // the same key makes this wait until it commits or rolls back.
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (request_id, method, request_fingerprint, response)
         VALUES ($1, $2, $3, '\\x') ON CONFLICT (request_id) DO NOTHING",
    )
    .bind(request_id)
    .bind(method)
    .bind(fingerprint.as_slice())
    .execute(&mut *connection)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::New);
    }
    let (stored_method, stored_fingerprint, response): (String, Vec<u8>, Vec<u8>) =
        sqlx::query_as("SELECT method, request_fingerprint, response FROM idempotency_keys WHERE request_id = $1")
            .bind(request_id)
            .fetch_one(&mut *connection)
            .await?;
    if stored_method != method || stored_fingerprint != fingerprint.as_slice() {
        return Err(ApiError::invalid_field(
            "request_id",
            "was already used for a different request; choose a new id for a new request",
        ));
    }
    Ok(Claim::Replay(response))
}

/// Stores the response for replays. Call in the same transaction as `claim`.
pub async fn complete(connection: &mut PgConnection, request_id: Uuid, response: &[u8]) -> Result<(), ApiError> {
    sqlx::query("UPDATE idempotency_keys SET response = $2 WHERE request_id = $1")
        .bind(request_id)
        .bind(response)
        .execute(connection)
        .await?;
    Ok(())
}

/// Deletes keys older than `max_age_hours`; returns how many.
pub async fn purge(pool: &sqlx::PgPool, max_age_hours: i32) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)")
        .bind(max_age_hours)
        .execute(pool)
        .await?
        .rows_affected())
}

/// Purges keys older than a day, every hour, until `shutdown` completes.
pub async fn purge_hourly(pool: sqlx::PgPool, shutdown: impl std::future::Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        match purge(&pool, 24).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged old idempotency keys"),
            Err(error) => tracing::warn!(%error, "cannot purge idempotency keys"),
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
        }
    }
}

/// Runs a mutation once per request id, in one transaction with its
/// idempotency record: a retry with the same id and content gets the stored
/// response; the same id with other content is refused. `request` is the
/// request with its id cleared (it is the fingerprinted content).
pub async fn run_once<Req, Resp, E, Work>(
    pool: &sqlx::PgPool,
    method: &str,
    request_id: Uuid,
    request: &Req,
    work: Work,
) -> Result<Resp, E>
where
    Req: prost::Message,
    Resp: prost::Message + Default,
    E: From<ApiError> + From<sqlx::Error>,
    Work: for<'c> AsyncFnOnce(&'c mut PgConnection) -> Result<Resp, E>,
{
    let fingerprint = fingerprint(method, &request.encode_to_vec());
    let mut transaction = pool.begin().await?;
    if let Claim::Replay(stored) = claim(&mut transaction, request_id, method, &fingerprint).await? {
        transaction.rollback().await?;
        return Resp::decode(stored.as_slice()).map_err(|error| E::from(ApiError::internal(error)));
    }
    let response = work(&mut transaction).await?;
    complete(&mut transaction, request_id, &response.encode_to_vec()).await?;
    transaction.commit().await?;
    Ok(response)
}
