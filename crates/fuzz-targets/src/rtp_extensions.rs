//! RTP header extensions (RFC 8285 one-byte and two-byte forms; `palaver_sfu::rtp::extension`):
//! the values the SFU reads and the in-place id rewrite. The first input byte picks the
//! negotiated ids, the rest is the packet. Properties: no panic; the transport-cc offset points
//! inside the packet; a rewrite through an id permutation and back restores the packet
//! exactly; a failed rewrite leaves it untouched; blocks of other profiles are never touched.

use palaver_sfu::rtp::extension::{ElementIter, remap_ids, set_transport_cc};
use palaver_sfu::rtp::{ExtensionMap, Extensions, RtpHeader};

/// One input (the body of the libFuzzer target of the same name).
pub fn run(data: &[u8]) {
    let Some((&ids, packet)) = data.split_first() else { return };
    let Ok(header) = RtpHeader::parse(packet) else { return };
    let id = |shift: u32| ((ids.rotate_left(shift) & 0x0F) % 15).max(1);
    let map = ExtensionMap {
        audio_level: id(0),
        transport_cc: id(1),
        abs_send_time: id(2),
        mid: id(3),
        rid: id(4),
        repaired_rid: id(5),
    };
    let parsed = Extensions::parse(packet, &header, &map);
    if let Ok(ext) = &parsed
        && let Some((sequence, at)) = ext.transport_cc
    {
        assert!(at + 2 <= header.payload_offset, "transport-cc value outside the header");
        let mut buf = packet.to_vec();
        set_transport_cc(&mut buf, at, sequence.wrapping_add(1));
        let again = Extensions::parse(&buf, &header, &map).expect("rewritten packet parses");
        assert_eq!(again.transport_cc, Some((sequence.wrapping_add(1), at)));
    }
    if let Some(block) = header.extension {
        for element in ElementIter::new(packet, block).flatten() {
            assert!(element.value_offset + element.value_len <= block.start + block.len);
        }
    }

    // A permutation of the one-byte ids 1..=14 (also used for two-byte ids below 15).
    let shift = (ids as usize % 13) + 1;
    let mut forward = [0u8; 256];
    let mut back = [0u8; 256];
    for id in 1..=14u8 {
        let to = (usize::from(id) - 1 + shift) % 14 + 1;
        forward[usize::from(id)] = to as u8;
        back[to] = id;
    }
    let mut buf = packet.to_vec();
    match remap_ids(&mut buf, &header, &forward) {
        Ok(()) => {
            let known = header.extension.is_some_and(|b| b.profile == 0xBEDE || b.profile & 0xFFF0 == 0x1000);
            if !known {
                assert_eq!(buf, packet, "a block of another profile was rewritten");
            }
            remap_ids(&mut buf, &header, &back).expect("the inverse remap of a remapped packet succeeds");
            assert_eq!(buf, packet, "remap and inverse remap did not restore the packet");
        }
        Err(_) => {
            assert_eq!(buf, packet, "a refused remap changed the packet");
            assert!(parsed.is_err(), "remap refused a block that parses");
        }
    }
}
