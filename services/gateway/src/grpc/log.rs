//! `MessageLogService`: the auditors' search of the message log (each
//! answer recorded before it is sent), its verification, and the record of
//! the searches.

use std::sync::Arc;

use chrono::Utc;
use esocial_kit::paging::{PageStart, finish_page, page_from_proto};
use esocial_kit::{ApiError, Violations};
use esocial_proto::common::v1::PageResponse;
use esocial_proto::gateway::v1 as pb;
use esocial_proto::gateway::v1::message_log_service_server::MessageLogService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{GatewayState, caller_of, from_timestamp, timestamp};
use crate::changes::Author;
use crate::domain::{MemberId, MethodPath};
use crate::message_log::{self, LogCursor, LogFilter, hex};
use crate::verify;

#[derive(Debug, Clone)]
pub struct LogApi(pub Arc<GatewayState>);

/// The longest request id or token subject searched for.
const TEXT_LENGTH_MAX: usize = 256;

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
        let caller = caller_of(&request)?;
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
        let request_id = violations.text("request_id", &request.request_id, false, TEXT_LENGTH_MAX);
        let page = page_from_proto(&mut violations, request.page.as_ref());
        let after = page.after::<LogCursor>(&mut violations);
        violations.finish()?;
        let filter = LogFilter {
            member_id,
            method,
            from,
            to,
            request_id: optional(&request_id),
            include_bodies: request.include_bodies,
        };
        let message_log::SearchPage { mut entries, seen } = message_log::search(
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
        let page = match seen {
            Some(seen) => finish_page(&mut entries, &page, |last| {
                PageStart::AfterKey(
                    LogCursor {
                        started_at_us: last.entry.started_at.timestamp_micros(),
                        node: last.node.clone(),
                        sequence: last.sequence,
                        seen,
                    }
                    .to_string(),
                )
            }),
            // No entries: no page follows.
            None => PageResponse::default(),
        };
        // Who read what is on record before anything is read out.
        let record = message_log::SearchRecord {
            search_id: Uuid::now_v7(),
            searched_at: Utc::now(),
            searched_by: Author::from(&caller),
            filter,
            page_token: request.page.map(|page| page.page_token).unwrap_or_default(),
            entries: entries.iter().map(|stored| (stored.node.clone(), stored.sequence)).collect(),
        };
        message_log::record_search(&self.0.pool, &record).await.map_err(|error| {
            tracing::error!(%error, "a search of the message log cannot be recorded; it is not answered");
            Status::unavailable("the search cannot be recorded, so it is not answered; retry later")
        })?;
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

    async fn list_log_searches(
        &self,
        request: Request<pb::ListLogSearchesRequest>,
    ) -> Result<Response<pb::ListLogSearchesResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let searched_by = violations.text("searched_by", &request.searched_by, false, TEXT_LENGTH_MAX);
        let page = page_from_proto(&mut violations, request.page.as_ref());
        let after = page.after::<i64>(&mut violations);
        violations.finish()?;
        let searched_by = optional(&searched_by);
        let mut searches = message_log::searches(&self.0.pool, searched_by.as_deref(), after, page.fetch_limit())
            .await
            .map_err(ApiError::from)?;
        let page = finish_page(&mut searches, &page, |(position, _)| PageStart::AfterKey(position.to_string()));
        let searches = searches
            .into_iter()
            .map(|(_, search)| {
                let filter = search.filter;
                pb::LogSearch {
                    search_id: search.search_id.to_string(),
                    searched_at: Some(timestamp(search.searched_at)),
                    searched_by: Some(search.searched_by.actor()),
                    request: Some(pb::SearchMessageLogRequest {
                        member_id: filter.member_id.unwrap_or_default(),
                        method: filter.method.unwrap_or_default(),
                        from: filter.from.map(timestamp),
                        to: filter.to.map(timestamp),
                        request_id: filter.request_id.unwrap_or_default(),
                        include_bodies: filter.include_bodies,
                        page: Some(esocial_proto::common::v1::PageRequest {
                            page_size: 0,
                            page_token: search.page_token,
                        }),
                    }),
                    entries: search
                        .entries
                        .into_iter()
                        .map(|(node, sequence)| pb::LogEntryRef { node, sequence })
                        .collect(),
                }
            })
            .collect();
        Ok(Response::new(pb::ListLogSearchesResponse { searches, page: Some(page) }))
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
