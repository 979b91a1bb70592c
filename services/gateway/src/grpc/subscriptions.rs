//! `SubscriptionService`: a member's event subscriptions.

use std::sync::Arc;

use chrono::{SubsecRound as _, Utc};
use esocial_kit::{ApiError, Violations};
use esocial_proto::gateway::v1 as pb;
use esocial_proto::gateway::v1::subscription_service_server::SubscriptionService;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{GatewayState, actor, caller_of, event_types, request_id, timestamp};
use crate::directory::MemberEntry;
use crate::domain::EventTypeName;
use crate::events;
use crate::store::{self, Subscription};
use crate::subscriptions::{WINDOW_DEFAULT, WINDOW_MAX};

const EVENT_TYPES_MAX: usize = 50;
/// Live subscriptions a member may hold at once: each keeps a durable
/// consumer per event type in the stream.
pub const SUBSCRIPTIONS_PER_MEMBER_MAX: i64 = 20;
const ACK_TOKENS_MAX: usize = 1000;

#[derive(Debug, Clone)]
pub struct SubscriptionApi(pub Arc<GatewayState>);

fn subscription_to_proto(subscription: &Subscription) -> pb::Subscription {
    pb::Subscription {
        subscription_id: subscription.subscription_id.to_string(),
        member_id: subscription.member_id.to_string(),
        event_types: subscription.event_types.iter().map(ToString::to_string).collect(),
        created_at: Some(timestamp(subscription.created_at)),
    }
}

fn subscription_id(violations: &mut Violations, text: &str) -> Uuid {
    violations.check("subscription_id", text.trim().parse::<Uuid>()).unwrap_or_default()
}

/// Refuses an event type the member is not (or no longer) entitled to.
fn require_entitlement(member: &MemberEntry, event_type: &EventTypeName) -> Result<(), Status> {
    if member.event_types.contains_key(event_type.as_str()) {
        return Ok(());
    }
    Err(Status::permission_denied(format!(
        "member {} is not entitled to event type {event_type}",
        member.member.member_id
    )))
}

impl SubscriptionApi {
    /// The member's own live subscription.
    async fn owned(&self, member: &MemberEntry, id: Uuid) -> Result<Subscription, Status> {
        match store::subscription(&self.0.pool, id).await.map_err(ApiError::from)? {
            Some(subscription) if subscription.member_id == member.member.member_id => Ok(subscription),
            _ => Err(Status::not_found(format!("no subscription {id} of member {}", member.member.member_id))),
        }
    }
}

#[tonic::async_trait]
impl SubscriptionService for SubscriptionApi {
    type SubscribeStream = ReceiverStream<Result<pb::SubscribedEvent, Status>>;

    async fn create_subscription(
        &self,
        request: Request<pb::CreateSubscriptionRequest>,
    ) -> Result<Response<pb::CreateSubscriptionResponse>, Status> {
        let caller = caller_of(&request)?;
        let member = self.0.member_of(&caller)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = request_id(&mut violations, &request.request_id);
        if request.event_types.is_empty() {
            violations.add("event_types", "is required");
        }
        let event_types = event_types(&mut violations, &request.event_types, EVENT_TYPES_MAX);
        violations.finish()?;
        for event_type in &event_types {
            require_entitlement(&member, event_type)?;
        }
        let subscription = Subscription {
            subscription_id: Uuid::now_v7(),
            member_id: member.member.member_id.clone(),
            event_types,
            created_at: Utc::now().trunc_subsecs(6),
        };
        let fingerprinted = pb::CreateSubscriptionRequest { request_id: String::new(), ..request };
        let response = self
            .0
            .once(&caller, "CreateSubscription", id, &fingerprinted, async |connection| {
                let live = store::lock_live_subscriptions(connection, &subscription.member_id).await?;
                if live >= SUBSCRIPTIONS_PER_MEMBER_MAX {
                    return Err(ApiError::FailedPrecondition(format!(
                        "member {} has {live} subscriptions, the most a member may hold; delete one first",
                        subscription.member_id
                    )));
                }
                store::insert_subscription(connection, &subscription).await?;
                let proto = subscription_to_proto(&subscription);
                let event =
                    pb::SubscriptionChanged { subscription: Some(proto.clone()), changed_by: Some(actor(&caller)) };
                esocial_events::outbox::enqueue(
                    connection,
                    &events::SUBSCRIPTION_CREATED,
                    Some(subscription.member_id.as_str()),
                    &event,
                )
                .await?;
                Ok(pb::CreateSubscriptionResponse { subscription: Some(proto) })
            })
            .await?;
        // The consumers start at the creation time, so making them now or at
        // the first Subscribe loses nothing; now spares the first reader.
        if let Some(created) = &response.subscription
            && let Ok(id) = created.subscription_id.parse::<Uuid>()
            && let Ok(Some(stored)) = store::subscription(&self.0.pool, id).await
            && let Err(error) = self.0.subscriptions.ensure_live_consumers(&self.0.pool, &stored).await
        {
            tracing::warn!(%error, subscription = %id, "consumers not created yet; the first Subscribe will");
        }
        Ok(Response::new(response))
    }

    async fn list_subscriptions(
        &self,
        request: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::ListSubscriptionsResponse>, Status> {
        let member = self.0.member_of(&caller_of(&request)?)?;
        let subscriptions =
            store::subscriptions_of(&self.0.pool, &member.member.member_id).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::ListSubscriptionsResponse {
            subscriptions: subscriptions.iter().map(subscription_to_proto).collect(),
        }))
    }

    async fn delete_subscription(
        &self,
        request: Request<pb::DeleteSubscriptionRequest>,
    ) -> Result<Response<pb::DeleteSubscriptionResponse>, Status> {
        let caller = caller_of(&request)?;
        let member = self.0.member_of(&caller)?;
        let mut violations = Violations::new();
        let id = subscription_id(&mut violations, &request.get_ref().subscription_id);
        violations.finish()?;
        let subscription = self.owned(&member, id).await?;
        let mut transaction = self.0.pool.begin().await.map_err(ApiError::from)?;
        if store::delete_subscription(&mut transaction, id).await.map_err(ApiError::from)? {
            let event = pb::SubscriptionChanged {
                subscription: Some(subscription_to_proto(&subscription)),
                changed_by: Some(actor(&caller)),
            };
            esocial_events::outbox::enqueue(
                &mut transaction,
                &events::SUBSCRIPTION_DELETED,
                Some(member.member.member_id.as_str()),
                &event,
            )
            .await
            .map_err(ApiError::from)?;
        }
        transaction.commit().await.map_err(ApiError::from)?;
        if let Err(error) = self.0.subscriptions.delete_consumers(&subscription).await {
            tracing::warn!(%error, subscription = %id, "consumers of a deleted subscription not removed");
        }
        Ok(Response::new(pb::DeleteSubscriptionResponse {}))
    }

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = caller_of(&request)?;
        let member = self.0.member_of(&caller)?;
        // The door let the call in with the certificate the member is bound
        // to, if any; the stream ends if it is bound to another later.
        let presented = request.peer_certs().as_ref().and_then(crate::proxy::leaf_fingerprint);
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = subscription_id(&mut violations, &request.subscription_id);
        let window = match usize::try_from(request.window).unwrap_or(usize::MAX) {
            0 => WINDOW_DEFAULT,
            window if window > WINDOW_MAX => {
                violations.add("window", format!("must be at most {WINDOW_MAX}"));
                WINDOW_DEFAULT
            }
            window => window,
        };
        violations.finish()?;
        let subscription = self.owned(&member, id).await?;
        for event_type in &subscription.event_types {
            require_entitlement(&member, event_type)?;
        }
        let place = self.0.subscriptions.stream_place(&member.member.member_id)?;
        // Deleted since it was read above: its consumers, made again here,
        // are removed, and the member is told as if it had been gone.
        let consumers = self
            .0
            .subscriptions
            .ensure_live_consumers(&self.0.pool, &subscription)
            .await
            .map_err(|error| {
                tracing::warn!(%error, subscription = %id, "cannot open a subscription's consumers");
                Status::unavailable("the event stream is unavailable; retry")
            })?
            .ok_or_else(|| Status::not_found(format!("no subscription {id} of member {}", member.member.member_id)))?;
        Ok(Response::new(ReceiverStream::new(self.0.subscriptions.stream(
            &subscription,
            consumers,
            window,
            place,
            presented,
            caller.token_accepted_until,
        ))))
    }

    async fn acknowledge_events(
        &self,
        request: Request<pb::AcknowledgeEventsRequest>,
    ) -> Result<Response<pb::AcknowledgeEventsResponse>, Status> {
        let member = self.0.member_of(&caller_of(&request)?)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = subscription_id(&mut violations, &request.subscription_id);
        if request.ack_tokens.is_empty() {
            violations.add("ack_tokens", "is required");
        } else if request.ack_tokens.len() > ACK_TOKENS_MAX {
            violations.add("ack_tokens", format!("at most {ACK_TOKENS_MAX}"));
        }
        violations.finish()?;
        let subscription = self.owned(&member, id).await?;
        let mut violations = Violations::new();
        let mut subjects = Vec::with_capacity(request.ack_tokens.len());
        for (index, token) in request.ack_tokens.iter().enumerate() {
            match self.0.subscriptions.ack_subject(&subscription, token) {
                Some(subject) => subjects.push(subject),
                None => violations
                    .add(format!("ack_tokens[{index}]"), "is not an acknowledgement token of this subscription"),
            }
        }
        violations.finish()?;
        self.0.subscriptions.acknowledge(&subjects).await?;
        Ok(Response::new(pb::AcknowledgeEventsResponse {
            acknowledged: u32::try_from(request.ack_tokens.len()).unwrap_or(u32::MAX),
        }))
    }
}
