//! RTCP compound packets (RFC 3550, 4585, 5104, REMB draft, transport-cc draft): a validating
//! iterator over the packets of a compound datagram, borrowed views of each kind, and writers
//! for the feedback the server originates (PLI, FIR, NACK; reports and REMB in `rtcp_write.rs`).

use super::{RtpError, read_u16, read_u32, write_u16, write_u32};

mod report_writers;
pub use report_writers::*;

pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;
pub const PT_RTPFB: u8 = 205;
pub const PT_PSFB: u8 = 206;

/// One report block of an SR/RR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    pub cumulative_lost: u32,
    pub highest_sequence: u32,
    pub jitter: u32,
    pub last_sr: u32,
    pub delay_since_last_sr: u32,
}

/// A view of 24-byte report blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlocks<'a>(&'a [u8]);

impl<'a> ReportBlocks<'a> {
    pub fn len(&self) -> usize {
        self.0.len() / 24
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        self.0.chunks_exact(24).map(|b| ReportBlock {
            ssrc: read_u32(b, 0),
            fraction_lost: b[4],
            cumulative_lost: u32::from_be_bytes([0, b[5], b[6], b[7]]),
            highest_sequence: read_u32(b, 8),
            jitter: read_u32(b, 12),
            last_sr: read_u32(b, 16),
            delay_since_last_sr: read_u32(b, 20),
        })
    }
}

/// A list of big-endian SSRCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SsrcList<'a>(&'a [u8]);

impl<'a> SsrcList<'a> {
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        self.0.chunks_exact(4).map(|b| read_u32(b, 0))
    }
}

/// Generic NACK items (PID, BLP); [`Nack::lost`] expands them into sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nack<'a> {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
    items: &'a [u8],
}

impl<'a> Nack<'a> {
    pub fn lost(&self) -> impl Iterator<Item = u16> + 'a {
        self.items.chunks_exact(4).flat_map(|item| {
            let pid = read_u16(item, 0);
            let blp = read_u16(item, 2);
            std::iter::once(pid)
                .chain((0..16).filter(move |bit| blp & (1 << bit) != 0).map(move |bit| pid.wrapping_add(bit + 1)))
        })
    }
}

/// Transport-wide congestion control feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportCc<'a> {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
    pub base_sequence: u16,
    pub status_count: u16,
    /// Reference time in multiples of 64 ms (signed 24 bit).
    pub reference_time: i32,
    pub feedback_count: u8,
    body: &'a [u8],
}

impl TransportCc<'_> {
    /// Calls `f(sequence, receive_delta)` for each reported packet; the delta is in 250 µs units
    /// relative to the previous received packet (the first relative to the reference time), or
    /// `None` if the packet was not received.
    pub fn for_each(&self, mut f: impl FnMut(u16, Option<i32>)) {
        // Validated at parse time, so walking cannot fail here.
        let _ = walk_twcc(self.body, self.base_sequence, self.status_count, &mut f);
    }
}

/// Walks chunks then deltas; returns the number of body bytes used.
fn walk_twcc(body: &[u8], base: u16, count: u16, f: &mut impl FnMut(u16, Option<i32>)) -> Result<usize, RtpError> {
    // First pass: find where the deltas start (chunks cover `count` statuses).
    let mut covered = 0usize;
    let mut chunk_bytes = 0usize;
    while covered < count as usize {
        if chunk_bytes + 2 > body.len() {
            return Err(RtpError::Truncated);
        }
        let chunk = read_u16(body, chunk_bytes);
        covered += if chunk & 0x8000 == 0 {
            (chunk & 0x1FFF) as usize
        } else if chunk & 0x4000 == 0 {
            14
        } else {
            7
        };
        chunk_bytes += 2;
    }
    let mut delta_pos = chunk_bytes;
    let mut seq = base;
    let mut remaining = count as usize;
    let mut emit = |status: u16, delta_pos: &mut usize| -> Result<(), RtpError> {
        let delta = match status {
            0 => None,
            1 => {
                let d = *body.get(*delta_pos).ok_or(RtpError::Truncated)? as i32;
                *delta_pos += 1;
                Some(d)
            }
            2 => {
                if *delta_pos + 2 > body.len() {
                    return Err(RtpError::Truncated);
                }
                let d = read_u16(body, *delta_pos) as i16 as i32;
                *delta_pos += 2;
                Some(d)
            }
            _ => return Err(RtpError::BadRtcp),
        };
        f(seq, delta);
        seq = seq.wrapping_add(1);
        Ok(())
    };
    let mut at = 0;
    while remaining > 0 {
        let chunk = read_u16(body, at);
        at += 2;
        if chunk & 0x8000 == 0 {
            let status = (chunk >> 13) & 0x3;
            let run = ((chunk & 0x1FFF) as usize).min(remaining);
            for _ in 0..run {
                emit(status, &mut delta_pos)?;
            }
            remaining -= run;
        } else if chunk & 0x4000 == 0 {
            for i in 0..14.min(remaining) {
                emit((chunk >> (13 - i)) & 0x1, &mut delta_pos)?;
            }
            remaining -= 14.min(remaining);
        } else {
            for i in 0..7.min(remaining) {
                emit((chunk >> (12 - 2 * i)) & 0x3, &mut delta_pos)?;
            }
            remaining -= 7.min(remaining);
        }
    }
    Ok(delta_pos)
}

/// One parsed packet of a compound RTCP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    SenderReport {
        ssrc: u32,
        ntp_time: u64,
        rtp_time: u32,
        packet_count: u32,
        octet_count: u32,
        reports: ReportBlocks<'a>,
    },
    ReceiverReport {
        ssrc: u32,
        reports: ReportBlocks<'a>,
    },
    /// Source description chunks, validated for structure but not interpreted.
    SourceDescription {
        chunks: &'a [u8],
    },
    Bye {
        ssrcs: SsrcList<'a>,
    },
    Pli {
        sender_ssrc: u32,
        media_ssrc: u32,
    },
    /// Full intra request: each entry is (ssrc, command sequence number).
    Fir {
        sender_ssrc: u32,
        entries: &'a [u8],
    },
    Nack(Nack<'a>),
    Remb {
        sender_ssrc: u32,
        bitrate_bps: u64,
        ssrcs: SsrcList<'a>,
    },
    TransportCc(TransportCc<'a>),
    /// Any other well-formed packet (e.g. XR, APP, unknown feedback) left uninterpreted.
    Other {
        packet_type: u8,
        format: u8,
    },
}

impl RtcpPacket<'_> {
    /// FIR entries as (ssrc, sequence number).
    pub fn fir_entries(entries: &[u8]) -> impl Iterator<Item = (u32, u8)> + '_ {
        entries.chunks_exact(8).map(|e| (read_u32(e, 0), e[4]))
    }
}

/// Iterates the packets of a compound RTCP datagram. After the first error it stops.
pub struct Compound<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Compound<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0, failed: false }
    }

    /// Validates the whole datagram, returning the first error.
    pub fn validate(buf: &[u8]) -> Result<usize, RtpError> {
        let mut n = 0;
        for p in Compound::new(buf) {
            p?;
            n += 1;
        }
        if n == 0 { Err(RtpError::Truncated) } else { Ok(n) }
    }
}

impl<'a> Iterator for Compound<'a> {
    type Item = Result<RtcpPacket<'a>, RtpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let result = parse_one(&self.buf[self.pos..]);
        match result {
            Ok((packet, used)) => {
                self.pos += used;
                Some(Ok(packet))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

fn parse_one(buf: &[u8]) -> Result<(RtcpPacket<'_>, usize), RtpError> {
    if buf.len() < 4 {
        return Err(RtpError::Truncated);
    }
    if buf[0] >> 6 != 2 {
        return Err(RtpError::BadVersion);
    }
    let count = buf[0] & 0x1F;
    let packet_type = buf[1];
    let total = 4 * (read_u16(buf, 2) as usize + 1);
    if buf.len() < total {
        return Err(RtpError::Truncated);
    }
    let mut end = total;
    if buf[0] & 0x20 != 0 {
        let pad = buf[total - 1] as usize;
        if pad == 0 || pad > total - 4 {
            return Err(RtpError::BadPadding);
        }
        end -= pad;
    }
    let body = &buf[4..end];
    let need = |n: usize| if body.len() < n { Err(RtpError::BadLength) } else { Ok(()) };
    let packet = match packet_type {
        PT_SR => {
            need(24 + 24 * count as usize)?;
            RtcpPacket::SenderReport {
                ssrc: read_u32(body, 0),
                ntp_time: (read_u32(body, 4) as u64) << 32 | read_u32(body, 8) as u64,
                rtp_time: read_u32(body, 12),
                packet_count: read_u32(body, 16),
                octet_count: read_u32(body, 20),
                reports: ReportBlocks(&body[24..24 + 24 * count as usize]),
            }
        }
        PT_RR => {
            need(4 + 24 * count as usize)?;
            RtcpPacket::ReceiverReport {
                ssrc: read_u32(body, 0),
                reports: ReportBlocks(&body[4..4 + 24 * count as usize]),
            }
        }
        PT_SDES => {
            validate_sdes(body, count)?;
            RtcpPacket::SourceDescription { chunks: body }
        }
        PT_BYE => {
            need(4 * count as usize)?;
            RtcpPacket::Bye { ssrcs: SsrcList(&body[..4 * count as usize]) }
        }
        PT_RTPFB | PT_PSFB => {
            need(8)?;
            let sender_ssrc = read_u32(body, 0);
            let media_ssrc = read_u32(body, 4);
            let fci = &body[8..];
            match (packet_type, count) {
                (PT_RTPFB, 1) => {
                    if fci.is_empty() || !fci.len().is_multiple_of(4) {
                        return Err(RtpError::BadLength);
                    }
                    RtcpPacket::Nack(Nack { sender_ssrc, media_ssrc, items: fci })
                }
                (PT_RTPFB, 15) => {
                    if fci.len() < 8 {
                        return Err(RtpError::BadLength);
                    }
                    let reference = u32::from_be_bytes([0, fci[4], fci[5], fci[6]]);
                    let twcc = TransportCc {
                        sender_ssrc,
                        media_ssrc,
                        base_sequence: read_u16(fci, 0),
                        status_count: read_u16(fci, 2),
                        reference_time: ((reference << 8) as i32) >> 8,
                        feedback_count: fci[7],
                        body: &fci[8..],
                    };
                    walk_twcc(twcc.body, twcc.base_sequence, twcc.status_count, &mut |_, _| {})?;
                    RtcpPacket::TransportCc(twcc)
                }
                (PT_PSFB, 1) => RtcpPacket::Pli { sender_ssrc, media_ssrc },
                (PT_PSFB, 4) => {
                    if fci.is_empty() || !fci.len().is_multiple_of(8) {
                        return Err(RtpError::BadLength);
                    }
                    RtcpPacket::Fir { sender_ssrc, entries: fci }
                }
                (PT_PSFB, 15) if fci.len() >= 8 && &fci[..4] == b"REMB" => {
                    let n = fci[4] as usize;
                    let exponent = fci[5] >> 2;
                    let mantissa = u32::from_be_bytes([0, fci[5] & 0x03, fci[6], fci[7]]) as u64;
                    if fci.len() < 8 + 4 * n {
                        return Err(RtpError::BadLength);
                    }
                    // 18-bit mantissa, 6-bit exponent: up to 2^81, saturated rather than wrapped.
                    let bitrate_bps = u64::try_from(u128::from(mantissa) << exponent).unwrap_or(u64::MAX);
                    RtcpPacket::Remb { sender_ssrc, bitrate_bps, ssrcs: SsrcList(&fci[8..8 + 4 * n]) }
                }
                _ => RtcpPacket::Other { packet_type, format: count },
            }
        }
        192..=223 => RtcpPacket::Other { packet_type, format: count },
        _ => return Err(RtpError::BadRtcp),
    };
    Ok((packet, total))
}

fn validate_sdes(body: &[u8], count: u8) -> Result<(), RtpError> {
    let mut pos = 0;
    for _ in 0..count {
        if pos + 4 > body.len() {
            return Err(RtpError::BadLength);
        }
        pos += 4;
        loop {
            let kind = *body.get(pos).ok_or(RtpError::BadLength)?;
            if kind == 0 {
                pos += 1;
                pos = pos.div_ceil(4) * 4; // chunks end on a 32-bit boundary
                break;
            }
            let len = *body.get(pos + 1).ok_or(RtpError::BadLength)? as usize;
            pos += 2 + len;
            if pos > body.len() {
                return Err(RtpError::BadLength);
            }
        }
    }
    Ok(())
}

fn write_feedback_header(buf: &mut [u8], format: u8, packet_type: u8, words: u16, sender: u32, media: u32) {
    buf[0] = 0x80 | format;
    buf[1] = packet_type;
    write_u16(buf, 2, words);
    write_u32(buf, 4, sender);
    write_u32(buf, 8, media);
}

/// Writes a Picture Loss Indication; returns its length (12).
pub fn write_pli(buf: &mut [u8], sender_ssrc: u32, media_ssrc: u32) -> Result<usize, RtpError> {
    if buf.len() < 12 {
        return Err(RtpError::BufferTooSmall);
    }
    write_feedback_header(buf, 1, PT_PSFB, 2, sender_ssrc, media_ssrc);
    Ok(12)
}

/// Writes a Full Intra Request for one SSRC; returns its length (20).
pub fn write_fir(buf: &mut [u8], sender_ssrc: u32, media_ssrc: u32, sequence: u8) -> Result<usize, RtpError> {
    if buf.len() < 20 {
        return Err(RtpError::BufferTooSmall);
    }
    write_feedback_header(buf, 4, PT_PSFB, 4, sender_ssrc, 0);
    write_u32(buf, 12, media_ssrc);
    buf[16..20].copy_from_slice(&[sequence, 0, 0, 0]);
    Ok(20)
}

/// Writes a generic NACK for the given lost sequence numbers (grouped into PID/BLP items).
pub fn write_nack(buf: &mut [u8], sender_ssrc: u32, media_ssrc: u32, lost: &[u16]) -> Result<usize, RtpError> {
    let mut at = 12;
    let mut i = 0;
    while i < lost.len() {
        let pid = lost[i];
        let mut blp = 0u16;
        i += 1;
        while i < lost.len() {
            let d = lost[i].wrapping_sub(pid);
            if d == 0 || d > 16 {
                break;
            }
            blp |= 1 << (d - 1);
            i += 1;
        }
        if buf.len() < at + 4 {
            return Err(RtpError::BufferTooSmall);
        }
        write_u16(buf, at, pid);
        write_u16(buf, at + 2, blp);
        at += 4;
    }
    if at == 12 {
        return Err(RtpError::BadRtcp);
    }
    write_feedback_header(buf, 1, PT_RTPFB, (at / 4 - 1) as u16, sender_ssrc, media_ssrc);
    Ok(at)
}

#[cfg(test)]
mod tests;
