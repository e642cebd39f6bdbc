//! RTP header extensions (RFC 8285): iteration over the one-byte (0xBEDE) and two-byte
//! (0x100x) forms, the values the SFU reads (RFC 6464 audio level, transport-wide sequence
//! number, abs-send-time, mid, rid, repaired-rid) and in-place rewrites (ids, transport-cc).

use super::packet::{ExtensionBlock, RtpHeader};
use super::{RtpError, read_u16, write_u16};

/// Negotiated extension ids (1..=255; 0 = not negotiated).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtensionMap {
    pub audio_level: u8,
    pub transport_cc: u8,
    pub abs_send_time: u8,
    pub mid: u8,
    pub rid: u8,
    pub repaired_rid: u8,
}

/// A short identifier value (mid / rid), stored inline so parsing never allocates.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ShortId {
    len: u8,
    bytes: [u8; 16],
}

impl ShortId {
    /// Builds from bytes; values longer than 16 bytes are rejected.
    pub fn new(value: &[u8]) -> Option<Self> {
        if value.len() > 16 {
            return None;
        }
        let mut bytes = [0; 16];
        bytes[..value.len()].copy_from_slice(value);
        Some(Self { len: value.len() as u8, bytes })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl std::fmt::Debug for ShortId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// The extension values of one packet that the SFU cares about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extensions {
    /// RFC 6464: (voice activity flag, level in -dBov, 0 = loudest, 127 = silence).
    pub audio_level: Option<(bool, u8)>,
    /// Transport-wide sequence number and the byte offset of its value in the packet.
    pub transport_cc: Option<(u16, usize)>,
    pub abs_send_time: Option<u32>,
    pub mid: Option<ShortId>,
    pub rid: Option<ShortId>,
    pub repaired_rid: Option<ShortId>,
}

/// One extension element: id and the byte range of its value within the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element {
    pub id: u8,
    /// Offset of the id byte in the packet (for in-place id rewrite).
    pub id_offset: usize,
    pub value_offset: usize,
    pub value_len: usize,
}

/// Iterates the elements of an extension block, validating as it goes.
pub struct ElementIter<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    two_byte: bool,
    failed: bool,
}

impl<'a> ElementIter<'a> {
    /// Only the one-byte and two-byte profiles carry elements; others yield nothing.
    pub fn new(buf: &'a [u8], block: ExtensionBlock) -> Self {
        let two_byte = block.profile & 0xFFF0 == 0x1000;
        let known = block.profile == 0xBEDE || two_byte;
        let end = if known { block.start + block.len } else { block.start };
        Self { buf, pos: block.start, end, two_byte, failed: false }
    }
}

impl Iterator for ElementIter<'_> {
    type Item = Result<Element, RtpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        while self.pos < self.end {
            let id_offset = self.pos;
            let first = self.buf[self.pos];
            if first == 0 {
                self.pos += 1; // padding
                continue;
            }
            let (id, value_offset, value_len) = if self.two_byte {
                if self.pos + 2 > self.end {
                    self.failed = true;
                    return Some(Err(RtpError::BadExtension));
                }
                (first, self.pos + 2, self.buf[self.pos + 1] as usize)
            } else {
                let id = first >> 4;
                if id == 15 {
                    self.pos = self.end; // reserved: stop processing (RFC 8285 4.2)
                    return None;
                }
                (id, self.pos + 1, (first & 0x0F) as usize + 1)
            };
            if value_offset + value_len > self.end {
                self.failed = true;
                return Some(Err(RtpError::BadExtension));
            }
            self.pos = value_offset + value_len;
            return Some(Ok(Element { id, id_offset, value_offset, value_len }));
        }
        None
    }
}

impl Extensions {
    /// Reads the extensions named in `map` from a packet. Malformed blocks are an error.
    pub fn parse(buf: &[u8], header: &RtpHeader, map: &ExtensionMap) -> Result<Self, RtpError> {
        let mut out = Self::default();
        let Some(block) = header.extension else { return Ok(out) };
        for element in ElementIter::new(buf, block) {
            let e = element?;
            let value = &buf[e.value_offset..e.value_offset + e.value_len];
            if e.id == map.audio_level && !value.is_empty() {
                out.audio_level = Some((value[0] & 0x80 != 0, value[0] & 0x7F));
            } else if e.id == map.transport_cc && value.len() >= 2 {
                out.transport_cc = Some((read_u16(value, 0), e.value_offset));
            } else if e.id == map.abs_send_time && value.len() >= 3 {
                out.abs_send_time = Some(u32::from_be_bytes([0, value[0], value[1], value[2]]));
            } else if e.id == map.mid {
                out.mid = ShortId::new(value);
            } else if e.id == map.rid {
                out.rid = ShortId::new(value);
            } else if e.id == map.repaired_rid {
                out.repaired_rid = ShortId::new(value);
            }
        }
        Ok(out)
    }
}

/// Rewrites extension ids in place through `remap[id] -> new id` (0 keeps the id). One-byte
/// ids must stay in 1..=14 for the one-byte form; such remaps are rejected before anything is
/// written.
pub fn remap_ids(buf: &mut [u8], header: &RtpHeader, remap: &[u8; 256]) -> Result<(), RtpError> {
    let Some(block) = header.extension else { return Ok(()) };
    let two_byte = block.profile & 0xFFF0 == 0x1000;
    if !two_byte && block.profile != 0xBEDE {
        return Ok(()); // another profile's block is opaque: nothing in it is an RFC 8285 id
    }
    // Validate the whole block first so a failure leaves the packet untouched.
    for element in ElementIter::new(buf, block) {
        let e = element?;
        let new = remap[e.id as usize];
        if !two_byte && new > 14 {
            return Err(RtpError::BadExtension);
        }
    }
    let mut pos = block.start;
    let end = block.start + block.len;
    while pos < end {
        let first = buf[pos];
        if first == 0 {
            pos += 1;
            continue;
        }
        if two_byte {
            let len = buf[pos + 1] as usize;
            if remap[first as usize] != 0 {
                buf[pos] = remap[first as usize];
            }
            pos += 2 + len;
        } else {
            let id = first >> 4;
            if id == 15 {
                break;
            }
            if remap[id as usize] != 0 {
                buf[pos] = (remap[id as usize] << 4) | (first & 0x0F);
            }
            pos += 1 + (first & 0x0F) as usize + 1;
        }
    }
    Ok(())
}

/// Overwrites a transport-wide sequence number whose value offset came from [`Extensions`].
pub fn set_transport_cc(buf: &mut [u8], value_offset: usize, sequence: u16) {
    write_u16(buf, value_offset, sequence);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet_with(profile: u16, body: &[u8]) -> Vec<u8> {
        let mut p = vec![0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2];
        let words = body.len().div_ceil(4);
        p.extend_from_slice(&profile.to_be_bytes());
        p.extend_from_slice(&(words as u16).to_be_bytes());
        p.extend_from_slice(body);
        p.resize(12 + 4 + words * 4, 0);
        p.extend_from_slice(&[1, 2, 3]);
        p
    }

    const MAP: ExtensionMap =
        ExtensionMap { audio_level: 1, transport_cc: 3, abs_send_time: 2, mid: 4, rid: 10, repaired_rid: 11 };

    #[test]
    fn one_byte_form_values() {
        let body = [0x10, 0x85, 0x22, 1, 2, 3, 0x31, 0x01, 0x02, 0x40, b'0', 0xA0, b'h'];
        let p = packet_with(0xBEDE, &body);
        let h = RtpHeader::parse(&p).unwrap();
        let e = Extensions::parse(&p, &h, &MAP).unwrap();
        assert_eq!(e.audio_level, Some((true, 5)));
        assert_eq!(e.abs_send_time, Some(0x010203));
        assert_eq!(e.transport_cc.map(|t| t.0), Some(0x0102));
        assert_eq!(e.mid.unwrap().as_bytes(), b"0");
        assert_eq!(e.rid.unwrap().as_bytes(), b"h");
        assert_eq!(e.repaired_rid, None);
    }

    #[test]
    fn two_byte_form_values() {
        let body = [11, 1, b'q', 0, 1, 1, 0x7F, 10, 0, 4, 2, b'm', b'1'];
        let p = packet_with(0x1000, &body);
        let h = RtpHeader::parse(&p).unwrap();
        let e = Extensions::parse(&p, &h, &MAP).unwrap();
        assert_eq!(e.repaired_rid.unwrap().as_bytes(), b"q");
        assert_eq!(e.audio_level, Some((false, 0x7F)));
        assert_eq!(e.rid.unwrap().as_bytes(), b"");
        assert_eq!(e.mid.unwrap().as_bytes(), b"m1");
    }

    #[test]
    fn malformed_block_is_an_error() {
        let p = packet_with(0xBEDE, &[0x1F, 0, 0, 0]); // id 1 claims 16 bytes
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(Extensions::parse(&p, &h, &MAP), Err(RtpError::BadExtension));
    }

    /// Found writing the `rtp_extensions` fuzz target (blocks of other profiles are never
    /// rewritten): `remap_ids` walked any profile's block as one-byte elements and rewrote
    /// "ids" inside opaque data.
    #[test]
    fn remap_leaves_other_profiles_alone() {
        let p = packet_with(0xABAC, &[0x10, 0x85, 0x31, 0x01, 0x02]);
        let h = RtpHeader::parse(&p).unwrap();
        let mut remap = [0u8; 256];
        remap[1] = 5;
        remap[3] = 7;
        let mut q = p.clone();
        remap_ids(&mut q, &h, &remap).unwrap();
        assert_eq!(q, p);
    }

    #[test]
    fn remaps_ids_and_transport_cc_in_place() {
        let body = [0x10, 0x85, 0x31, 0x01, 0x02];
        let mut p = packet_with(0xBEDE, &body);
        let h = RtpHeader::parse(&p).unwrap();
        let mut remap = [0u8; 256];
        remap[1] = 5;
        remap[3] = 7;
        remap_ids(&mut p, &h, &remap).unwrap();
        let moved = ExtensionMap { audio_level: 5, transport_cc: 7, ..Default::default() };
        let e = Extensions::parse(&p, &h, &moved).unwrap();
        assert_eq!(e.audio_level, Some((true, 5)));
        let (seq, at) = e.transport_cc.unwrap();
        assert_eq!(seq, 0x0102);
        set_transport_cc(&mut p, at, 999);
        assert_eq!(Extensions::parse(&p, &h, &moved).unwrap().transport_cc.unwrap().0, 999);
        remap[5] = 15;
        let before = p.clone();
        assert!(remap_ids(&mut p, &h, &remap).is_err());
        assert_eq!(p, before);
    }
}
