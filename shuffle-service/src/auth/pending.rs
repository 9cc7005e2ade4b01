//! Connections not yet authenticated (`spark.authenticate`): at most
//! `croupier.authenticate.maxPendingConnections` at once. A connection admitted beyond the bound
//! evicts the oldest one still authenticating, so idle sockets opened by a peer that never
//! authenticates cannot hold the descriptors real clients need, and a real client (whose
//! handshake takes milliseconds) still gets in while such sockets are open.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

/// Largest pre-authentication message a legal client sends, as a whole frame: a SASL
/// DIGEST-MD5 response (at most 4096 bytes, RFC 2831 §2.1.2) behind a 1024-byte appId, or an
/// auth engine challenge (1024-byte appId, 64-byte salt, 256-byte sealed key), plus the
/// RpcRequest header (8-byte length, type, request id, body length).
pub const LARGEST_AUTH_FRAME: u64 = 8 + 1 + 8 + 4 + (1 + 4 + 1024 + 4 + 4096);

/// Frames declared longer than this are refused before authentication, before anything is
/// allocated for them (the full `max_request_frame` applies only once authenticated).
pub const PRE_AUTH_MAX_FRAME: u64 = 16 * 1024;

/// The set of connections still authenticating.
#[derive(Debug)]
pub struct Pending {
    max: usize,
    /// Connection number (accept order) → its eviction signal.
    open: Mutex<BTreeMap<u64, CancellationToken>>,
    /// Connections closed to make room for newer ones.
    pub evicted: AtomicU64,
}

/// Held while a connection is authenticating; leaving the set on drop.
pub struct Admission {
    pending: Arc<Pending>,
    conn: u64,
    /// Cancelled when a newer connection needs this one's place.
    pub evict: CancellationToken,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.conn);
    }
}

impl Pending {
    pub fn new(max: usize) -> Pending {
        Pending {
            max: max.max(1),
            open: Mutex::new(BTreeMap::new()),
            evicted: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, CancellationToken>> {
        // The map stays consistent whatever panicked while holding it.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections authenticating now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Admits connection `conn` (numbers grow in accept order), evicting the oldest ones
    /// beyond the bound. Returns the admission and how many were evicted.
    pub fn admit(self: &Arc<Self>, conn: u64) -> (Admission, usize) {
        let evict = CancellationToken::new();
        let mut open = self.lock();
        let mut evicted = 0;
        while open.len() >= self.max {
            match open.pop_first() {
                Some((_, oldest)) => {
                    oldest.cancel();
                    evicted += 1;
                }
                None => break,
            }
        }
        open.insert(conn, evict.clone());
        drop(open);
        self.evicted.fetch_add(evicted as u64, Ordering::Relaxed);
        (
            Admission {
                pending: self.clone(),
                conn,
                evict,
            },
            evicted,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_is_evicted_beyond_the_bound() {
        let p = Arc::new(Pending::new(2));
        let (a, _) = p.admit(1);
        let (b, _) = p.admit(2);
        let (c, n) = p.admit(3);
        assert_eq!(n, 1);
        assert!(a.evict.is_cancelled());
        assert!(!b.evict.is_cancelled() && !c.evict.is_cancelled());
        assert_eq!(p.len(), 2);
        drop(b);
        assert_eq!(p.len(), 1);
        let (d, n) = p.admit(4);
        assert_eq!(n, 0);
        assert!(!c.evict.is_cancelled() && !d.evict.is_cancelled());
        drop(a);
        assert_eq!(
            p.len(),
            2,
            "an evicted connection was already out of the set"
        );
        assert_eq!(p.evicted.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_pre_auth_cap_holds_the_largest_legal_messages_with_margin() {
        use crate::auth::engine::message::{MAX_APP_ID_LEN, MAX_CIPHERTEXT_LEN, MAX_SALT_LEN};
        let engine =
            8 + 1 + 8 + 4 + (1 + 4 + MAX_APP_ID_LEN + 4 + MAX_SALT_LEN + 4 + MAX_CIPHERTEXT_LEN);
        assert!(engine as u64 <= LARGEST_AUTH_FRAME);
        const { assert!(PRE_AUTH_MAX_FRAME >= 2 * LARGEST_AUTH_FRAME) };
    }
}
