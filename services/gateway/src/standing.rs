//! A forwarded stream's member, checked again while the stream is open: a
//! member suspended, bound to a client certificate its connection did not
//! present, or no longer given the method since the stream opened is cut
//! off with what a new call of its would get.
//!
//! The check costs one comparison with the directory's version at each
//! message either way; the member's entry is looked at again only when the
//! directory has changed. A silent stream is woken by the change itself
//! ([`Standing::lost`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

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
    /// The directory's version last found to admit the call.
    admitted: AtomicU64,
    /// Why the call was cut off, once it was: every later check says so too.
    refusal: OnceLock<Status>,
    /// The response side watches the standing (the service has answered
    /// with headers): it ends the call.
    watched: AtomicBool,
}

impl Standing {
    pub fn new(directory: Arc<Directory>, member_id: MemberId, path: String, peer: Option<PeerCertificates>) -> Self {
        Self {
            directory,
            member_id,
            path,
            peer,
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
    /// at each change of the directory, so that a stream with nothing to
    /// pass is cut off too. Never ends once the directory is gone (the
    /// gateway is stopping).
    pub async fn lost(&self) -> Status {
        let mut changes = self.directory.changes();
        while changes.changed().await.is_ok() {
            if let Err(status) = self.check() {
                return status;
            }
        }
        std::future::pending().await
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
