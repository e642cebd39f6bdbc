//! Payload-type and header-extension id translation between a publisher and a subscriber that
//! numbered them differently in their SDP (e.g. a webrtc-rs client and Chromium, or Firefox).
//!
//! A subscriber's [`Numbering`] (its m-section's codec payload types and extension ids) is set
//! once per consumer; for the producer the consumer currently follows, the router derives a
//! [`Remap`]: a payload-type table and an extension-id table (an extension the subscriber did
//! not negotiate is stripped: its bytes become RFC 8285 padding). The tables are built on the
//! control path; the packet path only looks them up and rewrites bytes in place.

use crate::rtp::extension::ElementIter;
use crate::rtp::packet::ExtensionBlock;
use crate::rtp::{Codec, ExtensionMap, RtpHeader};

/// How a subscriber numbered codecs and header extensions in the m-section a consumer feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numbering {
    /// Payload type to codec, as negotiated with the subscriber.
    pub codecs: Vec<(u8, Codec)>,
    pub extensions: ExtensionMap,
}

/// Translation tables from one producer's numbering to one subscriber's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remap {
    /// Publisher payload type → subscriber payload type (identity where nothing changes).
    payload_types: [u8; 128],
    /// Publisher extension id → subscriber id; 0 strips the element (identity by default).
    extension_ids: [u8; 256],
}

fn ext_fields(map: &ExtensionMap) -> [u8; 6] {
    [map.audio_level, map.transport_cc, map.abs_send_time, map.mid, map.rid, map.repaired_rid]
}

impl Remap {
    /// The tables for `producer_codecs`/`producer_extensions` → `to`; `None` when every number
    /// already agrees (the common case: nothing to do per packet).
    pub fn between(
        producer_codecs: &[Option<Codec>; 128],
        producer_extensions: &ExtensionMap,
        to: &Numbering,
    ) -> Option<Self> {
        let mut payload_types: [u8; 128] = std::array::from_fn(|pt| pt as u8);
        for (pt, codec) in producer_codecs.iter().enumerate() {
            let Some(codec) = codec else { continue };
            if let Some(&(sub_pt, _)) = to.codecs.iter().find(|(_, c)| c == codec) {
                payload_types[pt] = sub_pt & 0x7F;
            }
        }
        let mut extension_ids: [u8; 256] = std::array::from_fn(|id| id as u8);
        for (from, into) in ext_fields(producer_extensions).into_iter().zip(ext_fields(&to.extensions)) {
            if from != 0 {
                extension_ids[from as usize] = into;
            }
        }
        let identity = payload_types.iter().enumerate().all(|(i, pt)| *pt as usize == i)
            && extension_ids.iter().enumerate().all(|(i, id)| *id as usize == i);
        (!identity).then_some(Self { payload_types, extension_ids })
    }

    pub fn payload_type(&self, publisher_pt: u8) -> u8 {
        self.payload_types[(publisher_pt & 0x7F) as usize]
    }

    /// Whether the subscriber keeps the extension the publisher numbered `id`.
    pub fn keeps_extension(&self, id: u8) -> bool {
        id != 0 && self.extension_ids[id as usize] != 0
    }

    pub fn extension_ids(&self) -> &[u8; 256] {
        &self.extension_ids
    }
}

/// Rewrites extension ids of a (copied) packet through `table` (`0` strips the element by
/// zeroing its bytes, which RFC 8285 reads as padding). `header` describes the packet's layout.
/// A one-byte-form id that would exceed 14 is stripped too. Malformed blocks are left as they
/// are (the router parsed this packet's extensions before forwarding it).
pub fn rewrite_extension_ids(buf: &mut [u8], header: &RtpHeader, table: &[u8; 256]) {
    let Some(block) = header.extension else { return };
    let two_byte = block.profile & 0xFFF0 == 0x1000;
    if ElementIter::new(buf, block).any(|e| e.is_err()) {
        return;
    }
    // Elements do not move: walk from the end of the previous element, editing as we go (a
    // stripped element becomes padding, which the walk then skips).
    let end = block.start + block.len;
    let mut at = block.start;
    loop {
        let rest = ExtensionBlock { profile: block.profile, start: at, len: end - at };
        let Some(Ok(e)) = ElementIter::new(buf, rest).next() else { break };
        at = e.value_offset + e.value_len;
        let new = table[e.id as usize];
        if new == e.id {
            continue;
        }
        if new == 0 || (!two_byte && new > 14) {
            buf[e.id_offset..e.value_offset + e.value_len].fill(0);
        } else if two_byte {
            buf[e.id_offset] = new;
        } else {
            buf[e.id_offset] = (new << 4) | (buf[e.id_offset] & 0x0F);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::Extensions;

    fn codecs(list: &[(u8, Codec)]) -> [Option<Codec>; 128] {
        let mut t = [None; 128];
        for &(pt, c) in list {
            t[pt as usize] = Some(c);
        }
        t
    }

    #[test]
    fn identical_numbering_needs_no_tables() {
        let map = ExtensionMap { mid: 4, rid: 10, ..Default::default() };
        let to = Numbering { codecs: vec![(96, Codec::Vp8), (98, Codec::Vp9)], extensions: map };
        assert_eq!(Remap::between(&codecs(&[(96, Codec::Vp8)]), &map, &to), None);
    }

    #[test]
    fn payload_types_and_ids_follow_the_subscriber_and_unknown_ones_are_stripped() {
        let publisher = ExtensionMap { audio_level: 1, mid: 4, abs_send_time: 2, ..Default::default() };
        let subscriber = ExtensionMap { audio_level: 3, mid: 9, ..Default::default() };
        let to = Numbering { codecs: vec![(109, Codec::Opus)], extensions: subscriber };
        let remap = Remap::between(&codecs(&[(111, Codec::Opus)]), &publisher, &to).unwrap();
        assert_eq!(remap.payload_type(111), 109);
        assert_eq!(remap.payload_type(0), 0, "others unchanged");
        assert!(remap.keeps_extension(1) && !remap.keeps_extension(2));
        // one-byte form: audio level (id 1), abs-send-time (id 2, 3 bytes), mid (id 4) "a"
        let mut p = vec![0x90, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0xBE, 0xDE, 0, 3];
        p.extend_from_slice(&[0x10, 0x85, 0x22, 1, 2, 3, 0x40, b'a', 0, 0, 0, 0]);
        p.extend_from_slice(b"opus");
        let header = RtpHeader::parse(&p).unwrap();
        rewrite_extension_ids(&mut p, &header, remap.extension_ids());
        let seen = Extensions::parse(&p, &header, &ExtensionMap { abs_send_time: 2, ..subscriber }).unwrap();
        assert_eq!(seen.audio_level, Some((true, 5)));
        assert_eq!(seen.mid.unwrap().as_bytes(), b"a");
        assert_eq!(seen.abs_send_time, None, "stripped to padding");
        assert_eq!(&p[18..22], &[0, 0, 0, 0]);
        assert_eq!(header.payload(&p), b"opus");
        // two-byte form: ids above 14 are fine
        let wide = Numbering { codecs: vec![], extensions: ExtensionMap { mid: 20, ..Default::default() } };
        let remap = Remap::between(&codecs(&[]), &ExtensionMap { mid: 4, ..Default::default() }, &wide).unwrap();
        let mut q = vec![0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0x10, 0x00, 0, 1, 4, 1, b'z', 0];
        let header = RtpHeader::parse(&q).unwrap();
        rewrite_extension_ids(&mut q, &header, remap.extension_ids());
        assert_eq!(&q[16..19], &[20, 1, b'z']);
        // ... but not in the one-byte form: stripped
        let mut r = vec![0x90, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0xBE, 0xDE, 0, 1, 0x40, b'z', 0, 0];
        let header = RtpHeader::parse(&r).unwrap();
        rewrite_extension_ids(&mut r, &header, remap.extension_ids());
        assert_eq!(&r[16..18], &[0, 0]);
    }
}
