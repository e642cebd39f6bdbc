//! The native QUIC transport's fixed numbers (`docs/quic.md`), defined once for the server
//! (`crates/server/src/quic/`), the media plane (`sfu::control::attach`), the client library
//! and the load tester. There is no SDP on QUIC, so what SDP would negotiate is fixed here.

/// The ALPN protocol id, as text (discovery, logs).
pub const ALPN_NAME: &str = "palaver/1";
/// The ALPN protocol id, as the TLS handshake carries it.
pub const ALPN: &[u8] = ALPN_NAME.as_bytes();

/// Application close code: the signaling stream ended normally (either side).
pub const CLOSE_NORMAL: u32 = 0;
/// Application close code: a protocol violation (no signaling stream, an oversized frame).
pub const CLOSE_PROTOCOL: u32 = 1;
/// Application close code: the `auth` frame was refused (the reason is the `ErrorCode`).
pub const CLOSE_AUTH_FAILED: u32 = 2;
/// Application close code: the server is shutting down.
pub const CLOSE_SHUTDOWN: u32 = 3;
// Server-initiated ends of a session use `ConnectionClose::quic_code` (4 and up).

/// RFC 6464 audio-level header-extension id of sent and received audio (one-byte header).
pub const AUDIO_LEVEL_EXTENSION_ID: u8 = 1;

/// The Opus payload type when a client does not choose one (also the mix's default for a
/// browser that receives no audio section).
pub const DEFAULT_OPUS_PT: u8 = 111;
/// The VP8 payload type when a client does not choose one.
pub const DEFAULT_VP8_PT: u8 = 96;
/// RFC 4733 `telephone-event/8000` (DTMF) on the audio track's SSRC: a QUIC participant's
/// tones and a server leg's tones use this payload type.
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// The mid of the audio receive slot (the mix).
pub const AUDIO_MID: &str = "quic-audio";
/// The mid of the screen receive slot.
pub const SCREEN_MID: &str = "quic-screen";
/// Camera receive slots are `quic-video-0`, `quic-video-1`, ...: this prefix and the index.
pub const VIDEO_MID_PREFIX: &str = "quic-video-";

/// The mid of camera receive slot `index`.
pub fn video_mid(index: usize) -> String {
    format!("{VIDEO_MID_PREFIX}{index}")
}

/// The TLS exporter label (RFC 5705 / RFC 8446 §7.5) of the SRTP media carrier's keys.
pub const SRTP_EXPORTER_LABEL: &[u8] = b"EXPORTER-palaver-srtp";
/// Bytes exported with [`SRTP_EXPORTER_LABEL`] (empty context): two AEAD_AES_128_GCM master
/// keys and two master salts, laid out as RFC 5764 §4.2 does for DTLS-SRTP.
pub const SRTP_KEYING_BYTES: usize = 2 * (16 + 12);

/// The SRTP master keys of one connection (profile AEAD_AES_128_GCM), split from the exported
/// keying material: `client_key | server_key | client_salt | server_salt`. The client protects
/// with the client key and salt, the server with the server's.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKeying {
    pub client_key: [u8; 16],
    pub server_key: [u8; 16],
    pub client_salt: [u8; 12],
    pub server_salt: [u8; 12],
}

impl SrtpKeying {
    pub fn from_exported(material: &[u8; SRTP_KEYING_BYTES]) -> Self {
        let mut k = Self { client_key: [0; 16], server_key: [0; 16], client_salt: [0; 12], server_salt: [0; 12] };
        k.client_key.copy_from_slice(&material[..16]);
        k.server_key.copy_from_slice(&material[16..32]);
        k.client_salt.copy_from_slice(&material[32..44]);
        k.server_salt.copy_from_slice(&material[44..56]);
        k
    }
}

impl std::fmt::Debug for SrtpKeying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SrtpKeying(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ConnectionClose;

    #[test]
    fn close_codes_are_distinct_and_the_alpn_is_palaver_1() {
        let codes = [CLOSE_NORMAL, CLOSE_PROTOCOL, CLOSE_AUTH_FAILED, CLOSE_SHUTDOWN];
        assert!(codes.iter().all(|c| *c != ConnectionClose::AccessRevoked.quic_code()));
        assert_eq!(codes, [0, 1, 2, 3]);
        assert_eq!(ALPN, b"palaver/1");
        assert_eq!(video_mid(1), "quic-video-1");
    }

    #[test]
    fn exported_keying_splits_like_dtls_srtp() {
        let material: [u8; SRTP_KEYING_BYTES] = std::array::from_fn(|i| i as u8);
        let k = SrtpKeying::from_exported(&material);
        assert_eq!((k.client_key[0], k.server_key[0], k.client_salt[0], k.server_salt[11]), (0, 16, 32, 55));
        assert_eq!(format!("{k:?}"), "SrtpKeying(..)", "keys never reach a log");
    }
}
