//! Events for member systems. Each event type of a subscription is read
//! through its own durable JetStream consumer (a single filter subject
//! works on every NATS version the project supports), created to start at
//! the subscription's creation time, so nothing published after it is
//! missed even if the member connects later. Delivered events are
//! acknowledged by the member with the `ack_token` of each: that is the
//! JetStream acknowledgement subject, checked to belong to one of the
//! member's consumers, so any gateway replica can take it. A stream reads
//! its consumers one pull request at a time, all through one inbox of its
//! own, so that nothing the server delivered is dropped unread; when it ends,
//! its last requests are read to their end (within [`PULL_EXPIRY`]) and
//! everything not acknowledged (sent, or pulled and not yet sent) is
//! handed back to JetStream (NAK), so a reconnect resumes right after the
//! last acknowledged event within seconds instead of the ack wait;
//! acknowledged events are never sent again. A request the server lost
//! (NATS restarted) falls silent, heartbeats included, and is sent anew.

use std::collections::VecDeque;
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_nats::jetstream::{self, consumer};
use chrono::{DateTime, Utc};
use esocial_kit::config::EventSettings;
use esocial_kit::shutdown::Shutdown;
use esocial_proto::gateway::v1 as pb;
use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tonic::Status;
use uuid::Uuid;

use crate::directory::Directory;
use crate::domain::MemberId;
use crate::message_log::{MacKey, hex};
use crate::standing::{expiry, gateway_stopping, token_expired};
pub use crate::store::{Subscription, subscription};

/// The purpose of the key acknowledgement tokens are signed with.
pub const ACK_TOKEN_KEY_PURPOSE: &str = "esocial-gateway-ack-token/v1";
/// Separates the acknowledgement subject from its signature in a token.
const TOKEN_SEPARATOR: char = '~';

/// Events a consumer may have out without an acknowledgement.
pub const UNACKNOWLEDGED_MAX: i64 = 1000;
/// Events sent before the first acknowledgement is needed, by default.
pub const WINDOW_DEFAULT: usize = 100;
pub const WINDOW_MAX: usize = 1000;
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Pull requests expire after this: a connection that vanished holds none
/// for longer, and an event a stream that ended did not acknowledge is
/// delivered again within it (and [`HAND_BACK_DELAY`]).
const PULL_EXPIRY: Duration = Duration::from_secs(2);
/// While a pull request waits for events, the server says every this
/// long that it still holds it (a heartbeat).
const PULL_HEARTBEAT: Duration = Duration::from_millis(500);
/// How long after a stream ended the events it sent and did not see
/// acknowledged are delivered again.
const HAND_BACK_DELAY: Duration = Duration::from_secs(1);
/// How long an ended stream's pull requests are read at most: a request
/// ends at its expiry, or counts as ended once silent for
/// [`PULL_SILENCE_MAX`].
const DRAIN_MAX: Duration = Duration::from_secs(8);
/// `Subscribe` streams a member may hold open at once on one replica.
pub const STREAMS_PER_MEMBER_MAX: usize = 20;
/// When a member over that limit is told to try again.
const STREAM_RETRY_AFTER: Duration = Duration::from_secs(1);
/// How far apart the clocks that stamp events (the stream's, the
/// services' databases) and the gateway's may be without an event being
/// missed: a subscription's consumers start this long before it was
/// created, and an event is withheld as older than its type's entitlement
/// only if it occurred more than this long before it was given (so the
/// last moments before an entitlement is given again may still come).
const CLOCK_TOLERANCE: Duration = Duration::from_secs(5);

/// Open streams by member.
type OpenStreams = Arc<std::sync::Mutex<std::collections::HashMap<MemberId, usize>>>;

/// A member's place among its open streams, given back when dropped (when
/// the stream's task ends).
#[derive(Debug)]
pub struct StreamPlace {
    open: OpenStreams,
    member_id: MemberId,
}

impl Drop for StreamPlace {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock()
            && let Some(count) = open.get_mut(&self.member_id)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.member_id);
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Subscriptions {
    nats: async_nats::Client,
    jetstream: jetstream::Context,
    events: EventSettings,
    ack_wait: Duration,
    /// Signs acknowledgement tokens: a member can only hand back tokens the
    /// gateway gave it, for its own subscription.
    ack_key: MacKey,
    /// The keys of the signing keys the current one replaced: the tokens
    /// they signed still acknowledge.
    earlier_ack_keys: Vec<MacKey>,
    directory: Arc<Directory>,
    open_streams: OpenStreams,
    /// Triggered when the gateway starts to stop: open streams end then.
    stopping: Shutdown,
}

/// The durable consumer of one event type of a subscription.
pub fn consumer_name(subscription_id: Uuid, index: usize) -> String {
    format!("gw-{}-{index}", subscription_id.simple())
}

/// The subscription a consumer named by [`consumer_name`] belongs to.
pub fn subscription_of_consumer(name: &str) -> Option<Uuid> {
    let (id, index) = name.strip_prefix("gw-")?.rsplit_once('-')?;
    index.parse::<usize>().ok()?;
    (id.len() == 32).then(|| Uuid::try_parse(id).ok()).flatten()
}

/// The signature of an acknowledgement token: `reply` for the subscription.
fn token_mac(key: &MacKey, subscription_id: Uuid, reply: &str) -> String {
    hex(&key.mac(&[subscription_id.as_bytes(), reply.as_bytes()]))
}

/// How often the gateway looks for consumers left by deleted subscriptions.
pub const ORPHAN_SWEEP_INTERVAL: Duration = Duration::from_secs(600);

/// The stream and consumer an acknowledgement subject names, if it is one:
/// `$JS.ACK.<stream>.<consumer>.<7 numbers…>` (ADR-15 v1) or
/// `$JS.ACK.<domain>.<account>.<stream>.<consumer>.<…>` (v2).
pub fn ack_subject_parts(subject: &str) -> Option<(&str, &str)> {
    let rest = subject.strip_prefix("$JS.ACK.")?;
    if subject.len() > 512 || subject.contains([' ', '*', '>', '\t', '\r', '\n']) {
        return None;
    }
    let tokens: Vec<&str> = rest.split('.').collect();
    if tokens.iter().any(|token| token.is_empty()) {
        return None;
    }
    let numeric = |tokens: &[&str]| tokens.iter().all(|token| token.bytes().all(|byte| byte.is_ascii_digit()));
    match tokens.len() {
        7 if numeric(&tokens[2..]) => Some((tokens[0], tokens[1])),
        n if n >= 9 && numeric(&tokens[4..9]) => Some((tokens[2], tokens[3])),
        _ => None,
    }
}

impl Subscriptions {
    pub fn new(
        nats: async_nats::Client,
        events: EventSettings,
        ack_wait: Duration,
        ack_key: MacKey,
        directory: Arc<Directory>,
    ) -> Self {
        let jetstream = jetstream::new(nats.clone());
        Self {
            nats,
            jetstream,
            events,
            ack_wait,
            ack_key,
            earlier_ack_keys: Vec::new(),
            directory,
            open_streams: OpenStreams::default(),
            stopping: Shutdown::new(),
        }
    }

    /// These subscriptions, whose open streams end with UNAVAILABLE once
    /// `stopping` is triggered (the gateway starts to stop), handing back
    /// what was sent and not acknowledged, instead of running to the end
    /// of the grace period and being cut off there.
    #[must_use]
    pub fn ending_streams_at(mut self, stopping: Shutdown) -> Self {
        self.stopping = stopping;
        self
    }

    /// These subscriptions, also taking the acknowledgement tokens that
    /// `earlier` signed (the key of a signing key the current one replaced),
    /// so that tokens given out before a key rotation still acknowledge.
    #[must_use]
    pub fn accepting(mut self, earlier: MacKey) -> Self {
        self.earlier_ack_keys.push(earlier);
        self
    }

    /// A place for one more open stream of `member_id`, or
    /// RESOURCE_EXHAUSTED when it holds [`STREAMS_PER_MEMBER_MAX`].
    pub fn stream_place(&self, member_id: &MemberId) -> Result<StreamPlace, Status> {
        let mut open = self.open_streams.lock().map_err(|_| Status::internal("internal error"))?;
        let count = open.entry(member_id.clone()).or_default();
        if *count >= STREAMS_PER_MEMBER_MAX {
            return Err(esocial_kit::ApiError::ResourceExhausted {
                message: format!(
                    "member {member_id} has {STREAMS_PER_MEMBER_MAX} event streams open here, the most it may; close one first"
                ),
                retry_after: STREAM_RETRY_AFTER,
            }
            .into());
        }
        *count += 1;
        Ok(StreamPlace { open: self.open_streams.clone(), member_id: member_id.clone() })
    }

    /// The acknowledgement subject of an event, signed for the subscription.
    fn ack_token(&self, subscription_id: Uuid, reply: &str) -> String {
        format!("{reply}{TOKEN_SEPARATOR}{}", token_mac(&self.ack_key, subscription_id, reply))
    }

    fn subject(&self, event_type: &str) -> String {
        format!("{}.{event_type}", self.events.subject_prefix)
    }

    /// The event stream the subscriptions' consumers read (made if missing).
    async fn event_stream(&self) -> anyhow::Result<jetstream::stream::Stream> {
        let stream = esocial_events::stream::ensure_stream(&self.jetstream, &self.events).await?;
        Ok(self.jetstream.get_stream(&stream.config.name).await?)
    }

    /// Removes a consumer from the event stream; false when it was not there.
    async fn delete_consumer(&self, name: &str) -> anyhow::Result<bool> {
        match self.jetstream.delete_consumer_from_stream(name, &self.events.stream_name).await {
            Ok(_) => Ok(true),
            Err(error) if error.to_string().contains("not found") => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Creates the subscription's consumers, or finds them.
    pub async fn ensure_consumers(&self, subscription: &Subscription) -> anyhow::Result<Vec<consumer::PullConsumer>> {
        let stream = self.event_stream().await?;
        let starts_at = subscription.created_at - CLOCK_TOLERANCE;
        let nanos = starts_at.timestamp_nanos_opt().unwrap_or(0);
        let start_time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))?;
        let mut consumers = Vec::with_capacity(subscription.event_types.len());
        for (index, event_type) in subscription.event_types.iter().enumerate() {
            let name = consumer_name(subscription.subscription_id, index);
            let config = consumer::pull::Config {
                durable_name: Some(name.clone()),
                description: Some(format!("gateway subscription {}: {event_type}", subscription.subscription_id)),
                filter_subject: self.subject(event_type.as_str()),
                deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time },
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: self.ack_wait,
                max_ack_pending: UNACKNOWLEDGED_MAX,
                ..Default::default()
            };
            consumers.push(stream.get_or_create_consumer(&name, config).await?);
        }
        Ok(consumers)
    }

    /// Like [`Subscriptions::ensure_consumers`], for a subscription read a
    /// moment ago: `None` when it was deleted meanwhile, with the consumers
    /// this call may have made again removed. (A delete removes the
    /// consumers after its commit, and this reads the subscription after
    /// making them, so one of the two removes them.)
    pub async fn ensure_live_consumers(
        &self,
        pool: &sqlx::PgPool,
        subscription: &Subscription,
    ) -> anyhow::Result<Option<Vec<consumer::PullConsumer>>> {
        let consumers = self.ensure_consumers(subscription).await?;
        if crate::store::subscription(pool, subscription.subscription_id).await?.is_some() {
            return Ok(Some(consumers));
        }
        self.delete_consumers(subscription).await?;
        Ok(None)
    }

    /// Removes the event stream's consumers whose subscriptions are not
    /// live: those a delete could not remove (NATS was down, the gateway
    /// stopped between the commit and the removal) and those a Subscribe
    /// made again while a delete ran. The consumers are listed before
    /// their subscriptions are read, so the consumers of a subscription
    /// being created are seen with its row. Returns how many it removed.
    pub async fn remove_orphaned_consumers(&self, pool: &sqlx::PgPool) -> anyhow::Result<usize> {
        use futures_util::TryStreamExt as _;
        let names: Vec<String> = self.event_stream().await?.consumer_names().try_collect().await?;
        let owned: Vec<(String, Uuid)> =
            names.into_iter().filter_map(|name| subscription_of_consumer(&name).map(|id| (name, id))).collect();
        if owned.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = owned.iter().map(|(_, id)| *id).collect();
        let live = crate::store::live_subscriptions(pool, &ids).await?;
        let mut removed = 0;
        for (name, id) in owned.iter().filter(|(_, id)| !live.contains(id)) {
            if self.delete_consumer(name).await? {
                removed += 1;
                tracing::info!(consumer = %name, subscription = %id, "removed the consumer of a deleted subscription");
            }
        }
        Ok(removed)
    }

    /// Runs [`Subscriptions::remove_orphaned_consumers`] now and every
    /// [`ORPHAN_SWEEP_INTERVAL`] until `shutdown`.
    pub async fn sweep_orphaned_consumers(self: Arc<Self>, pool: sqlx::PgPool, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            if let Err(error) = self.remove_orphaned_consumers(&pool).await {
                tracing::warn!(%error, "cannot look for the consumers of deleted subscriptions");
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(ORPHAN_SWEEP_INTERVAL) => {}
            }
        }
    }

    pub async fn delete_consumers(&self, subscription: &Subscription) -> anyhow::Result<()> {
        for index in 0..subscription.event_types.len() {
            self.delete_consumer(&consumer_name(subscription.subscription_id, index)).await?;
        }
        Ok(())
    }

    /// The acknowledgement subject in `token`, if the gateway issued the
    /// token for an event of `subscription`.
    pub fn ack_subject<'token>(&self, subscription: &Subscription, token: &'token str) -> Option<&'token str> {
        let (reply, mac) = token.rsplit_once(TOKEN_SEPARATOR)?;
        let signed = std::iter::once(&self.ack_key).chain(&self.earlier_ack_keys).any(|key| {
            let expected = token_mac(key, subscription.subscription_id, reply);
            // Compare without stopping at the first difference.
            mac.len() == expected.len()
                && mac.bytes().zip(expected.bytes()).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
        });
        if !signed {
            return None;
        }
        let (stream, consumer) = ack_subject_parts(reply)?;
        let ours = stream == self.events.stream_name
            && (0..subscription.event_types.len())
                .any(|index| consumer_name(subscription.subscription_id, index) == consumer);
        ours.then_some(reply)
    }

    /// Acknowledges events and waits for JetStream to confirm them, all at
    /// once, within [`ACK_TIMEOUT`].
    pub async fn acknowledge(&self, subjects: &[&str]) -> Result<(), Status> {
        let requests =
            subjects.iter().map(|subject| self.nats.request((*subject).to_owned(), bytes::Bytes::from_static(b"+ACK")));
        match tokio::time::timeout(ACK_TIMEOUT, futures_util::future::join_all(requests)).await {
            Ok(confirmations) => {
                if let Some(error) = confirmations.into_iter().find_map(Result::err) {
                    tracing::warn!(%error, "acknowledgement not confirmed");
                    return Err(Status::unavailable("the event stream did not confirm an acknowledgement; retry"));
                }
                Ok(())
            }
            Err(_) => Err(Status::unavailable("the event stream did not confirm the acknowledgements in time; retry")),
        }
    }

    /// Streams the events of `consumers` until the receiver goes away;
    /// then hands back what was delivered but not acknowledged.
    /// Each event is checked against the directory as it goes: a member
    /// suspended, or no longer entitled to the event's type, gets
    /// PERMISSION_DENIED and the stream ends; one bound since to a client
    /// certificate other than `presented` (the SHA-256 of the one its
    /// connection presented, if any) gets UNAUTHENTICATED, as does the
    /// member once the token the stream was opened with is no longer
    /// accepted (`token_accepted_until`, seconds since 1970-01-01 UTC: its
    /// `exp` and the verifier's leeway).
    pub fn stream(
        &self,
        subscription: &Subscription,
        consumers: Vec<consumer::PullConsumer>,
        window: usize,
        place: StreamPlace,
        presented: Option<[u8; 32]>,
        token_accepted_until: u64,
    ) -> mpsc::Receiver<Result<pb::SubscribedEvent, Status>> {
        let (sender, receiver) = mpsc::channel(window);
        let nats = self.nats.clone();
        let prefix = format!("{}.", self.events.subject_prefix);
        let this = self.clone();
        let subscription_id = subscription.subscription_id;
        let member_id = subscription.member_id.clone();
        let event_types = subscription.event_types.clone();
        // Reply subjects of what went out are kept up to this many; the
        // oldest beyond it are redelivered by JetStream after the ack wait
        // if unacknowledged.
        let cap = usize::try_from(UNACKNOWLEDGED_MAX).unwrap_or(1000) * consumers.len().max(1);
        tokio::spawn(async move {
            // Each consumer is read one pull request at a time, so that when
            // the stream ends, what the requests already out bring can be
            // read to their end and handed back.
            let stopping = Arc::new(AtomicBool::new(false));
            let mut merged = futures_util::stream::select_all(
                consumers
                    .into_iter()
                    .map(|consumer| batches(nats.clone(), this.jetstream.clone(), consumer, window, stopping.clone())),
            );
            let mut delivered: VecDeque<String> = VecDeque::new();
            // A stream with nothing to deliver is checked too, at each
            // change of the directory (and once at its start, for a change
            // since the call came in): a member suspended, or no longer
            // entitled to a type it subscribed to, does not keep it (nor its
            // place) open.
            let mut changes = this.directory.changes();
            let mut watching = true;
            let expired = expiry(token_accepted_until);
            let stopped = this.stopping.wait();
            tokio::pin!(expired, stopped);
            loop {
                let next = tokio::select! {
                    () = sender.closed() => break,
                    () = &mut stopped => {
                        let _ = sender.send(Err(gateway_stopping())).await;
                        break;
                    }
                    () = &mut expired => {
                        let _ = sender.send(Err(token_expired())).await;
                        break;
                    }
                    next = merged.next() => next,
                    changed = changes.changed(), if watching => {
                        // Err: the directory is gone (the gateway is stopping).
                        watching = changed.is_ok();
                        if let Some(refusal) =
                            event_types.iter().find_map(|event_type| this.still_entitled(&member_id, presented, event_type.as_str()).err())
                        {
                            let _ = sender.send(Err(refusal)).await;
                            break;
                        }
                        continue;
                    }
                };
                match next {
                    Some(Ok(message)) => {
                        let Some((mut event, occurred_at)) = to_event(&message, &prefix) else {
                            // Not a CloudEvent: nobody can use it; drop it for good.
                            let _ = message.ack_with(jetstream::AckKind::Term).await;
                            continue;
                        };
                        match this.still_entitled(&member_id, presented, &event.event_type) {
                            Err(refusal) => {
                                delivered.push_back(event.ack_token.clone());
                                let _ = sender.send(Err(refusal)).await;
                                break;
                            }
                            // It occurred while the member was not entitled
                            // (before an entitlement taken away was given
                            // again): not for this member, ever.
                            Ok(granted_at) if occurred_at + CLOCK_TOLERANCE < granted_at => {
                                let _ = message.ack_with(jetstream::AckKind::Term).await;
                                continue;
                            }
                            Ok(_) => {}
                        }
                        delivered.push_back(event.ack_token.clone());
                        event.ack_token = this.ack_token(subscription_id, &event.ack_token);
                        if delivered.len() > cap {
                            delivered.pop_front();
                        }
                        if sender.send(Ok(event)).await.is_err() {
                            break;
                        }
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "a subscription's event stream failed");
                        let _ = sender.send(Err(Status::unavailable("the event stream failed; reconnect"))).await;
                        break;
                    }
                    None => break,
                }
            }
            drop(place);
            // No new pull requests. Those already out are read to their end
            // (their count reached, or expired within PULL_EXPIRY), and what
            // they brought after the member left goes back at once, with
            // what was sent and not acknowledged, once no request of this
            // stream is left to take it again. Sent events go back a second
            // later, so that an acknowledgement the member sent as it left
            // comes first. Acknowledged events are not pending any more: a
            // NAK leaves them be.
            stopping.store(true, Ordering::Release);
            let mut unsent = Vec::new();
            let drained = tokio::time::timeout(DRAIN_MAX, async {
                while let Some(next) = merged.next().await {
                    if let Ok(message) = next
                        && let Some(reply) = &message.reply
                    {
                        unsent.push(reply.to_string());
                    }
                }
            })
            .await;
            drop(merged);
            let (sent_delay, unsent_delay) = if drained.is_ok() {
                (HAND_BACK_DELAY, Duration::ZERO)
            } else {
                // A request may still be out: it must not take them back.
                tracing::warn!(%subscription_id, "the pull requests of an ended event stream did not end in time");
                (PULL_EXPIRY + HAND_BACK_DELAY, PULL_EXPIRY + HAND_BACK_DELAY)
            };
            for (replies, delay) in [(Vec::from(delivered), sent_delay), (unsent, unsent_delay)] {
                let payload = bytes::Bytes::from(jetstream::AckKind::Nak(Some(delay).filter(|delay| !delay.is_zero())));
                for reply in replies {
                    let _ = nats.publish(reply, payload.clone()).await;
                }
            }
            let _ = nats.flush().await;
        });
        receiver
    }
}

impl Subscriptions {
    /// When the member was given `event_type`, if it still holds it, is
    /// active, and is bound to no client certificate or to the one it
    /// `presented`.
    fn still_entitled(
        &self,
        member_id: &MemberId,
        presented: Option<[u8; 32]>,
        event_type: &str,
    ) -> Result<DateTime<Utc>, Status> {
        let member = self.directory.by_member(member_id);
        // As the door refuses a new call of such a member.
        if let Some(refusal) = member.as_ref().and_then(|member| crate::proxy::turned_away(member, || presented)) {
            return Err(refusal);
        }
        member.and_then(|member| member.event_types.get(event_type).copied()).ok_or_else(|| {
            Status::permission_denied(format!("member {member_id} is no longer entitled to {event_type}"))
        })
    }
}

/// The pull request being read.
struct Pull {
    /// Where its answers come: `<inbox>.<n>`, the n-th request.
    reply: async_nats::Subject,
    /// Messages it may still bring.
    left: usize,
}

/// The state of [`batches`] between messages.
struct Puller {
    nats: async_nats::Client,
    jetstream: jetstream::Context,
    consumer: consumer::PullConsumer,
    window: usize,
    stopping: Arc<AtomicBool>,
    /// The puller's inbox and its subscription to `<inbox>.*`, the
    /// answers to all its requests: events an earlier request brought
    /// late are read too, not dropped.
    inbox: Option<(String, async_nats::Subscriber)>,
    current: Option<Pull>,
    /// Requests sent so far.
    requests: u64,
    /// Before the next request after the server refused one (409).
    backoff: Duration,
}

/// No word from the server for this long while connected and reading a
/// request (no event, no heartbeat every [`PULL_HEARTBEAT`], no 408 at its
/// expiry): the request is gone, as when NATS restarted and lost it, and
/// a new one is sent. A second longer than the request lives, for a
/// request or its answers late on the way.
const PULL_SILENCE_MAX: Duration = PULL_HEARTBEAT.saturating_mul(6);
/// After such a silence, how long the inbox gets for what may already be
/// on its way (in the socket, not yet read) before the request is given up.
const PULL_SILENCE_GRACE: Duration = Duration::from_millis(200);
const PULL_BACKOFF_MAX: Duration = Duration::from_secs(1);

impl Puller {
    /// The next message of the consumer: from the request out, or from a
    /// new one when it ended, until `stopping`. A message the server
    /// delivered is never dropped unread here: only silence ends a
    /// request, and what an earlier request brings still comes.
    async fn next(&mut self) -> Option<Result<jetstream::Message, async_nats::Error>> {
        loop {
            if let (Some(pull), Some((_, subscriber))) = (self.current.as_mut(), self.inbox.as_mut()) {
                let message = match tokio::time::timeout(PULL_SILENCE_MAX, subscriber.next()).await {
                    Ok(Some(message)) => message,
                    // The inbox closed: subscribe again.
                    Ok(None) => {
                        self.inbox = None;
                        self.current = None;
                        continue;
                    }
                    // Silent for too long. While NATS is away nothing can
                    // come, and the request may live on in a server that
                    // did not restart: it is kept (nor could a new one go
                    // out). Connected, it is over unless something comes
                    // within a grace (this wait may have been left unpolled
                    // while the member was slow, or the answers are in the
                    // socket, not read yet).
                    Err(_) if self.nats.connection_state() != async_nats::connection::State::Connected => continue,
                    Err(_) => match tokio::time::timeout(PULL_SILENCE_GRACE, subscriber.next()).await {
                        Ok(Some(message)) => message,
                        _ => {
                            self.current = None;
                            continue;
                        }
                    },
                };
                match message.status {
                    // An event comes under its own subject, whichever
                    // request brought it: it counts for the one out (one
                    // given up that brings events after all only makes the
                    // next request go out sooner).
                    None | Some(async_nats::StatusCode::OK) => {
                        pull.left = pull.left.saturating_sub(1);
                        if pull.left == 0 {
                            self.current = None;
                        }
                        self.backoff = Duration::ZERO;
                        return Some(Ok(jetstream::Message { message, context: self.jetstream.clone() }));
                    }
                    // The server's word on a request comes to its reply
                    // subject: that of one given up concerns nothing now.
                    _ if message.subject != pull.reply => {}
                    Some(async_nats::StatusCode::IDLE_HEARTBEAT) => {}
                    Some(async_nats::StatusCode::TIMEOUT | async_nats::StatusCode::NOT_FOUND) => self.current = None,
                    Some(async_nats::StatusCode::REQUEST_TERMINATED) => {
                        let reason = message.description.unwrap_or_default();
                        if reason.contains("Consumer Deleted") || reason.contains("push based") {
                            self.current = None;
                            return Some(Err(format!("the consumer is gone: {reason}").into()));
                        }
                        // Leadership change, server shutdown, too many
                        // requests waiting…: this request is over; ask again.
                        tracing::debug!(%reason, "a pull request ended early");
                        self.current = None;
                        self.backoff = (self.backoff * 2).clamp(Duration::from_millis(100), PULL_BACKOFF_MAX);
                    }
                    Some(status) => {
                        self.current = None;
                        return Some(Err(format!("the event stream answered {status}").into()));
                    }
                }
                continue;
            }
            if self.stopping.load(Ordering::Acquire) {
                return None;
            }
            if !self.backoff.is_zero() {
                tokio::time::sleep(self.backoff).await;
            }
            let inbox = match &self.inbox {
                Some((inbox, _)) => inbox.clone(),
                None => {
                    let inbox = self.nats.new_inbox();
                    match self.nats.subscribe(format!("{inbox}.*")).await {
                        Ok(subscriber) => self.inbox = Some((inbox.clone(), subscriber)),
                        Err(error) => return Some(Err(error.into())),
                    }
                    inbox
                }
            };
            self.requests += 1;
            let request = consumer::pull::BatchConfig {
                batch: self.window,
                expires: Some(PULL_EXPIRY),
                idle_heartbeat: PULL_HEARTBEAT,
                ..Default::default()
            };
            let reply = async_nats::Subject::from(format!("{inbox}.{}", self.requests));
            if let Err(error) = self.consumer.request_batch(request, reply.clone()).await {
                return Some(Err(error.into()));
            }
            self.current = Some(Pull { reply, left: self.window });
        }
    }
}

/// The messages of `consumer`, one pull request of up to `window` at a
/// time, the next asked for when one ends, until `stopping`.
fn batches(
    nats: async_nats::Client,
    jetstream: jetstream::Context,
    consumer: consumer::PullConsumer,
    window: usize,
    stopping: Arc<AtomicBool>,
) -> futures_util::stream::BoxStream<'static, Result<jetstream::Message, async_nats::Error>> {
    let puller = Puller {
        nats,
        jetstream,
        consumer,
        window,
        stopping,
        inbox: None,
        current: None,
        requests: 0,
        backoff: Duration::ZERO,
    };
    futures_util::stream::unfold(puller, |mut puller| async move {
        let next = puller.next().await?;
        Some((next, puller))
    })
    .boxed()
}

/// The event in a message (its `ack_token` still the bare subject), and
/// when it occurred (its CloudEvent `time`).
fn to_event(message: &jetstream::Message, prefix: &str) -> Option<(pb::SubscribedEvent, DateTime<Utc>)> {
    let received = esocial_events::ReceivedEvent::from_message(&message.message).ok()?;
    let info = message.info().ok()?;
    let ack_token = message.reply.as_ref()?.to_string();
    let header = |name: &str| {
        message.headers.as_ref().and_then(|headers| headers.get(name)).map(|value| value.as_str().to_owned())
    };
    let occurred_at = received.time;
    let event = pb::SubscribedEvent {
        event_id: received.id.to_string(),
        ce_type: received.event_type.clone(),
        event_type: received.nats_subject.strip_prefix(prefix).unwrap_or(&received.nats_subject).to_owned(),
        source: received.source.clone(),
        subject: received.subject.clone().unwrap_or_default(),
        time: Some(crate::grpc::timestamp(occurred_at)),
        data_content_type: header(esocial_events::cloudevent::header::CONTENT_TYPE).unwrap_or_default(),
        data_schema: header(esocial_events::cloudevent::header::DATA_SCHEMA).unwrap_or_default(),
        data: received.payload,
        position: info.stream_sequence,
        ack_token,
        delivery_count: u64::try_from(info.delivered).unwrap_or(0),
    };
    Some((event, occurred_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_name_gives_back_its_subscription_and_other_names_none() {
        let id = Uuid::now_v7();
        for index in [0, 1, 17] {
            assert_eq!(subscription_of_consumer(&consumer_name(id, index)), Some(id));
        }
        for other in [
            "gw-",
            "gw-0-0",
            &format!("gw-{}", id.simple()),
            &format!("gw-{}-x", id.simple()),
            &format!("gw-{}-0", id.hyphenated()),
            &format!("registry-{}-0", id.simple()),
            "esocial-gateway-events",
        ] {
            assert_eq!(subscription_of_consumer(other), None, "{other}");
        }
    }

    #[test]
    fn acknowledgement_subjects_of_both_formats_name_their_stream_and_consumer() {
        assert_eq!(
            ack_subject_parts("$JS.ACK.ESOCIAL.gw-abc-0.1.25.3.1790230470084404000.0"),
            Some(("ESOCIAL", "gw-abc-0"))
        );
        assert_eq!(
            ack_subject_parts("$JS.ACK._.HASH.ESOCIAL.gw-abc-1.1.25.3.1790230470084404000.0.xyz"),
            Some(("ESOCIAL", "gw-abc-1"))
        );
        for bad in [
            "",
            "$JS.ACK.ESOCIAL.gw-abc-0",
            "$JS.API.CONSUMER.DELETE.ESOCIAL.gw-abc-0",
            "$JS.ACK.ESOCIAL.gw-abc-0.1.x.3.4.0",
            "$JS.ACK.ESOCIAL.*.1.25.3.4.0",
            "$JS.ACK.ESOCIAL.>",
            "$JS.ACK.ESOCIAL..1.25.3.4.0",
            "$JS.ACK.ESOCIAL.gw-abc-0.1.25.3.4.0 x",
        ] {
            assert_eq!(ack_subject_parts(bad), None, "{bad:?}");
        }
    }
}
