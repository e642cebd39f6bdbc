//! The SRTP master keys of one transport, as DTLS-SRTP exports them (or as a QUIC or test peer
//! signals them); the engine builds its in-place [`SrtpContext`](super::SrtpContext)s from them.

use super::Profile;

/// SRTP master keys of a transport: `local` protects what the server sends, `remote`
/// unprotects what the peer sends (from DTLS-SRTP key export, or signalled for QUIC/tests).
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    pub profile: Profile,
    pub local_master_key: Vec<u8>,
    pub local_master_salt: Vec<u8>,
    pub remote_master_key: Vec<u8>,
    pub remote_master_salt: Vec<u8>,
}

impl SrtpKeys {
    /// The server's keys for a QUIC connection's SRTP media carrier (`docs/quic.md`): profile
    /// AEAD_AES_128_GCM, protecting with the server half of the TLS-exported keying material and
    /// unprotecting with the client half.
    pub fn quic_server(keying: &palaver_core::protocol::quic::SrtpKeying) -> Self {
        Self {
            profile: super::Profile::AeadAes128Gcm,
            local_master_key: keying.server_key.to_vec(),
            local_master_salt: keying.server_salt.to_vec(),
            remote_master_key: keying.client_key.to_vec(),
            remote_master_salt: keying.client_salt.to_vec(),
        }
    }
}

impl std::fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpKeys").field("profile", &self.profile).finish_non_exhaustive()
    }
}
