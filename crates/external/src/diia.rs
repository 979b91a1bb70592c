//! Diia: notifications to citizens.

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, Utc};
use esocial_identifiers::Rnokpp;
use uuid::Uuid;

use crate::Error;

/// The longest request id or template code.
pub const CODE_LENGTH_MAX: usize = 64;
/// The most parameters of one notification.
pub const PARAMETERS_MAX: usize = 50;
/// The longest parameter value, in characters.
pub const PARAMETER_VALUE_LENGTH_MAX: usize = 1_000;
/// The largest page of [`Diia::notifications`].
pub const PAGE_SIZE_MAX: u32 = 200;

/// A notification to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRequest {
    /// The sender's id of this request; a retry with the same id sends
    /// nothing and returns the first notification's id.
    pub request_id: String,
    pub rnokpp: Rnokpp,
    /// A template registered with Diia (`birth_registered`).
    pub template_code: String,
    pub parameters: BTreeMap<String, String>,
}

/// A notification sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub notification_id: Uuid,
    pub rnokpp: Rnokpp,
    pub template_code: String,
    pub parameters: BTreeMap<String, String>,
    pub sent_at: DateTime<Utc>,
}

/// One page of a person's notifications, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationPage {
    pub notifications: Vec<Notification>,
    /// The token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// Diia notifications, as esocial uses them.
pub trait Diia: Send + Sync {
    /// Sends a notification and returns its id.
    fn send_notification(&self, notification: &NotificationRequest)
    -> impl Future<Output = Result<Uuid, Error>> + Send;

    /// Notifications sent to a person, newest first. `page_size` 0 means the
    /// default (50); `page_token` is empty for the first page.
    fn notifications(
        &self,
        rnokpp: Rnokpp,
        page_size: u32,
        page_token: &str,
    ) -> impl Future<Output = Result<NotificationPage, Error>> + Send;
}
