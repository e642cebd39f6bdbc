//! The gate of development sign-in (the web client's `/dev/web/*` endpoints, which hand out
//! access tokens without any credential). It exists only when the operator chose it
//! (`[dev] sign_in = true` / `--dev-sign-in`) and no real tenant is configured, and it keeps
//! those endpoints from being a way into somebody else's account:
//!
//! - **No takeover.** The endpoints mint new identities only. Each answer carries a `secret`
//!   (HMAC-SHA256 of the raw id under a key kept in the database); a fresh token for an
//!   existing identity needs that secret, so only the browser the identity was minted for can
//!   refresh it, and identities created any other way can never be reached.
//! - **Rate limit.** A token bucket per source address ([`SIGN_IN_BURST`] at once, then
//!   [`SIGN_IN_PER_MINUTE`] a minute); over it the endpoints answer `429 TooManyRequests`.

use crate::store::StoreError;
use crate::store::identity_store::IdentityStore;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use dashmap::DashMap;
use hmac::{Hmac, Mac};
use std::net::IpAddr;
use std::time::Instant;

/// Sign-ins one source address may make at once.
pub const SIGN_IN_BURST: f64 = 30.0;
/// Sign-ins one source address may make per minute after the burst.
pub const SIGN_IN_PER_MINUTE: f64 = 30.0;
/// Addresses tracked before idle (full) buckets are forgotten.
const MAX_TRACKED_ADDRESSES: usize = 4096;
const KEY_SETTING: &str = "dev_sign_in_key";

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Development sign-in: the secret key for re-issue and the per-address buckets.
pub struct DevSignInGate {
    key: Vec<u8>,
    buckets: DashMap<IpAddr, Bucket>,
}

impl std::fmt::Debug for DevSignInGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevSignInGate").field("tracked_addresses", &self.buckets.len()).finish_non_exhaustive()
    }
}

impl DevSignInGate {
    /// Load the persisted key (generated on first use), so secrets survive a restart.
    /// The gate's key is a setting of the identity store: in a cluster one key for every node,
    /// so a sign-in secret handed out by one node is accepted by the others.
    pub fn load_or_create(settings: &dyn IdentityStore) -> Result<Self, StoreError> {
        let key = settings.setting_or_create(KEY_SETTING, &mut || {
            let mut key = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
            B64URL.encode(key)
        })?;
        let key = B64URL.decode(key.as_bytes()).map_err(|e| StoreError::Worker(format!("dev sign-in key: {e}")))?;
        Ok(Self { key, buckets: DashMap::new() })
    }

    fn mac(&self) -> Hmac<sha2::Sha256> {
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// The secret handed out with an identity this sign-in minted.
    pub fn secret_for(&self, raw_id: &str) -> String {
        let mut mac = self.mac();
        mac.update(raw_id.as_bytes());
        B64URL.encode(mac.finalize().into_bytes())
    }

    /// Is `secret` the one handed out for `raw_id`? (constant time)
    pub fn check_secret(&self, raw_id: &str, secret: &str) -> bool {
        let Ok(bytes) = B64URL.decode(secret.as_bytes()) else { return false };
        let mut mac = self.mac();
        mac.update(raw_id.as_bytes());
        mac.verify_slice(&bytes).is_ok()
    }

    /// Take one sign-in from `addr`'s bucket at `now`; false when it is empty.
    pub fn admit(&self, addr: IpAddr, now: Instant) -> bool {
        if self.buckets.len() > MAX_TRACKED_ADDRESSES {
            self.buckets.retain(|_, b| refill(*b, now).tokens < SIGN_IN_BURST);
        }
        let mut bucket = self.buckets.entry(addr).or_insert(Bucket { tokens: SIGN_IN_BURST, at: now });
        *bucket = refill(*bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn refill(b: Bucket, now: Instant) -> Bucket {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    Bucket { tokens: (b.tokens + elapsed * SIGN_IN_PER_MINUTE / 60.0).min(SIGN_IN_BURST), at: now }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use std::time::Duration;

    #[test]
    fn secrets_are_per_identity_and_survive_a_reload() {
        let store = Store::open_in_memory().unwrap();
        let gate = DevSignInGate::load_or_create(&store).unwrap();
        let secret = gate.secret_for("8:acs:r_1");
        assert!(gate.check_secret("8:acs:r_1", &secret));
        assert!(!gate.check_secret("8:acs:r_2", &secret));
        assert!(!gate.check_secret("8:acs:r_1", "not base64 !"));
        assert!(!gate.check_secret("8:acs:r_1", ""));
        let again = DevSignInGate::load_or_create(&store).unwrap();
        assert!(again.check_secret("8:acs:r_1", &secret));
        let other = DevSignInGate::load_or_create(&Store::open_in_memory().unwrap()).unwrap();
        assert!(!other.check_secret("8:acs:r_1", &secret));
    }

    #[test]
    fn the_bucket_empties_refills_and_is_per_address() {
        let gate = DevSignInGate::load_or_create(&Store::open_in_memory().unwrap()).unwrap();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        let admitted = (0..100).filter(|_| gate.admit(a, t0)).count();
        assert_eq!(admitted, SIGN_IN_BURST as usize);
        assert!(gate.admit(b, t0), "another address has its own bucket");
        assert!(!gate.admit(a, t0 + Duration::from_millis(500)));
        assert!(gate.admit(a, t0 + Duration::from_secs(2)), "one sign-in back after 60/{SIGN_IN_PER_MINUTE} s");
        assert!(!gate.admit(a, t0 + Duration::from_secs(2)));
    }
}
