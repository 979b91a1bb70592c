//! Writing events in the transaction of the change.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::EventType;

/// Adds an event to the service's outbox. Call with the transaction that
/// makes the change, so that both commit or neither does. The current span's
/// trace context goes with the event. Returns the event id.
pub async fn enqueue<M: prost::Message>(
    connection: &mut PgConnection,
    event_type: &EventType,
    subject_id: Option<&str>,
    payload: &M,
) -> Result<Uuid, sqlx::Error> {
    let event_id = Uuid::now_v7();
    let trace = esocial_kit::telemetry::current_trace_context();
    sqlx::query(
        "INSERT INTO outbox (event_id, subject, event_type, source, subject_id, data_schema, payload, traceparent, tracestate)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(event_id)
    .bind(event_type.relative_subject())
    .bind(event_type.ce_type())
    .bind(event_type.source())
    .bind(subject_id)
    .bind(event_type.data_schema())
    .bind(payload.encode_to_vec())
    .bind(trace.get("traceparent"))
    .bind(trace.get("tracestate"))
    .execute(connection)
    .await?;
    Ok(event_id)
}
