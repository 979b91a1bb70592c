//! `MessageLogService`: the auditors' search of the message log, and its
//! verification.

use std::sync::Arc;

use esocial_kit::paging::{PageStart, finish_page, page_from_proto};
use esocial_kit::{ApiError, Violations};
use esocial_proto::gateway::v1 as pb;
use esocial_proto::gateway::v1::message_log_service_server::MessageLogService;
use tonic::{Request, Response, Status};

use super::{GatewayState, from_timestamp, timestamp};
use crate::domain::{MemberId, MethodPath};
use crate::message_log::{self, LogCursor, LogFilter, hex};
use crate::verify;

#[derive(Debug, Clone)]
pub struct LogApi(pub Arc<GatewayState>);

fn optional(text: &str) -> Option<String> {
    Some(text.trim().to_owned()).filter(|text| !text.is_empty())
}

fn report_to_proto(report: &verify::ChainReport) -> pb::ChainReport {
    let (first_broken_sequence, problem) = report.broken.clone().unwrap_or_default();
    pb::ChainReport {
        node: report.node.clone(),
        entries: report.entries,
        checkpoints: report.checkpoints,
        intact: report.is_intact(),
        first_broken_sequence,
        problem,
        signed_through_sequence: report.signed_through,
        witnessed_through_sequence: report.witnessed_through,
    }
}

#[tonic::async_trait]
impl MessageLogService for LogApi {
    async fn search_message_log(
        &self,
        request: Request<pb::SearchMessageLogRequest>,
    ) -> Result<Response<pb::SearchMessageLogResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let member_id = optional(&request.member_id);
        if let Some(member_id) = &member_id
            && let Err(problem) = MemberId::parse(member_id)
        {
            violations.add("member_id", problem);
        }
        let method = optional(&request.method);
        if let Some(method) = &method {
            let well_formed = match method.strip_suffix('/') {
                Some(service) => MethodPath::parse(&format!("{service}/Any")).is_some(),
                None => MethodPath::parse(method).is_some(),
            };
            if !well_formed {
                violations.add("method", "must be a full method path, or /package.Service/ for a whole service");
            }
        }
        let from = from_timestamp(&mut violations, "from", request.from.as_ref());
        let to = from_timestamp(&mut violations, "to", request.to.as_ref());
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            violations.add("to", "must be after from");
        }
        let page = page_from_proto(&mut violations, request.page.as_ref());
        let after = page.after::<LogCursor>(&mut violations);
        violations.finish()?;
        let filter = LogFilter {
            member_id,
            method,
            from,
            to,
            request_id: optional(&request.request_id),
            include_bodies: request.include_bodies,
        };
        let mut entries = message_log::search(
            &self.0.pool,
            &filter,
            after.as_ref(),
            page.fetch_limit(),
            self.0.search_body_bytes_max,
        )
        .await
        .map_err(ApiError::from)?;
        let mut page = page;
        if filter.include_bodies {
            // A page with bodies ends, after at least one entry, before they
            // would pass what a response may carry; the next goes on there.
            let mut bytes = 0;
            let within = entries
                .iter()
                .take_while(|stored| {
                    bytes += stored.entry.request_body.as_ref().map_or(0, Vec::len)
                        + stored.entry.response_body.as_ref().map_or(0, Vec::len);
                    bytes <= self.0.search_body_bytes_max
                })
                .count()
                .max(1);
            if within < entries.len()
                && let Ok(size) = u32::try_from(within)
                && size < page.size
            {
                entries.truncate(within + 1);
                page.size = size;
            }
        }
        let page = finish_page(&mut entries, &page, |last| {
            PageStart::AfterKey(
                LogCursor {
                    started_at_us: last.entry.started_at.timestamp_micros(),
                    node: last.node.clone(),
                    sequence: last.sequence,
                }
                .to_string(),
            )
        });
        let entries = entries
            .into_iter()
            .map(|stored| {
                let entry = stored.entry;
                pb::LogEntry {
                    node: stored.node,
                    sequence: stored.sequence,
                    request_id: entry.request_id,
                    member_id: entry.member_id,
                    caller: entry.caller,
                    method: entry.method,
                    started_at: Some(timestamp(entry.started_at)),
                    duration_us: entry.duration_us,
                    status_code: entry.status_code,
                    request_bytes: entry.request_bytes,
                    response_bytes: entry.response_bytes,
                    request_sha256: hex(&entry.request_sha256),
                    response_sha256: hex(&entry.response_sha256),
                    hash: hex(&stored.hash),
                    request_body: entry.request_body.unwrap_or_default(),
                    response_body: entry.response_body.unwrap_or_default(),
                    direction: entry.direction.as_str().to_owned(),
                }
            })
            .collect();
        Ok(Response::new(pb::SearchMessageLogResponse { entries, page: Some(page) }))
    }

    async fn verify_message_log(
        &self,
        request: Request<pb::VerifyMessageLogRequest>,
    ) -> Result<Response<pb::VerifyMessageLogResponse>, Status> {
        let node = optional(&request.get_ref().node);
        let witness = self.0.checkpoint_copies.read(&self.0.log_keys).await.map_err(|error| {
            tracing::warn!(error = %format!("{error:#}"), "cannot read the checkpoints the event stream holds");
            Status::unavailable("the event stream that holds copies of the checkpoints cannot be read")
        })?;
        let reports = verify::verify(&self.0.pool, &self.0.log_keys, node.as_deref(), Some(&witness))
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::VerifyMessageLogResponse { chains: reports.iter().map(report_to_proto).collect() }))
    }
}
