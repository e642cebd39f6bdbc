//! In-place SRTP/SRTCP (RFC 3711) for AES_CM_128_HMAC_SHA1_80/_32 and AEAD_AES_128_GCM
//! (RFC 7714): key derivation, rollover-counter estimation, replay windows. Contexts are built
//! once per transport direction; protecting or unprotecting a packet never allocates (packet
//! buffers carry tail room for the auth tag, see [`Profile::rtp_overhead`]).

mod aes_ctr;
#[cfg(target_arch = "x86_64")]
mod aes_ni;
mod context;
mod gcm;
#[cfg(target_arch = "x86_64")]
mod gcm_ni;
mod hmac_sha1;
mod kdf;
mod keys;
mod replay;
#[cfg(target_arch = "x86_64")]
mod sha_ni;

pub use context::SrtpContext;
pub use kdf::derive_session_key;
pub use keys::SrtpKeys;
pub use replay::{ReplayWindow, RtpIndexEstimator};

/// Which implementation of AES-CTR, HMAC-SHA1 and AES-GCM a context uses. Both are compiled
/// in; [`SrtpContext::new`] picks [`Backend::DEFAULT`], benches and tests compare them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// palaver's own AES-NI / SHA-NI / PCLMULQDQ code (x86_64 with those features; elsewhere
    /// it falls back to [`Backend::RustCrypto`]).
    HandWritten,
    /// The `ctr`/`aes`, `hmac`/`sha1` and `aes-gcm` crates, used in place.
    RustCrypto,
}

impl Backend {
    /// The backend [`SrtpContext::new`] uses.
    pub const DEFAULT: Backend = Backend::HandWritten;
    /// Every backend, for benches and tests.
    pub const ALL: [Backend; 2] = [Backend::HandWritten, Backend::RustCrypto];
}

/// An SRTP protection profile (DTLS-SRTP names, RFC 5764 / RFC 7714).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    Aes128CmHmacSha1_80,
    Aes128CmHmacSha1_32,
    AeadAes128Gcm,
}

impl Profile {
    /// Master key length in bytes.
    pub fn key_len(self) -> usize {
        16
    }

    /// Master salt length in bytes.
    pub fn salt_len(self) -> usize {
        match self {
            Profile::AeadAes128Gcm => 12,
            _ => 14,
        }
    }

    /// Bytes an SRTP packet grows by (the auth tag).
    pub fn rtp_overhead(self) -> usize {
        match self {
            Profile::Aes128CmHmacSha1_80 => 10,
            Profile::Aes128CmHmacSha1_32 => 4,
            Profile::AeadAes128Gcm => 16,
        }
    }

    /// Bytes an SRTCP packet grows by (index word plus tag; 80-bit tag for both HMAC profiles).
    pub fn rtcp_overhead(self) -> usize {
        match self {
            Profile::AeadAes128Gcm => 4 + 16,
            _ => 4 + 10,
        }
    }

    /// DTLS-SRTP protection profile id (RFC 5764 / RFC 7714).
    pub fn dtls_id(self) -> u16 {
        match self {
            Profile::Aes128CmHmacSha1_80 => 0x0001,
            Profile::Aes128CmHmacSha1_32 => 0x0002,
            Profile::AeadAes128Gcm => 0x0007,
        }
    }
}

/// Why a packet could not be protected or unprotected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    #[error("master key or salt has the wrong length")]
    BadKeyLength,
    #[error("packet too short")]
    Truncated,
    #[error("packet header is not valid RTP/RTCP")]
    BadHeader,
    #[error("authentication failed")]
    AuthFailed,
    #[error("packet is a replay or too old")]
    Replayed,
    #[error("buffer has no room for the auth tag")]
    NoTailRoom,
    #[error("too many SSRCs on one context")]
    TooManySsrcs,
    #[error("unencrypted SRTCP is not accepted")]
    UnencryptedRtcp,
}
