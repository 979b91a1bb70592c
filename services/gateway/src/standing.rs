//! A forwarded stream's member, checked again while the stream is open: a
//! member suspended, bound to a client certificate its connection did not
//! present, or no longer given the method since the stream opened is cut
//! off with what a new call of its would get; so is a stream whose token
//! expires ([`token_expired`]).
//!
//! The check costs a reading of the clock and one comparison with the
//! directory's version at each message; the member's entry is looked at
//! again only when the directory has changed. A silent stream is woken by
//! the change itself, or when its token expires ([`Standing::lost`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

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
}

impl Standing {
    pub fn new(
        directory: Arc<Directory>,
        member_id: MemberId,
        path: String,
        peer: Option<PeerCertificates>,
        token_accepted_until: u64,
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
        }
    }

    /// `Ok` while the member may still make the call; `Err` holds what the
    /// caller is told, from the first refusal on.
    pub fn check(&self) -> Result<(), Status> {
        if let Some(refusal) = self.refusal.get() {
            return Err(refusal.clone());
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
    /// at each change of the directory and when the token expires, so that
    /// a stream with nothing to pass is cut off too. Once the directory is
    /// gone (the gateway is stopping), only the token's expiry ends it.
    pub async fn lost(&self) -> Status {
        let mut changes = self.directory.changes();
        let mut watching = true;
        let expired = expiry(self.token_accepted_until);
        tokio::pin!(expired);
        loop {
            tokio::select! {
                changed = changes.changed(), if watching => watching = changed.is_ok(),
                () = &mut expired => return self.check().err().unwrap_or_else(token_expired),
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
        if !entry.is_active() {
            return Err(proxy::inactive(&entry));
        }
        if !entry.admits_certificate(|| self.peer.as_ref().and_then(proxy::leaf_fingerprint)) {
            return Err(proxy::certificate_required(&self.member_id));
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
