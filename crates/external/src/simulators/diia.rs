//! The Diia notifications simulator: notifications kept per person,
//! idempotent by request id.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use esocial_identifiers::Rnokpp;
use esocial_proto::common::v1 as common;
use esocial_proto::external::diia::v1 as pb;
use esocial_proto::external::diia::v1::diia_notification_service_server::DiiaNotificationService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{World, deterministic_uuid, lock};
use crate::diia::{CODE_LENGTH_MAX, Notification, PAGE_SIZE_MAX, PARAMETER_VALUE_LENGTH_MAX, PARAMETERS_MAX};
use crate::grpc::convert;
use crate::grpc::notification_to_proto;

/// The most notifications the simulator keeps.
const NOTIFICATIONS_MAX: usize = 100_000;
/// The page size when the request gives none.
const PAGE_SIZE_DEFAULT: u32 = 50;
/// The stream of [`deterministic_uuid`] for notification ids.
const NOTIFICATION_ID_STREAM: u64 = 2;

#[derive(Debug, Default)]
pub(super) struct DiiaState {
    /// Oldest first.
    notifications: Vec<Notification>,
    by_request: HashMap<String, Uuid>,
}

/// Lower-case letters, digits and `_`, starting with a letter.
fn is_code(text: &str) -> bool {
    text.chars().next().is_some_and(|first| first.is_ascii_lowercase())
        && text
            .chars()
            .all(|character| character.is_ascii_lowercase() || character.is_ascii_digit() || character == '_')
        && text.len() <= CODE_LENGTH_MAX
}

/// Where a page starts: the token is the number of notifications before it.
fn page_start(token: &str) -> Option<usize> {
    if token.is_empty() { Some(0) } else { token.parse().ok() }
}

/// The Diia notifications gRPC service.
#[derive(Debug, Clone)]
pub struct DiiaSimulator {
    world: Arc<World>,
}

impl DiiaSimulator {
    pub(super) fn new(world: Arc<World>) -> Self {
        Self { world }
    }
}

#[tonic::async_trait]
impl DiiaNotificationService for DiiaSimulator {
    async fn send_notification(
        &self,
        request: Request<pb::SendNotificationRequest>,
    ) -> Result<Response<pb::SendNotificationResponse>, Status> {
        let request = request.into_inner();
        let (request_id, rnokpp, template_code) = convert::request(|violations| {
            let request_id = convert::text(violations, "request_id", &request.request_id, true, CODE_LENGTH_MAX);
            let rnokpp: Option<Rnokpp> = convert::identifier(violations, "rnokpp", &request.rnokpp);
            let template_code = request.template_code.trim().to_owned();
            if !is_code(&template_code) {
                violations.add(
                    "template_code",
                    format!(
                        "must be lower-case letters, digits and '_', starting with a letter, at most {CODE_LENGTH_MAX}"
                    ),
                );
            }
            if request.parameters.len() > PARAMETERS_MAX {
                violations.add("parameters", format!("must be at most {PARAMETERS_MAX}"));
            }
            for (key, value) in &request.parameters {
                if key.is_empty()
                    || key.len() > CODE_LENGTH_MAX
                    || !key.chars().all(|character| character.is_ascii_alphanumeric() || character == '_')
                {
                    violations.add(format!("parameters[{key}]"), "keys are letters, digits and '_', at most 64");
                }
                if value.chars().count() > PARAMETER_VALUE_LENGTH_MAX {
                    violations.add(
                        format!("parameters[{key}]"),
                        format!("must have at most {PARAMETER_VALUE_LENGTH_MAX} characters"),
                    );
                }
            }
            Some((request_id, rnokpp?, template_code))
        })?;

        let mut state = lock(&self.world.diia);
        if let Some(notification_id) = state.by_request.get(&request_id) {
            return Ok(Response::new(pb::SendNotificationResponse { notification_id: notification_id.to_string() }));
        }
        if state.notifications.len() >= NOTIFICATIONS_MAX {
            return Err(Status::resource_exhausted("the simulated Diia keeps no more notifications"));
        }
        let counter = u64::try_from(state.notifications.len()).unwrap_or(u64::MAX).saturating_add(1);
        let notification_id = deterministic_uuid(NOTIFICATION_ID_STREAM, counter);
        state.notifications.push(Notification {
            notification_id,
            rnokpp,
            template_code,
            parameters: request.parameters,
            sent_at: Utc::now(),
        });
        state.by_request.insert(request_id, notification_id);
        tracing::info!(%notification_id, "simulated Diia: notification sent");
        Ok(Response::new(pb::SendNotificationResponse { notification_id: notification_id.to_string() }))
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let request = request.into_inner();
        let page = request.page.unwrap_or_default();
        let (rnokpp, page_size, start) = convert::request(|violations| {
            let rnokpp: Option<Rnokpp> = convert::identifier(violations, "rnokpp", &request.rnokpp);
            let page_size = match page.page_size {
                0 => PAGE_SIZE_DEFAULT,
                size if size > PAGE_SIZE_MAX => {
                    violations.add("page.page_size", format!("must be at most {PAGE_SIZE_MAX}"));
                    PAGE_SIZE_DEFAULT
                }
                size => size,
            };
            let start = page_start(&page.page_token);
            if start.is_none() {
                violations.add("page.page_token", "is not a token this method gave");
            }
            Some((rnokpp?, usize::try_from(page_size).ok()?, start?))
        })?;
        let state = lock(&self.world.diia);
        let mut notifications: Vec<pb::Notification> = state
            .notifications
            .iter()
            .rev()
            .filter(|notification| notification.rnokpp == rnokpp)
            .skip(start)
            .take(page_size + 1)
            .map(notification_to_proto)
            .collect();
        let next_page_token = if notifications.len() > page_size {
            notifications.truncate(page_size);
            (start + page_size).to_string()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications,
            page: Some(common::PageResponse { next_page_token }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_codes_and_page_tokens_are_checked() {
        assert!(is_code("birth_registered"));
        assert!(is_code("idp_allowance_2"));
        assert!(!is_code("Birth"));
        assert!(!is_code("2fa"));
        assert!(!is_code(""));
        assert!(!is_code(&"a".repeat(65)));
        assert_eq!(page_start(""), Some(0));
        assert_eq!(page_start("50"), Some(50));
        assert_eq!(page_start("-1"), None);
    }
}
