//! Token revocation: a per-identity "revoked before" mark in milliseconds, compared with a
//! token's `iatms`. Marks are written to the identity store first (in the same transaction as
//! the change that caused them, `IdentityStore::revoke`), then mirrored in memory, so every later check sees
//! them at once and they survive a restart. Checks never touch the database.

use crate::store::StoreError;
use crate::store::identity_store::IdentityStore;
use dashmap::DashMap;
use palaver_core::AccessTokenClaims;

#[derive(Debug, Default)]
pub struct RevocationList {
    marks: DashMap<String, i64>,
}

impl RevocationList {
    /// Load every mark from the store (once, at start-up, before any request is served).
    pub fn load(store: &dyn IdentityStore) -> Result<Self, StoreError> {
        let marks = store.revocations()?;
        Ok(Self { marks: marks.into_iter().collect() })
    }

    /// Tokens of `raw_id` with `iatms` below this are revoked.
    pub fn revoked_before(&self, raw_id: &str) -> Option<i64> {
        self.marks.get(raw_id).map(|v| *v)
    }

    pub fn is_revoked(&self, claims: &AccessTokenClaims) -> bool {
        self.revoked_before(&claims.raw_id()).is_some_and(|mark| claims.iatms < mark)
    }

    /// The `iatms` to give a token issued at `now_ms`: never below the identity's mark, so a
    /// token issued right after a revocation (same millisecond) is valid.
    pub fn issue_time(&self, raw_id: &str, now_ms: i64) -> i64 {
        self.revoked_before(raw_id).map_or(now_ms, |mark| mark.max(now_ms))
    }

    /// Mirror a committed mark in memory (marks only move forward).
    pub fn apply(&self, raw_id: &str, mark: i64) {
        let mut entry = self.marks.entry(raw_id.to_string()).or_insert(mark);
        *entry = (*entry).max(mark);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::identity_store::RevokeAction;

    fn claims(raw: &str, iatms: i64) -> AccessTokenClaims {
        AccessTokenClaims {
            skypeid: raw.trim_start_matches("8:").into(),
            scp: 1792,
            csi: "0".into(),
            iat: iatms / 1000,
            exp: i64::MAX / 1000,
            acs_scope: "chat".into(),
            resource_id: "r".into(),
            resource_location: "l".into(),
            jti: "j".into(),
            iatms,
            name: None,
            tid: None,
            native: false,
        }
    }

    /// Write and apply a mark (the identity domain does the same inside its transaction).
    fn revoke(list: &RevocationList, store: &Store, raw_id: &str, now_ms: i64) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mark = rt.block_on(store.revoke(raw_id, now_ms, RevokeAction::MarkOnly)).unwrap().unwrap();
        list.apply(raw_id, mark);
    }

    #[test]
    fn revocation_applies_to_older_tokens_only_and_survives_reload() {
        let store = Store::open_in_memory().unwrap();
        let list = RevocationList::load(&store).unwrap();
        assert!(!list.is_revoked(&claims("8:acs:r_1", 100)));
        revoke(&list, &store, "8:acs:r_1", 100);
        assert!(list.is_revoked(&claims("8:acs:r_1", 100)));
        assert!(list.is_revoked(&claims("8:acs:r_1", 50)));
        let next = list.issue_time("8:acs:r_1", 100);
        assert_eq!(next, 101);
        assert!(!list.is_revoked(&claims("8:acs:r_1", next)));
        assert!(!list.is_revoked(&claims("8:acs:r_2", 50)));

        let reloaded = RevocationList::load(&store).unwrap();
        assert!(reloaded.is_revoked(&claims("8:acs:r_1", 100)));
        // Marks never move back.
        revoke(&reloaded, &store, "8:acs:r_1", 10);
        assert!(reloaded.is_revoked(&claims("8:acs:r_1", 100)));
        assert!(RevocationList::load(&store).unwrap().is_revoked(&claims("8:acs:r_1", 100)));
    }
}
