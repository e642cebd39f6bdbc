//! `[cluster]`: opt-in multi-node mode. With `postgres_url` set, identities, revocation marks,
//! the generated settings (resource id, access key, token-signing seed), rooms, meetings,
//! chat, the events outbox and the usage ledger with its webhook outbox live in PostgreSQL;
//! without it, everything stays in SQLite under the data directory (the embedded default,
//! unchanged). With `redis_url` also set, nodes announce themselves and their load in Redis
//! and tell each other of revocations at once.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `postgres://user[:password]@host:port/database` (or a libpq `key=value` string).
    pub postgres_url: Option<String>,
    /// This node's name in the shared database (the owner of the usage sessions it opens);
    /// default: the host name (a StatefulSet pod's name).
    pub node_id: Option<String>,
    /// `redis://host:port[/db]`: the node registry and cross-node invalidations (needs
    /// `postgres_url`).
    pub redis_url: Option<String>,
    /// UDP address of the node mesh (QUIC, mutual TLS, ALPN `palaver-cluster/1`). With it (and
    /// `redis_url`), conversations are placed over the nodes: a join reaching a node that is
    /// not the conversation's home is relayed there (WebSocket) or redirected (QUIC).
    pub mesh_listen: Option<std::net::SocketAddr>,
    /// The mesh address other nodes dial (`host:port`); default: the bound `mesh_listen`
    /// address when it is not a wildcard.
    pub mesh_advertise: Option<String>,
    /// PEM of the cluster CA every node's mesh certificate is issued by and checked against.
    pub mesh_ca_cert: Option<std::path::PathBuf>,
    /// PEM of the CA's private key: each node issues itself a mesh certificate at start. When
    /// neither file exists, the first node generates a CA there (development and tests; in
    /// production mount an operator's CA from a secret).
    pub mesh_ca_key: Option<std::path::PathBuf>,
    /// A directory every node mounts (NFS, a ReadWriteMany volume): Call Automation recordings
    /// are written and served there, so a recording made on one node downloads from any node.
    /// Default: `<data_dir>/recordings`, per node.
    pub shared_recordings_dir: Option<std::path::PathBuf>,
}

impl ClusterConfig {
    /// Whether cluster mode (PostgreSQL) is on.
    pub fn enabled(&self) -> bool {
        self.postgres_url.is_some()
    }

    /// Where recordings live: [`Self::shared_recordings_dir`], else `<data_dir>/recordings`.
    pub fn recordings_dir(&self, data_dir: &std::path::Path) -> std::path::PathBuf {
        self.shared_recordings_dir.clone().unwrap_or_else(|| data_dir.join("recordings"))
    }

    /// The configured node id, else the host name, else `palaver`.
    pub fn node_id(&self) -> String {
        self.node_id.clone().or_else(host_name).unwrap_or_else(|| "palaver".into())
    }
}

fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length; gethostname NUL-terminates it when
    // the name fits (and we read only up to the first NUL).
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_named_after_the_host() {
        let cfg: ClusterConfig = toml_like_default();
        assert!(!cfg.enabled());
        assert!(!cfg.node_id().is_empty());
        assert_eq!(cfg.recordings_dir(std::path::Path::new("/d")), std::path::Path::new("/d/recordings"));
        let named = ClusterConfig {
            node_id: Some("palaver-0".into()),
            shared_recordings_dir: Some("/mnt/shared/recordings".into()),
            ..cfg
        };
        assert_eq!(named.node_id(), "palaver-0");
        assert_eq!(named.recordings_dir(std::path::Path::new("/d")), std::path::Path::new("/mnt/shared/recordings"));
    }

    fn toml_like_default() -> ClusterConfig {
        serde_json::from_str("{}").unwrap()
    }
}
