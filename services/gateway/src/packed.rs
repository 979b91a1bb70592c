//! The message log's batches as `message_log_batches` stores them, read in
//! Rust rather than through the `message_log` view, whose unpacking costs
//! PostgreSQL several times what the rest of a verification or a search
//! does: the entries of a batch ([`PackedEntry`]), and pages of batches read
//! ahead ([`Prefetch`]).

use std::borrow::Cow;

use crate::message_log::from_hex;

/// An entry as its batch keeps it (`entries`, a JSON array of migration
/// 0109's `message_log_entry`). Only the form the writer gives it is read
/// ([`crate::message_log`]'s `BatchColumns::stored`): anything else in its
/// place was put there by someone else.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PackedEntry<'a> {
    pub sequence: i64,
    // Borrowed from the batch's text where no escape has to be undone
    // (every field the writer writes, unless a name has a quote or a
    // control character): no allocation an entry for them.
    #[serde(borrow)]
    pub request_id: Cow<'a, str>,
    #[serde(borrow)]
    pub member_id: Cow<'a, str>,
    #[serde(borrow)]
    pub caller: Cow<'a, str>,
    #[serde(borrow)]
    pub method: Cow<'a, str>,
    #[serde(borrow)]
    pub direction: Cow<'a, str>,
    /// Microseconds since 1970-01-01 UTC.
    pub started_at_us: i64,
    pub duration_us: i64,
    pub status_code: i32,
    pub request_bytes: i64,
    pub response_bytes: i64,
    /// Hexadecimal.
    #[serde(borrow)]
    pub request_sha256: Cow<'a, str>,
    #[serde(borrow)]
    pub response_sha256: Cow<'a, str>,
    /// Base64 (never escaped, so always borrowed), or null when not kept.
    #[serde(borrow)]
    pub request_body: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub response_body: Option<Cow<'a, str>>,
    /// Hexadecimal.
    #[serde(borrow)]
    pub hash: Cow<'a, str>,
}

/// The binary fields of a [`PackedEntry`].
pub(crate) struct Unpacked {
    pub request_sha256: Vec<u8>,
    pub response_sha256: Vec<u8>,
    pub request_body: Option<Vec<u8>>,
    pub response_body: Option<Vec<u8>>,
    pub hash: Vec<u8>,
}

impl PackedEntry<'_> {
    /// Its binary fields, `None` if one is not in the writer's form.
    pub fn unpacked(&self) -> Option<Unpacked> {
        Some(Unpacked {
            request_sha256: from_hex(&self.request_sha256)?,
            response_sha256: from_hex(&self.response_sha256)?,
            request_body: decoded_body(self.request_body.as_deref())?,
            response_body: decoded_body(self.response_body.as_deref())?,
            hash: from_hex(&self.hash)?,
        })
    }

    /// The bytes of its kept bodies, read from their base64 without
    /// decoding them.
    pub fn body_bytes(&self) -> usize {
        [&self.request_body, &self.response_body].into_iter().flatten().map(|text| base64_decoded_len(text)).sum()
    }
}

/// A kept body: `Some(None)` for none, `None` if it is not base64.
pub(crate) fn decoded_body(text: Option<&str>) -> Option<Option<Vec<u8>>> {
    use base64::Engine as _;
    match text {
        Some(text) => base64::engine::general_purpose::STANDARD.decode(text).ok().map(Some),
        None => Some(None),
    }
}

/// The bytes padded base64 `text` stands for.
fn base64_decoded_len(text: &str) -> usize {
    let padding = text.bytes().rev().take(2).take_while(|byte| *byte == b'=').count();
    (text.len() / 4 * 3).saturating_sub(padding)
}

/// The rows of `batches` (a query of `message_log_batches` rows in `order`,
/// their `entries` among the columns, with a `LIMIT`) up to the first whose
/// `entries` and those before it come to `bytes` (a parameter) as stored:
/// a batch with kept bodies may come near
/// [`BATCH_BODY_BYTES_MAX`](crate::message_log::BATCH_BODY_BYTES_MAX), and a
/// read of many such would hold them all in memory at once. Each row also
/// has `limited`, how many rows `batches` gave ([`more_follow`]).
pub(crate) fn at_most_bytes(batches: &str, order: &str, bytes: &str) -> String {
    format!(
        "SELECT * FROM (
             SELECT *, sum(pg_column_size(entries)) OVER running - pg_column_size(entries) AS bytes_before,
                    count(*) OVER () AS limited
             FROM ({batches}) batches
             WINDOW running AS (ORDER BY {order} ROWS UNBOUNDED PRECEDING)
         ) sized
         WHERE bytes_before < {bytes}
         ORDER BY {order}"
    )
}

/// Whether batches may follow `rows`, read by [`at_most_bytes`] with a
/// limit of `asked`: as many were found as were asked for, or some were
/// left out for their size.
pub(crate) fn more_follow(rows: &[sqlx::postgres::PgRow], asked: i64) -> Result<bool, sqlx::Error> {
    use sqlx::Row as _;
    let Some(last) = rows.last() else { return Ok(false) };
    let limited: i64 = last.try_get("limited")?;
    Ok(limited == asked || i64::try_from(rows.len()).unwrap_or(i64::MAX) < limited)
}

/// Rows being read by a task of their own (so on the other core where
/// there is one) while the ones before them are worked on. Dropped unread
/// (the reader stopped early), the read is cancelled.
pub(crate) struct Prefetch(tokio::task::JoinHandle<Result<Vec<sqlx::postgres::PgRow>, sqlx::Error>>);

impl Prefetch {
    pub fn spawn(
        read: impl std::future::Future<Output = Result<Vec<sqlx::postgres::PgRow>, sqlx::Error>> + Send + 'static,
    ) -> Self {
        Self(tokio::spawn(read))
    }

    pub async fn rows(mut self) -> Result<Vec<sqlx::postgres::PgRow>, sqlx::Error> {
        match (&mut self.0).await {
            Ok(rows) => rows,
            // Only aborted when dropped, so the read panicked: so does the
            // reader.
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    #[test]
    fn a_body_s_size_is_read_from_its_base64_as_decoding_it_gives() {
        for len in 0..10 {
            let body: Vec<u8> = (0..len).map(|byte: u8| byte.wrapping_mul(37)).collect();
            let text = base64::engine::general_purpose::STANDARD.encode(&body);
            assert_eq!(base64_decoded_len(&text), len as usize, "{text}");
            assert_eq!(decoded_body(Some(&text)), Some(Some(body)));
        }
        assert_eq!(decoded_body(None), Some(None));
        assert_eq!(decoded_body(Some("not base64!")), None);
    }
}
