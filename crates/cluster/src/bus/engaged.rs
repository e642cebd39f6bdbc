//! Busy across nodes (docs/cluster-rings.md): which users are connected in a call on which
//! node, so a user in a call on node A who is rung, called or asked to accept from node B is
//! busy there exactly as on one node.
//!
//! Each node writes `palaver:engaged:<raw id>` = its node id, expiring after
//! [`ENGAGED_TTL_MS`], when a user becomes connected in a call it runs, deletes it (if still
//! its own) when the user leaves the call, and re-writes the keys of its engaged users every
//! presence refresh (5 s), so a killed node's users are free again at most 15 s later. A node
//! about to place, ring or accept asks with one `MGET` which of the users concerned are engaged
//! on **another** node; Redis away (1 s command timeout) reads as "nobody": rings then behave as
//! before (the callee is rung), never a false busy.

use super::RedisUserBus;
use fred::prelude::*;

/// Expiry of an engagement key (refreshed every presence refresh, 5 s).
pub const ENGAGED_TTL_MS: i64 = 15_000;

fn engaged_key(raw_id: &str) -> String {
    format!("palaver:engaged:{raw_id}")
}

impl RedisUserBus {
    /// Publish `engaged` as engaged on this node and `freed` as free, in the background.
    pub(super) fn spawn_engagement_change(&self, engaged: &[String], freed: &[String]) {
        for user in engaged {
            self.engaged_here.insert(user.clone(), ());
        }
        for user in freed {
            self.engaged_here.remove(user);
        }
        let (client, node) = (self.client.clone(), self.node_id.clone());
        let (engaged, freed) = (engaged.to_vec(), freed.to_vec());
        tokio::spawn(async move {
            for user in &engaged {
                if let Err(e) = set_engaged(&client, &node, user).await {
                    tracing::debug!(user = %user, error = %e, "engagement not published (Redis away?)");
                }
            }
            for user in &freed {
                let key = engaged_key(user);
                let owner: Result<Option<String>, _> = client.get(&key).await;
                if owner.as_ref().is_ok_and(|o| o.as_deref() == Some(node.as_str())) {
                    let _: Result<i64, _> = client.del(&key).await;
                }
            }
        });
    }

    /// Re-write the engagement keys of the users engaged here (the presence refresh).
    pub(super) async fn refresh_engaged(&self) {
        let users: Vec<String> = self.engaged_here.iter().map(|e| e.key().clone()).collect();
        for user in users {
            if set_engaged(&self.client, &self.node_id, &user).await.is_err() {
                return; // Redis away: the next refresh
            }
        }
    }

    /// Which of `raw_ids` are engaged on a node other than this one.
    pub(super) async fn engaged_on_other_nodes(&self, raw_ids: &[String]) -> Vec<String> {
        if raw_ids.is_empty() {
            return Vec::new();
        }
        let keys: Vec<String> = raw_ids.iter().map(|r| engaged_key(r)).collect();
        let owners: Vec<Option<String>> = match self.client.mget(keys).await {
            Ok(owners) => owners,
            Err(e) => {
                tracing::debug!(error = %e, "engagement unknown (Redis away?): nobody counted busy elsewhere");
                return Vec::new();
            }
        };
        raw_ids
            .iter()
            .zip(owners)
            .filter(|(_, owner)| owner.as_deref().is_some_and(|o| o != self.node_id))
            .map(|(raw, _)| raw.clone())
            .collect()
    }
}

async fn set_engaged(client: &Client, node: &str, user: &str) -> Result<(), fred::error::Error> {
    client.set::<(), _, _>(engaged_key(user), node, Some(Expiration::PX(ENGAGED_TTL_MS)), None, false).await
}
