//! [`PgTenantBindings`]: directory users' tenant bindings on PostgreSQL, behind signaling's
//! [`TenantBindingStore`] port (the SQLite table `directory_tenants`), so the first tenant
//! that presents an oid owns it on **every** node of a cluster, not only on the node that saw
//! it first (docs/cluster.md "Shared state"). First writer wins: `INSERT … ON CONFLICT DO
//! NOTHING`, then read back what is stored, as on SQLite.

use crate::database::Database;
use crate::identity::{pg, store_error};
use async_trait::async_trait;
use palaver_signaling::auth::directory::tenant_binding::TenantBindingStore;
use palaver_signaling::store::StoreError;

/// Append-only migration steps of the `directory_tenants` component.
pub const MIGRATIONS: &[&str] = &["
CREATE TABLE directory_tenants (
    oid TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    bound_at_ms BIGINT NOT NULL
);
"];

/// The tenant bindings of a cluster.
#[derive(Clone, Debug)]
pub struct PgTenantBindings {
    db: Database,
}

impl PgTenantBindings {
    /// The store on `db`, after applying its migrations.
    pub fn open(db: &Database) -> Result<Self, StoreError> {
        db.migrate("directory_tenants", MIGRATIONS).map_err(store_error)?;
        Ok(Self { db: db.clone() })
    }
}

#[async_trait]
impl TenantBindingStore for PgTenantBindings {
    fn load_all(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.db
            .block_on(|pool| async move {
                let client = pool.get().await.map_err(|e| StoreError::Backend(e.to_string()))?;
                let rows = client.query("SELECT oid, tenant_id FROM directory_tenants", &[]).await.map_err(pg)?;
                Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
            })
            .map_err(store_error)?
    }

    async fn bind(&self, oid: &str, tenant_id: &str, now_ms: i64) -> Result<Option<String>, StoreError> {
        let (oid, tenant) = (oid.to_string(), tenant_id.to_string());
        self.db
            .run(move |pool| async move {
                let client = pool.get().await.map_err(|e| StoreError::Backend(e.to_string()))?;
                client
                    .execute(
                        "INSERT INTO directory_tenants (oid, tenant_id, bound_at_ms) VALUES ($1, $2, $3)
                         ON CONFLICT (oid) DO NOTHING",
                        &[&oid, &tenant, &now_ms],
                    )
                    .await
                    .map_err(pg)?;
                let row = client
                    .query_opt("SELECT tenant_id FROM directory_tenants WHERE oid = $1", &[&oid])
                    .await
                    .map_err(pg)?;
                Ok(row.map(|r| r.get(0)))
            })
            .await
            .map_err(store_error)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PostgresServer;
    use palaver_signaling::auth::directory::TenantBindings;
    use std::sync::Arc;

    fn fresh_database() -> Database {
        Database::connect(&PostgresServer::shared().unwrap().fresh_database().unwrap()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_binding_made_on_one_node_holds_on_another() {
        let db = fresh_database();
        let node_a = TenantBindings::with_store(Arc::new(PgTenantBindings::open(&db).unwrap())).unwrap();
        let node_b = TenantBindings::with_store(Arc::new(PgTenantBindings::open(&db).unwrap())).unwrap();
        node_a.bind("OID-1", "tenant-a", 1).await.unwrap();
        // Node B has not seen the oid, but its bind reads the shared table first.
        let refused = node_b.bind("oid-1", "tenant-b", 2).await.unwrap_err();
        assert_eq!(refused.code, palaver_core::ErrorCode::Forbidden);
        assert_eq!(node_b.tenant_of("oid-1").as_deref(), Some("tenant-a"));
        node_b.bind("oid-1", "tenant-a", 3).await.expect("the owning tenant on the other node");
        // A node started later loads every binding.
        let node_c = TenantBindings::with_store(Arc::new(PgTenantBindings::open(&db).unwrap())).unwrap();
        assert!(node_c.check("Oid-1", "tenant-b").is_err());
    }
}
