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

impl std::fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpKeys").field("profile", &self.profile).finish_non_exhaustive()
    }
}
