//! [`Diia`] over gRPC, and its proto conversions.

use chrono::{DateTime, Utc};
use esocial_identifiers::Rnokpp;
use esocial_kit::Violations;
use esocial_proto::common::v1 as common;
use esocial_proto::external::diia::v1 as pb;
use esocial_proto::external::diia::v1::diia_notification_service_client::DiiaNotificationServiceClient;
use tonic::transport::Channel;
use uuid::Uuid;

use super::Gateway;
use super::convert::{self, path};
use crate::Error;
use crate::diia::{CODE_LENGTH_MAX, Diia, Notification, NotificationPage, NotificationRequest};

const SYSTEM: &str = "Diia";

/// Diia notifications through the exchange gateway.
#[derive(Debug, Clone)]
pub struct GrpcDiia {
    gateway: Gateway,
}

impl GrpcDiia {
    pub fn new(gateway: Gateway) -> Self {
        Self { gateway }
    }

    fn client(&self) -> DiiaNotificationServiceClient<Channel> {
        DiiaNotificationServiceClient::new(self.gateway.channel.clone())
    }
}

impl Diia for GrpcDiia {
    async fn send_notification(&self, notification: &NotificationRequest) -> Result<Uuid, Error> {
        let request = self
            .gateway
            .request(pb::SendNotificationRequest {
                request_id: notification.request_id.clone(),
                rnokpp: notification.rnokpp.as_str().to_owned(),
                template_code: notification.template_code.clone(),
                parameters: notification.parameters.clone(),
            })
            .await?;
        let response = self.client().send_notification(request).await?.into_inner();
        convert::response(SYSTEM, |violations| {
            convert::identifier::<Uuid>(violations, "notification_id", &response.notification_id)
        })
    }

    async fn notifications(&self, rnokpp: Rnokpp, page_size: u32, page_token: &str) -> Result<NotificationPage, Error> {
        let request = self
            .gateway
            .request(pb::ListNotificationsRequest {
                rnokpp: rnokpp.as_str().to_owned(),
                page: Some(common::PageRequest { page_size, page_token: page_token.to_owned() }),
            })
            .await?;
        let response = self.client().list_notifications(request).await?.into_inner();
        let notifications = convert::response(SYSTEM, |violations| {
            let notifications: Vec<Option<Notification>> = response
                .notifications
                .iter()
                .enumerate()
                .map(|(index, notification)| {
                    notification_from_proto(violations, &format!("notifications[{index}]"), notification)
                })
                .collect();
            notifications.into_iter().collect::<Option<Vec<_>>>()
        })?;
        if let Some(index) = notifications.iter().position(|notification| notification.rnokpp != rnokpp) {
            return Err(Error::invalid_response(SYSTEM, format!("notifications[{index}].rnokpp"), "is another person"));
        }
        let next_page_token = response.page.map(|page| page.next_page_token).filter(|token| !token.is_empty());
        Ok(NotificationPage { notifications, next_page_token })
    }
}

pub(crate) fn timestamp_to_proto(instant: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: instant.timestamp(),
        nanos: i32::try_from(instant.timestamp_subsec_nanos()).unwrap_or_default(),
    }
}

fn timestamp_from_proto(
    violations: &mut Violations,
    field: &str,
    timestamp: Option<&prost_types::Timestamp>,
) -> Option<DateTime<Utc>> {
    let timestamp = convert::required(violations, field, timestamp)?;
    let instant =
        u32::try_from(timestamp.nanos).ok().and_then(|nanos| DateTime::from_timestamp(timestamp.seconds, nanos));
    if instant.is_none() {
        violations.add(field, "is not a valid instant");
    }
    instant
}

pub(crate) fn notification_to_proto(notification: &Notification) -> pb::Notification {
    pb::Notification {
        notification_id: notification.notification_id.to_string(),
        rnokpp: notification.rnokpp.as_str().to_owned(),
        template_code: notification.template_code.clone(),
        parameters: notification.parameters.clone(),
        sent_at: Some(timestamp_to_proto(notification.sent_at)),
    }
}

fn notification_from_proto(
    violations: &mut Violations,
    field: &str,
    notification: &pb::Notification,
) -> Option<Notification> {
    let notification_id: Option<Uuid> =
        convert::identifier(violations, &path(field, "notification_id"), &notification.notification_id);
    let rnokpp: Option<Rnokpp> = convert::identifier(violations, &path(field, "rnokpp"), &notification.rnokpp);
    let template_code =
        convert::text(violations, &path(field, "template_code"), &notification.template_code, true, CODE_LENGTH_MAX);
    let sent_at = timestamp_from_proto(violations, &path(field, "sent_at"), notification.sent_at.as_ref());
    Some(Notification {
        notification_id: notification_id?,
        rnokpp: rnokpp?,
        template_code,
        parameters: notification.parameters.clone(),
        sent_at: sent_at?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_negative_nanos_are_refused() {
        let instant = DateTime::from_timestamp(1_767_225_600, 123_000_000).expect("instant");
        let mut violations = Violations::new();
        let proto = timestamp_to_proto(instant);
        assert_eq!(timestamp_from_proto(&mut violations, "sent_at", Some(&proto)), Some(instant));
        let broken = prost_types::Timestamp { seconds: 1, nanos: -1 };
        assert_eq!(timestamp_from_proto(&mut violations, "sent_at", Some(&broken)), None);
        assert!(!violations.is_empty());
    }
}
