//! The members, their rights, limits and entitlements, held in memory so
//! that deciding a call takes no database round trip. Reloaded after every
//! change (this replica's at once; other replicas through `LISTEN`, with a
//! periodic reload as a safety net).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use esocial_kit::rate::{Allowance, TokenBucket};
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use crate::counted::Counted;
use crate::domain::{LogMode, Member, MemberId, MemberStatus, MethodPath, MethodRight};
use crate::store;

/// A reload at least this often, in case a notification was missed.
const RELOAD_INTERVAL: Duration = Duration::from_secs(30);
const RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// What applies when a member's limit is 0 ("the default").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultLimits {
    pub requests_per_second: u32,
    pub burst: u32,
    pub message_bytes_max: u32,
}

/// A member as the proxy sees it: limits resolved, rights indexed.
#[derive(Debug)]
pub struct MemberEntry {
    pub member: Member,
    methods: HashSet<String>,
    services: HashSet<String>,
    /// The event types it may subscribe to, each with when it was given.
    pub event_types: BTreeMap<String, DateTime<Utc>>,
    /// The member's limits for the whole deployment (this replica applies
    /// its share).
    pub requests_per_second: u32,
    pub burst: u32,
    pub message_bytes_max: u32,
    /// The member id as forwarded metadata.
    pub member_header: http::HeaderValue,
    /// Identity has not deactivated the member's system client.
    client_active: bool,
    bucket: Arc<Mutex<TokenBucket>>,
    /// Refusals for the member's rate that get a log entry: as many again
    /// as its limits let through, so that a member's flood cannot fill the
    /// log every member's calls wait on.
    pub refusals_logged: Arc<Allowance>,
    /// The member's calls in flight (a unary call holds a place in the
    /// message log's queue until its entry is sent); carried over when the
    /// directory is read again.
    calls_in_flight: Arc<AtomicUsize>,
}

impl MemberEntry {
    /// Counts a call of the member's in flight, unless `max` already are;
    /// it is counted until the guard is dropped (when its exchange ends).
    pub fn call_in_flight(&self, max: usize) -> Option<Counted> {
        Counted::one_more_below(&self.calls_in_flight, max)
    }

    /// Active, and so is its system client at identity.
    pub fn is_active(&self) -> bool {
        self.member.status == MemberStatus::Active && self.client_active
    }

    /// Why the member is not active, for its refusals.
    pub fn inactive_reason(&self) -> String {
        if self.member.status == MemberStatus::Active {
            format!(
                "member {}: its system client {} is deactivated at identity",
                self.member.member_id, self.member.client_id
            )
        } else {
            format!("member {} is suspended", self.member.member_id)
        }
    }

    /// Whether a connection that presented the client certificate
    /// `presented` gives (its SHA-256, asked for only when the member is
    /// bound to one) may act for the member: it is bound to none, or to
    /// that one.
    pub fn admits_certificate(&self, presented: impl FnOnce() -> Option<[u8; 32]>) -> bool {
        self.member.client_certificate.is_none_or(|bound| presented() == Some(bound))
    }

    pub fn logs_bodies(&self) -> bool {
        self.member.log_mode == LogMode::Full
    }

    /// Whether a right covers this method.
    pub fn may_call(&self, path: &MethodPath<'_>, full_path: &str) -> bool {
        self.methods.contains(full_path) || self.services.contains(path.service)
    }

    /// Counts a request against the member's rate; `Err` holds the wait.
    pub fn take_token(&self) -> Result<(), Duration> {
        self.bucket.lock().map_or(Err(Duration::from_secs(1)), |mut bucket| bucket.take(Instant::now()))
    }
}

#[derive(Debug, Default)]
struct Snapshot {
    by_client: HashMap<String, Arc<MemberEntry>>,
    by_member: HashMap<MemberId, Arc<MemberEntry>>,
}

impl Snapshot {
    fn add(&mut self, entry: Arc<MemberEntry>) {
        self.by_client.insert(entry.member.client_id.clone(), entry.clone());
        self.by_member.insert(entry.member.member_id.clone(), entry);
    }
}

#[derive(Debug)]
pub struct Directory {
    pool: PgPool,
    defaults: DefaultLimits,
    /// Replicas sharing the members' limits.
    replicas: u32,
    snapshot: RwLock<Arc<Snapshot>>,
    /// One reload at a time: a reload that read the tables before a change
    /// must not replace one that read them after.
    reloading: tokio::sync::Mutex<()>,
    /// Counts the reloads: open streams compare it at each message to
    /// check their member again ([`crate::standing`])...
    version: AtomicU64,
    /// ...and wait for its change while they have nothing to pass.
    changes: tokio::sync::watch::Sender<u64>,
}

impl Directory {
    pub fn new(pool: PgPool, defaults: DefaultLimits, replicas: u32) -> Self {
        Self {
            pool,
            defaults,
            replicas,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            reloading: tokio::sync::Mutex::new(()),
            version: AtomicU64::new(0),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }

    /// How many times the directory was read; a member's entry is at least
    /// as new as the version read before it.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Sees each new version, the current one first: whoever waits for a
    /// change checks at once too, for a change since it last looked.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        let mut changes = self.changes.subscribe();
        changes.mark_changed();
        changes
    }

    /// Puts `snapshot` in place, then counts a new version.
    fn replace(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        match self.snapshot.write() {
            Ok(mut current) => *current = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
        let version = self.version.fetch_add(1, Ordering::AcqRel) + 1;
        self.changes.send_replace(version);
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot.read().map_or_else(|poisoned| poisoned.into_inner().clone(), |snapshot| snapshot.clone())
    }

    /// The member a system client authenticates as.
    pub fn by_client(&self, client_id: &str) -> Option<Arc<MemberEntry>> {
        self.current().by_client.get(client_id).cloned()
    }

    pub fn by_member(&self, member_id: &MemberId) -> Option<Arc<MemberEntry>> {
        self.current().by_member.get(member_id).cloned()
    }

    /// Reads the directory again. Rate-limit buckets of members whose limits
    /// did not change carry over.
    pub async fn reload(&self) -> Result<(), sqlx::Error> {
        let _one_at_a_time = self.reloading.lock().await;
        let rows = store::directory(&self.pool).await?;
        let previous = self.current();
        let mut rights: HashMap<MemberId, Vec<MethodRight>> = HashMap::new();
        for right in rows.rights {
            rights.entry(right.member_id).or_default().push(right.right);
        }
        let mut event_types: HashMap<MemberId, BTreeMap<String, DateTime<Utc>>> = HashMap::new();
        for (member_id, event_type, granted_at) in rows.entitlements {
            event_types.entry(member_id).or_default().insert(event_type.as_str().to_owned(), granted_at);
        }
        let inactive_clients: HashSet<String> = rows.inactive_clients.into_iter().collect();
        let mut snapshot = Snapshot::default();
        for member in rows.members {
            let or_default = |value: u32, default: u32| if value == 0 { default } else { value };
            let requests_per_second = or_default(member.limits.requests_per_second, self.defaults.requests_per_second);
            let burst = or_default(member.limits.burst, self.defaults.burst);
            let message_bytes_max = or_default(member.limits.message_bytes_max, self.defaults.message_bytes_max);
            let fresh = TokenBucket::share(requests_per_second, burst, self.replicas);
            let kept = previous
                .by_member
                .get(&member.member_id)
                .filter(|entry| entry.bucket.lock().is_ok_and(|bucket| bucket.same_limits(&fresh)));
            let (bucket, refusals_logged) = match kept {
                Some(entry) => (entry.bucket.clone(), entry.refusals_logged.clone()),
                None => (
                    Arc::new(Mutex::new(fresh)),
                    Arc::new(Allowance::of_bucket(
                        "refusals of a member over its rate logged",
                        member.member_id.to_string(),
                        TokenBucket::share(requests_per_second, burst, self.replicas),
                    )),
                ),
            };
            let calls_in_flight = previous
                .by_member
                .get(&member.member_id)
                .map_or_else(Arc::default, |entry| entry.calls_in_flight.clone());
            let mut methods = HashSet::new();
            let mut services = HashSet::new();
            for right in rights.remove(&member.member_id).unwrap_or_default() {
                match right {
                    MethodRight::Method(path) => methods.insert(path),
                    MethodRight::Service(service) => services.insert(service),
                };
            }
            let Ok(member_header) = http::HeaderValue::from_str(member.member_id.as_str()) else { continue };
            let entry = Arc::new(MemberEntry {
                member_header,
                client_active: !inactive_clients.contains(&member.client_id),
                event_types: event_types.remove(&member.member_id).unwrap_or_default(),
                methods,
                services,
                requests_per_second,
                burst,
                message_bytes_max,
                bucket,
                refusals_logged,
                calls_in_flight,
                member,
            });
            snapshot.add(entry);
        }
        self.replace(snapshot);
        Ok(())
    }

    /// Reloads whenever the tables change (any replica), and every
    /// [`RELOAD_INTERVAL`], until `shutdown`.
    pub async fn follow(self: Arc<Self>, schema: String, shutdown: impl std::future::Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let channel = format!("gateway_directory_{schema}");
        let mut listener: Option<PgListener> = None;
        loop {
            if listener.is_none() {
                listener = match PgListener::connect_with(&self.pool).await {
                    Ok(mut connected) => connected.listen(&channel).await.ok().map(|()| connected),
                    Err(_) => None,
                };
            }
            // Reload after (re)connecting too: notifications may have been missed.
            if let Err(error) = self.reload().await {
                tracing::warn!(%error, "cannot reload the gateway directory; keeping the previous one");
            }
            let wait = if listener.is_some() { RELOAD_INTERVAL } else { RETRY_INTERVAL };
            let notified = async {
                match listener.as_mut() {
                    Some(connected) => connected.recv().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(wait) => {}
                received = notified => {
                    if !received {
                        listener = None;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    impl Directory {
        /// Holds `entries` from now on, as a reload that read them would.
        pub(crate) fn hold(&self, entries: Vec<MemberEntry>) {
            let mut snapshot = Snapshot::default();
            for entry in entries {
                snapshot.add(Arc::new(entry));
            }
            self.replace(snapshot);
        }
    }

    /// `entry` with a right to every method of `service`.
    pub(crate) fn with_service(mut entry: MemberEntry, service: &str) -> MemberEntry {
        entry.services.insert(service.to_owned());
        entry
    }

    /// An active member with no rights, for unit tests.
    pub(crate) fn entry(member_id: &str, client_id: &str) -> MemberEntry {
        let member_id = crate::domain::MemberId::parse(member_id).expect("member id");
        MemberEntry {
            member_header: http::HeaderValue::from_str(member_id.as_str()).expect("header"),
            client_active: true,
            member: Member {
                member_id,
                name: "test".to_owned(),
                client_id: client_id.to_owned(),
                status: MemberStatus::Active,
                contact: String::new(),
                limits: crate::domain::Limits::default(),
                log_mode: LogMode::Metadata,
                client_certificate: None,
                created_at: chrono::Utc::now(),
                updated_at: chrono::Utc::now(),
            },
            methods: HashSet::new(),
            services: HashSet::new(),
            event_types: BTreeMap::new(),
            requests_per_second: 10,
            burst: 10,
            message_bytes_max: 1024,
            bucket: Arc::new(Mutex::new(TokenBucket::new(10, 10))),
            refusals_logged: Arc::new(Allowance::new("tests", 10, 10)),
            calls_in_flight: Arc::default(),
        }
    }
}
