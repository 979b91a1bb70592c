//! A forwarded stream's member, checked again while the stream is open: a
//! member suspended, bound to a client certificate its connection did not
//! present, or no longer given the method since the stream opened is cut
//! off with what a new call of its would get; so is a stream whose token
//! expires ([`token_expired`]), and every stream once the gateway starts to
//! stop ([`gateway_stopping`]).
//!
//! The check costs a reading of the clock and one comparison with the
//! directory's version at each message; the member's entry is looked at
//! again only when the directory has changed. A silent stream is woken by
//! the change itself, when its token expires, or when the gateway starts
//! to stop ([`Standing::lost`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Context;
use std::time::{Duration, SystemTime};

use esocial_kit::shutdown::Shutdown;
use futures_util::task::AtomicWaker;
use tonic::Status;

use crate::directory::Directory;
use crate::domain::{MemberId, MethodPath};
use crate::proxy::{self, PeerCertificates};

/// What [`Standing::admitted`] holds before the first check.
const NOT_CHECKED: u64 = u64::MAX;

#[derive(Debug)]
pub struct Standing {
    directory: Arc<Directory>,
    member_id: MemberId,
    path: String,
    /// The client certificate chain the stream's connection presented.
    peer: Option<PeerCertificates>,
    /// Until when the token the stream was opened with is accepted (its
    /// `exp` and the verifier's leeway, seconds since 1970-01-01 UTC).
    token_accepted_until: u64,
    /// The directory's version last found to admit the call.
    admitted: AtomicU64,
    /// Why the call was cut off, once it was: every later check says so too.
    refusal: OnceLock<Status>,
    /// The response side watches the standing (the service has answered
    /// with headers): it ends the call.
    watched: AtomicBool,
    /// Triggered when the gateway starts to stop.
    stopping: Shutdown,
    /// The call has ended (its log entry is recorded): the request side
    /// stops passing on what the client still sends.
    ended: AtomicBool,
    /// The request side's task, woken when the call ends.
    request_side: AtomicWaker,
    /// The client has sent the end of its request stream.
    request_finished: AtomicBool,
    request_finished_notify: tokio::sync::Notify,
}

impl Standing {
    pub fn new(
        directory: Arc<Directory>,
        member_id: MemberId,
        path: String,
        peer: Option<PeerCertificates>,
        token_accepted_until: u64,
        stopping: Shutdown,
    ) -> Self {
        Self {
            directory,
            member_id,
            path,
            peer,
            token_accepted_until,
            admitted: AtomicU64::new(NOT_CHECKED),
            refusal: OnceLock::new(),
            watched: AtomicBool::new(false),
            stopping,
            ended: AtomicBool::new(false),
            request_side: AtomicWaker::new(),
            request_finished: AtomicBool::new(false),
            request_finished_notify: tokio::sync::Notify::new(),
        }
    }

    /// The request side has seen the end of the client's request stream.
    pub fn finish_request(&self) {
        if !self.request_finished.swap(true, Ordering::AcqRel) {
            // Kept for the waiter if it is not waiting yet.
            self.request_finished_notify.notify_one();
        }
    }

    /// Waits until the client has ended its request stream.
    pub async fn request_finished(&self) {
        if !self.request_finished.load(Ordering::Acquire) {
            self.request_finished_notify.notified().await;
        }
    }

    /// The call has ended, however it ended (the proxy's exchange calls it
    /// as it records the call's entry): the request side, however silent
    /// its client, ends too, instead of keeping the call (and the gateway's
    /// stop) waiting for the client's next message.
    pub fn end_call(&self) {
        self.ended.store(true, Ordering::Release);
        self.request_side.wake();
    }

    /// Whether the call has ended; if not, the task polling is woken when
    /// it does.
    pub fn poll_call_ended(&self, context: &Context<'_>) -> bool {
        if self.ended.load(Ordering::Acquire) {
            return true;
        }
        self.request_side.register(context.waker());
        self.ended.load(Ordering::Acquire)
    }

    /// `Ok` while the member may still make the call; `Err` holds what the
    /// caller is told, from the first refusal on.
    pub fn check(&self) -> Result<(), Status> {
        if let Some(refusal) = self.refusal.get() {
            return Err(refusal.clone());
        }
        if self.stopping.is_triggered() {
            return Err(self.refusal.get_or_init(gateway_stopping).clone());
        }
        if until_expiry(self.token_accepted_until).is_zero() {
            return Err(self.refusal.get_or_init(token_expired).clone());
        }
        // The version is read before the entry: an entry at least as new as
        // the version it is recorded under.
        let version = self.directory.version();
        if self.admitted.load(Ordering::Acquire) == version {
            return Ok(());
        }
        match self.judge() {
            Ok(()) => {
                self.admitted.store(version, Ordering::Release);
                Ok(())
            }
            Err(status) => Err(self.refusal.get_or_init(|| status).clone()),
        }
    }

    /// The refusal the call was cut off with, if it was.
    pub fn refusal(&self) -> Option<Status> {
        self.refusal.get().cloned()
    }

    /// From now on the response side ends the call when the member loses
    /// its standing.
    pub fn watch(&self) {
        self.watched.store(true, Ordering::Release);
    }

    pub fn watched(&self) -> bool {
        self.watched.load(Ordering::Acquire)
    }

    /// Waits until the member loses its standing: checked at once (the
    /// directory may have changed since the door let the call in), then
    /// at each change of the directory, when the token expires and when
    /// the gateway starts to stop, so that a stream with nothing to pass
    /// is cut off too.
    pub async fn lost(&self) -> Status {
        let mut changes = self.directory.changes();
        let mut watching = true;
        let expired = expiry(self.token_accepted_until);
        let stopping = self.stopping.wait();
        tokio::pin!(expired, stopping);
        loop {
            tokio::select! {
                changed = changes.changed(), if watching => watching = changed.is_ok(),
                () = &mut expired => return self.check().err().unwrap_or_else(token_expired),
                () = &mut stopping => return self.check().err().unwrap_or_else(gateway_stopping),
            }
            if let Err(status) = self.check() {
                return status;
            }
        }
    }

    /// The door's checks, on the member as the directory has it now.
    fn judge(&self) -> Result<(), Status> {
        let Some(entry) = self.directory.by_member(&self.member_id) else {
            return Err(Status::unauthenticated(format!("{} is not a registered member system", self.member_id)));
        };
        if let Some(refusal) = proxy::turned_away(&entry, || self.peer.as_ref().and_then(proxy::leaf_fingerprint)) {
            return Err(refusal);
        }
        match MethodPath::parse(&self.path) {
            Some(method) if entry.may_call(&method, &self.path) => Ok(()),
            _ => Err(proxy::not_permitted(&self.member_id, &self.path)),
        }
    }
}

/// Why a stream ends when the token it was opened with expires: what a new
/// call with that token would get (as UNAUTHENTICATED); the member opens it
/// again with a new one.
pub fn token_expired() -> Status {
    Status::unauthenticated("the token the stream was opened with has expired; open it again with a new token")
}

/// Why a stream ends when the gateway starts to stop (SIGTERM, or the
/// process asked to end): UNAVAILABLE, on which a client calls again, at
/// another replica or once this one is back. It ends at a message's end,
/// not wherever the grace period would have cut it.
pub fn gateway_stopping() -> Status {
    Status::unavailable("the gateway is stopping; open the stream again")
}

/// Waits until `accepted_until` (seconds since 1970-01-01 UTC) has passed
/// by the wall clock the token's time is on. The monotonic clock a timer
/// keeps may drift from it: it waits again for what is left.
pub async fn expiry(accepted_until: u64) {
    loop {
        let left = until_expiry(accepted_until);
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left).await;
    }
}

/// How long until `accepted_until` (seconds since 1970-01-01 UTC), when a
/// token stops being accepted; zero once it has passed.
pub fn until_expiry(accepted_until: u64) -> Duration {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Duration::from_secs(accepted_until).saturating_sub(now)
}
