//! Zero-copy RTP and RTCP: header views and in-place rewrites over byte slices, header
//! extensions (one- and two-byte forms), RTCP compound parsing and the few RTCP packets the
//! server writes itself (PLI, FIR), and cheap keyframe detection for the forwarded codecs.
//!
//! Nothing here allocates; every parser returns [`RtpError`] on truncated or garbage input.

pub mod codec;
pub mod extension;
pub mod packet;
pub mod rtcp;
pub mod telephone_event;

pub use codec::{Codec, is_keyframe};
pub use extension::{ExtensionMap, Extensions, ShortId};
pub use packet::{RtpHeader, is_rtcp, is_rtp_or_rtcp};

/// Why a packet could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("packet shorter than its header claims")]
    Truncated,
    #[error("RTP/RTCP version is not 2")]
    BadVersion,
    #[error("padding length is invalid")]
    BadPadding,
    #[error("header extension is malformed")]
    BadExtension,
    #[error("RTCP length field is inconsistent")]
    BadLength,
    #[error("RTCP packet type or format is not valid here")]
    BadRtcp,
    #[error("output buffer too small")]
    BufferTooSmall,
}

pub(crate) fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

pub(crate) fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

pub(crate) fn write_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn write_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
