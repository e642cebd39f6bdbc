//! Directory identities bound to their tenant. The ACS raw id of a directory user is
//! `8:orgid:<oid>` whatever tenant issued the token, and every ownership check downstream
//! (meeting organizer and roles, presence, calls, chat, revocation) compares raw ids. So the
//! first tenant that presents an oid owns it on this server, durably: every later IdP token
//! (exchange or native client) and every access token for that oid must come from the same
//! tenant, and one tenant's token (or the development IdP's, or a tenant that can choose its
//! users' oids) can never act as another tenant's user. Real directory oids are unique GUIDs,
//! so a legitimate user never meets a binding of another tenant.
//!
//! The bindings live in a [`TenantBindingStore`]: the SQLite table `directory_tenants`
//! (component `directory_tenants`) on one node, or the cluster's PostgreSQL table of the same
//! name (palaver-cluster `tenants.rs`), so every node of a cluster enforces one set. They are
//! mirrored in memory so the access-token check needs no I/O. In a cluster a node's mirror
//! lacks the bindings other nodes made since it started; that only matters for `check`, and
//! every access token of a directory user comes from an exchange whose `bind` read the shared
//! table first, so a token of another tenant for a bound oid is never issued by any node.

use crate::domain::Refusal;
use crate::store::{Store, StoreError};
use async_trait::async_trait;
use dashmap::DashMap;
use palaver_core::ErrorCode;
use rusqlite::OptionalExtension;
use std::sync::Arc;

const MIGRATIONS: &[&str] = &["
    CREATE TABLE directory_tenants (
        oid TEXT PRIMARY KEY NOT NULL,
        tenant_id TEXT NOT NULL,
        bound_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
"];

/// Where the bindings are kept (keys are lower-cased oids).
#[async_trait]
pub trait TenantBindingStore: Send + Sync + std::fmt::Debug {
    /// Every binding, as (oid, tenant).
    fn load_all(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Bind `oid` to `tenant_id` unless it is bound already (first writer wins); the tenant
    /// it is bound to afterwards.
    async fn bind(&self, oid: &str, tenant_id: &str, now_ms: i64) -> Result<Option<String>, StoreError>;
}

/// The SQLite table `directory_tenants` of a single node.
#[derive(Debug, Clone)]
pub struct SqliteTenantBindings(Store);

impl SqliteTenantBindings {
    /// Create the table if needed.
    pub fn open(store: &Store) -> Result<Self, StoreError> {
        store.migrate("directory_tenants", MIGRATIONS)?;
        Ok(Self(store.clone()))
    }
}

#[async_trait]
impl TenantBindingStore for SqliteTenantBindings {
    fn load_all(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.0.with_conn(|c| {
            let mut stmt = c.prepare("SELECT oid, tenant_id FROM directory_tenants")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
    }

    async fn bind(&self, oid: &str, tenant_id: &str, now_ms: i64) -> Result<Option<String>, StoreError> {
        let (oid, tenant) = (oid.to_string(), tenant_id.to_string());
        self.0
            .call(move |c| {
                // First writer wins; read back what is stored (another request may have raced us).
                c.execute(
                    "INSERT INTO directory_tenants (oid, tenant_id, bound_at_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT(oid) DO NOTHING",
                    rusqlite::params![oid, tenant, now_ms],
                )?;
                c.query_row("SELECT tenant_id FROM directory_tenants WHERE oid = ?1", [&oid], |r| r.get(0)).optional()
            })
            .await
    }
}

/// oid → tenant, for every directory user seen.
#[derive(Debug)]
pub struct TenantBindings {
    store: Arc<dyn TenantBindingStore>,
    by_oid: DashMap<String, String>,
}

/// oids compare without case (GUIDs).
fn key(oid: &str) -> String {
    oid.to_ascii_lowercase()
}

fn other_tenant(oid: &str) -> Refusal {
    Refusal::new(
        ErrorCode::Forbidden,
        format!(
            "the directory user `{oid}` belongs to another tenant on this server; a token of this tenant cannot act as them"
        ),
    )
}

impl TenantBindings {
    /// Create the SQLite table if needed and load every binding.
    pub fn open(store: &Store) -> Result<Self, StoreError> {
        Self::with_store(Arc::new(SqliteTenantBindings::open(store)?))
    }

    /// Load every binding of `store`.
    pub fn with_store(store: Arc<dyn TenantBindingStore>) -> Result<Self, StoreError> {
        let rows = store.load_all()?;
        Ok(Self { store, by_oid: rows.into_iter().collect() })
    }

    /// The tenant `oid` is bound to, if any.
    pub fn tenant_of(&self, oid: &str) -> Option<String> {
        self.by_oid.get(&key(oid)).map(|t| t.clone())
    }

    /// An access token's check (no I/O): refused when `oid` is bound to another tenant.
    pub fn check(&self, oid: &str, tenant_id: &str) -> Result<(), Refusal> {
        match self.by_oid.get(&key(oid)) {
            Some(bound) if *bound != tenant_id => Err(other_tenant(oid)),
            _ => Ok(()),
        }
    }

    /// A validated IdP token's check: bind `oid` to `tenant_id` on first sight (durably, before
    /// any token is issued), refuse it when it is bound to another tenant.
    pub async fn bind(&self, oid: &str, tenant_id: &str, now_ms: i64) -> Result<(), Refusal> {
        self.check(oid, tenant_id)?;
        if self.by_oid.contains_key(&key(oid)) {
            return Ok(());
        }
        let oid_key = key(oid);
        let bound = self.store.bind(&oid_key, tenant_id, now_ms).await?;
        let Some(bound) = bound else {
            return Err(Refusal::internal("the directory tenant binding was not stored"));
        };
        self.by_oid.insert(oid_key, bound.clone());
        if bound == tenant_id { Ok(()) } else { Err(other_tenant(oid)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_tenant_owns_an_oid_durably_and_case_blind() {
        let store = Store::open_in_memory().unwrap();
        let bindings = TenantBindings::open(&store).unwrap();
        bindings.check("OID-1", "tenant-b").expect("nothing bound yet");
        bindings.bind("oid-1", "tenant-a", 1).await.unwrap();
        bindings.bind("OID-1", "tenant-a", 2).await.expect("the same tenant again");
        assert_eq!(bindings.bind("oid-1", "tenant-b", 3).await.unwrap_err().code, ErrorCode::Forbidden);
        assert_eq!(bindings.check("Oid-1", "tenant-b").unwrap_err().code, ErrorCode::Forbidden);
        bindings.check("oid-1", "tenant-a").unwrap();
        bindings.bind("oid-2", "tenant-b", 4).await.expect("another oid is free");
        let reopened = TenantBindings::open(&store).unwrap();
        assert_eq!(reopened.tenant_of("OID-1").as_deref(), Some("tenant-a"));
        assert!(reopened.check("oid-1", "tenant-b").is_err());
    }
}
