//! The RTP fixed header as a parsed, `Copy` set of offsets and values over a borrowed buffer,
//! plus in-place setters for the fields a forwarder rewrites (SSRC, sequence number,
//! timestamp, payload type, marker).

use super::{RtpError, read_u16, read_u32, write_u16, write_u32};

/// Fixed RTP header length (without CSRCs and extension).
pub const FIXED_HEADER_LEN: usize = 12;

/// RFC 5761 demultiplexing: first byte 128..=191 means RTP or RTCP.
pub fn is_rtp_or_rtcp(buf: &[u8]) -> bool {
    buf.len() >= FIXED_HEADER_LEN && (128..=191).contains(&buf[0])
}

/// RFC 5761: RTCP packet types 192..=223 share the second byte with RTP's M+PT.
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 8 && (192..=223).contains(&buf[1])
}

/// Length of the RTP header (fixed part, CSRCs and extension) without validating padding or
/// payload, so it also works on SRTP ciphertext whose tail is encrypted or an auth tag.
pub fn header_len(buf: &[u8]) -> Result<usize, RtpError> {
    if buf.len() < FIXED_HEADER_LEN {
        return Err(RtpError::Truncated);
    }
    if buf[0] >> 6 != 2 {
        return Err(RtpError::BadVersion);
    }
    let mut offset = FIXED_HEADER_LEN + 4 * (buf[0] & 0x0F) as usize;
    if buf[0] & 0x10 != 0 {
        if buf.len() < offset + 4 {
            return Err(RtpError::Truncated);
        }
        offset += 4 + 4 * read_u16(buf, offset + 2) as usize;
    }
    if buf.len() < offset { Err(RtpError::Truncated) } else { Ok(offset) }
}

/// A parsed RTP header. Offsets refer to the buffer it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrc_count: u8,
    /// Extension profile (0xBEDE one-byte, 0x100x two-byte) and the byte range of its body.
    pub extension: Option<ExtensionBlock>,
    /// Offset of the payload (header length including CSRCs and extension).
    pub payload_offset: usize,
    /// Payload length, padding excluded.
    pub payload_len: usize,
    /// Number of padding bytes at the end (0 if the P bit is clear).
    pub padding_len: usize,
}

/// Where the header extension lives: `profile` and its body `start..start+len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionBlock {
    pub profile: u16,
    pub start: usize,
    pub len: usize,
}

impl RtpHeader {
    /// Parses and validates an RTP header; never panics on any input.
    pub fn parse(buf: &[u8]) -> Result<Self, RtpError> {
        if buf.len() < FIXED_HEADER_LEN {
            return Err(RtpError::Truncated);
        }
        if buf[0] >> 6 != 2 {
            return Err(RtpError::BadVersion);
        }
        let has_padding = buf[0] & 0x20 != 0;
        let has_extension = buf[0] & 0x10 != 0;
        let csrc_count = buf[0] & 0x0F;
        let mut offset = FIXED_HEADER_LEN + 4 * csrc_count as usize;
        if buf.len() < offset {
            return Err(RtpError::Truncated);
        }
        let extension = if has_extension {
            if buf.len() < offset + 4 {
                return Err(RtpError::Truncated);
            }
            let profile = read_u16(buf, offset);
            let len = 4 * read_u16(buf, offset + 2) as usize;
            let start = offset + 4;
            if buf.len() < start + len {
                return Err(RtpError::Truncated);
            }
            offset = start + len;
            Some(ExtensionBlock { profile, start, len })
        } else {
            None
        };
        let padding_len = if has_padding {
            let pad = *buf.last().ok_or(RtpError::Truncated)? as usize;
            if pad == 0 || offset + pad > buf.len() {
                return Err(RtpError::BadPadding);
            }
            pad
        } else {
            0
        };
        Ok(Self {
            marker: buf[1] & 0x80 != 0,
            payload_type: buf[1] & 0x7F,
            sequence: read_u16(buf, 2),
            timestamp: read_u32(buf, 4),
            ssrc: read_u32(buf, 8),
            csrc_count,
            extension,
            payload_offset: offset,
            payload_len: buf.len() - offset - padding_len,
            padding_len,
        })
    }

    /// The payload bytes (padding excluded) of the buffer this header was parsed from.
    pub fn payload<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.payload_offset..self.payload_offset + self.payload_len]
    }

    /// The CSRC list of the buffer this header was parsed from.
    pub fn csrc(&self, buf: &[u8], index: usize) -> Option<u32> {
        (index < self.csrc_count as usize).then(|| read_u32(buf, FIXED_HEADER_LEN + 4 * index))
    }
}

/// In-place field setters. The buffer must hold at least a fixed header (checked by `parse`).
pub fn set_sequence(buf: &mut [u8], sequence: u16) {
    write_u16(buf, 2, sequence);
}

pub fn set_timestamp(buf: &mut [u8], timestamp: u32) {
    write_u32(buf, 4, timestamp);
}

pub fn set_ssrc(buf: &mut [u8], ssrc: u32) {
    write_u32(buf, 8, ssrc);
}

pub fn set_payload_type(buf: &mut [u8], payload_type: u8) {
    buf[1] = (buf[1] & 0x80) | (payload_type & 0x7F);
}

pub fn set_marker(buf: &mut [u8], marker: bool) {
    buf[1] = (buf[1] & 0x7F) | if marker { 0x80 } else { 0 };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut p = vec![0x90, 0xE0 | 0x6F, 0x12, 0x34, 0, 0, 0x10, 0, 0xCA, 0xFE, 0xBA, 0xBE];
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0x7F, 0, 0]); // one-byte ext, id 1 len 1
        p.extend_from_slice(b"payload");
        p
    }

    #[test]
    fn parses_fixed_header_and_extension() {
        let p = sample();
        let h = RtpHeader::parse(&p).unwrap();
        assert!(h.marker);
        assert_eq!(h.payload_type, 0x6F);
        assert_eq!(h.sequence, 0x1234);
        assert_eq!(h.timestamp, 0x1000);
        assert_eq!(h.ssrc, 0xCAFE_BABE);
        assert_eq!(h.extension, Some(ExtensionBlock { profile: 0xBEDE, start: 16, len: 4 }));
        assert_eq!(h.payload(&p), b"payload");
    }

    #[test]
    fn rewrites_in_place() {
        let mut p = sample();
        set_sequence(&mut p, 7);
        set_timestamp(&mut p, 9);
        set_ssrc(&mut p, 11);
        set_payload_type(&mut p, 96);
        set_marker(&mut p, false);
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!((h.sequence, h.timestamp, h.ssrc, h.payload_type, h.marker), (7, 9, 11, 96, false));
        assert_eq!(h.payload(&p), b"payload");
    }

    #[test]
    fn rejects_truncation_and_bad_padding() {
        let p = sample();
        for cut in 0..20 {
            assert!(RtpHeader::parse(&p[..cut]).is_err(), "cut at {cut}");
        }
        let mut padded = sample();
        padded[0] |= 0x20;
        *padded.last_mut().unwrap() = 200;
        assert_eq!(RtpHeader::parse(&padded), Err(RtpError::BadPadding));
        padded[0] = 0x50;
        assert_eq!(RtpHeader::parse(&padded), Err(RtpError::BadVersion));
    }
}
