//! Writers for the RTCP reports the server originates (RFC 3550 SR, RR and SDES CNAME, and the
//! REMB draft's receiver estimate), plus the NTP time format they carry. Every writer fills a
//! caller-owned buffer and returns the bytes written, so composing a compound packet is a
//! sequence of calls at growing offsets and never allocates.

use super::{PT_PSFB, PT_RR, PT_SDES, PT_SR, ReportBlock};
use crate::rtp::{RtpError, write_u16, write_u32};

/// Seconds from the NTP era (1900-01-01) to the Unix epoch (1970-01-01).
pub const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;
/// Most report blocks one SR/RR carries (5-bit count).
pub const MAX_REPORT_BLOCKS: usize = 31;

/// A duration in NTP's 32.32 fixed-point seconds (wrapping after 2^32 s).
pub fn ntp_duration(duration: std::time::Duration) -> u64 {
    let fraction = (u64::from(duration.subsec_nanos()) << 32) / 1_000_000_000;
    (duration.as_secs() << 32) | fraction
}

/// A 64-bit NTP timestamp from a duration since the Unix epoch (32.32 fixed point).
pub fn ntp_from_unix(since_unix: std::time::Duration) -> u64 {
    ntp_duration(since_unix).wrapping_add(NTP_UNIX_OFFSET_SECS << 32)
}

/// The middle 32 bits of an NTP timestamp (16.16 fixed point), as in LSR and DLSR fields.
pub fn ntp_compact(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A 16.16 fixed-point duration (DLSR units: 1/65536 s) from nanoseconds, saturating.
pub fn compact_from_nanos(nanos: u64) -> u32 {
    ((u128::from(nanos) << 16) / 1_000_000_000).min(u128::from(u32::MAX)) as u32
}

/// Nanoseconds of a 16.16 fixed-point duration.
pub fn nanos_from_compact(compact: u32) -> u64 {
    (u64::from(compact) * 1_000_000_000) >> 16
}

impl ReportBlock {
    /// Writes the 24-byte wire form. The cumulative lost count is clamped to its 24 bits.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, RtpError> {
        let out = buf.get_mut(..24).ok_or(RtpError::BufferTooSmall)?;
        write_u32(out, 0, self.ssrc);
        write_u32(out, 4, self.cumulative_lost & 0x00FF_FFFF);
        out[4] = self.fraction_lost;
        write_u32(out, 8, self.highest_sequence);
        write_u32(out, 12, self.jitter);
        write_u32(out, 16, self.last_sr);
        write_u32(out, 20, self.delay_since_last_sr);
        Ok(24)
    }
}

/// The sender half of an SR: what was sent on `ssrc` up to the instant `ntp_time` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    pub ssrc: u32,
    pub ntp_time: u64,
    /// The RTP timestamp that corresponds to `ntp_time` on this stream's clock.
    pub rtp_time: u32,
    pub packet_count: u32,
    /// Payload octets sent (headers and padding excluded).
    pub octet_count: u32,
}

fn write_header(buf: &mut [u8], count: usize, packet_type: u8, len: usize) {
    buf[0] = 0x80 | count as u8;
    buf[1] = packet_type;
    write_u16(buf, 2, (len / 4 - 1) as u16);
}

fn write_blocks(buf: &mut [u8], at: usize, blocks: &[ReportBlock]) -> Result<usize, RtpError> {
    let mut at = at;
    for block in blocks {
        at += block.write(buf.get_mut(at..).ok_or(RtpError::BufferTooSmall)?)?;
    }
    Ok(at)
}

/// Writes a Sender Report with up to 31 report blocks; returns its length (28 + 24 per block).
pub fn write_sender_report(buf: &mut [u8], info: &SenderInfo, blocks: &[ReportBlock]) -> Result<usize, RtpError> {
    if blocks.len() > MAX_REPORT_BLOCKS {
        return Err(RtpError::BadRtcp);
    }
    let len = 28 + 24 * blocks.len();
    if buf.len() < len {
        return Err(RtpError::BufferTooSmall);
    }
    write_header(buf, blocks.len(), PT_SR, len);
    write_u32(buf, 4, info.ssrc);
    write_u32(buf, 8, (info.ntp_time >> 32) as u32);
    write_u32(buf, 12, info.ntp_time as u32);
    write_u32(buf, 16, info.rtp_time);
    write_u32(buf, 20, info.packet_count);
    write_u32(buf, 24, info.octet_count);
    write_blocks(buf, 28, blocks)
}

/// Writes a Receiver Report with up to 31 report blocks; returns its length (8 + 24 per block).
pub fn write_receiver_report(buf: &mut [u8], ssrc: u32, blocks: &[ReportBlock]) -> Result<usize, RtpError> {
    if blocks.len() > MAX_REPORT_BLOCKS {
        return Err(RtpError::BadRtcp);
    }
    let len = 8 + 24 * blocks.len();
    if buf.len() < len {
        return Err(RtpError::BufferTooSmall);
    }
    write_header(buf, blocks.len(), PT_RR, len);
    write_u32(buf, 4, ssrc);
    write_blocks(buf, 8, blocks)
}

/// Writes an SDES packet with one chunk carrying only a CNAME (1..=255 bytes); returns its
/// length (the chunk is zero-terminated and padded to a 32-bit boundary).
pub fn write_sdes_cname(buf: &mut [u8], ssrc: u32, cname: &[u8]) -> Result<usize, RtpError> {
    if cname.is_empty() || cname.len() > 255 {
        return Err(RtpError::BadRtcp);
    }
    // header + ssrc + (type, length, text) + at least one terminating zero, padded to 4
    let len = (4 + 4 + 2 + cname.len() + 1).div_ceil(4) * 4;
    let out = buf.get_mut(..len).ok_or(RtpError::BufferTooSmall)?;
    write_header(out, 1, PT_SDES, len);
    write_u32(out, 4, ssrc);
    out[8] = 1; // CNAME
    out[9] = cname.len() as u8;
    out[10..10 + cname.len()].copy_from_slice(cname);
    out[10 + cname.len()..].fill(0);
    Ok(len)
}

/// Writes a REMB (receiver estimated maximum bitrate) for `ssrcs` (at most 255); returns its
/// length (20 + 4 per SSRC). The bitrate is encoded as an 18-bit mantissa and a 6-bit exponent,
/// rounded down.
pub fn write_remb(buf: &mut [u8], sender_ssrc: u32, bitrate_bps: u64, ssrcs: &[u32]) -> Result<usize, RtpError> {
    if ssrcs.len() > 255 {
        return Err(RtpError::BadRtcp);
    }
    let len = 20 + 4 * ssrcs.len();
    let out = buf.get_mut(..len).ok_or(RtpError::BufferTooSmall)?;
    let mut exponent = 0u32;
    while exponent < 63 && (bitrate_bps >> exponent) > 0x3FFFF {
        exponent += 1;
    }
    let mantissa = (bitrate_bps >> exponent).min(0x3FFFF) as u32;
    write_header(out, 15, PT_PSFB, len);
    write_u32(out, 4, sender_ssrc);
    write_u32(out, 8, 0); // media source: unused for REMB
    out[12..16].copy_from_slice(b"REMB");
    write_u32(out, 16, (ssrcs.len() as u32) << 24 | exponent << 18 | mantissa);
    for (i, ssrc) in ssrcs.iter().enumerate() {
        write_u32(out, 20 + 4 * i, *ssrc);
    }
    Ok(len)
}
