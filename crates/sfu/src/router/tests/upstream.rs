//! Router stories for repair towards publishers: a lost video packet is NACKed to the
//! publisher, its RTX retransmission is unwrapped, cached and fills the subscriber's gap; RTX
//! streams of rid layers are bound from the repaired-rid extension; probes are ignored.

use super::*;
use crate::rtp::rtcp::{Compound, RtcpPacket};

fn nacks_to(rec: &mut Recorder, to: TransportId) -> Vec<(u32, Vec<u16>)> {
    let mut found = Vec::new();
    for (t, p) in rec.rtcp.drain(..) {
        if t != to {
            continue;
        }
        for part in Compound::new(&p).flatten() {
            if let RtcpPacket::Nack(n) = part {
                found.push((n.media_ssrc, n.lost().collect()));
            }
        }
    }
    found
}

/// RTX of `original` (RFC 4588) on `ssrc` with payload type 97 and its own sequence number.
fn rtx_of(original: &[u8], ssrc: u32, rtx_seq: u16) -> Vec<u8> {
    let h = RtpHeader::parse(original).unwrap();
    let mut payload = h.sequence.to_be_bytes().to_vec();
    payload.extend_from_slice(h.payload(original));
    rtp(ssrc, rtx_seq, h.timestamp, 97, &[], &payload)
}

#[test]
fn a_lost_video_packet_is_nacked_upstream_and_its_rtx_fills_the_subscribers_gap() {
    let t0 = Instant::now();
    let mut router = Router::new(RouterConfig::default(), 0x5EBE);
    let mut rec = Recorder::default();
    let mut spec = simulcast_producer();
    spec.layers.truncate(1);
    spec.layers[0].rtx_ssrc = Some(1001);
    router.add_producer(spec).unwrap();
    router.add_consumer(t0, consumer(1, SUB, 10, 50), &mut rec).unwrap();
    let packets: Vec<_> = (0..10u16)
        .map(|i| {
            rtp(1000, 100 + i, 3000 * i as u32, VP8, &[], &[if i == 0 { KEY } else { DELTA }, &[i as u8; 8]].concat())
        })
        .collect();
    let mut now = t0;
    for (i, p) in packets.iter().enumerate() {
        now += Duration::from_millis(2);
        if i != 5 {
            router.handle_rtp(now, PUB, p, &mut rec);
        }
        router.poll(now, &mut rec);
    }
    let forwarded = rec.take_rtp();
    assert_eq!(forwarded.len(), 9);
    now += Duration::from_millis(10);
    router.poll(now, &mut rec);
    assert_eq!(nacks_to(&mut rec, PUB), vec![(1000, vec![105])], "asked once the reordering grace passed");
    router.poll(now + Duration::from_millis(5), &mut rec);
    assert!(nacks_to(&mut rec, PUB).is_empty(), "not again before the retry interval");
    // The publisher answers with RTX: unwrapped, forwarded in the hole of the subscriber's stream.
    router.handle_rtp(now, PUB, &rtx_of(&packets[5], 1001, 7), &mut rec);
    let repaired = rec.take_rtp();
    assert_eq!(repaired.len(), 1);
    let (to, h, p) = &repaired[0];
    assert_eq!((*to, h.ssrc, h.payload_type), (SUB, 50, VP8));
    assert_eq!(h.sequence, forwarded[4].1.sequence.wrapping_add(1), "between the 5th and the 6th copy");
    assert_eq!(h.sequence.wrapping_add(1), forwarded[5].1.sequence);
    assert_eq!(h.payload(p), RtpHeader::parse(&packets[5]).unwrap().payload(&packets[5]));
    // it is cached: the subscriber's own NACK for it is answered
    let mut nack = [0u8; 64];
    let n = crate::rtp::rtcp::write_nack(&mut nack, 9, 50, &[h.sequence]).unwrap();
    router.handle_rtcp(now, SUB, &nack[..n], &mut rec);
    assert_eq!(rec.count(RouterNote::NackResent), 1);
    assert_eq!(rec.take_rtp()[0].2, *p, "the resend is the repaired copy");
    // and no more NACKs go upstream for it
    router.poll(now + Duration::from_millis(200), &mut rec);
    assert!(nacks_to(&mut rec, PUB).is_empty());
    // a padding-only probe on the RTX SSRC is dropped silently
    let notes = rec.notes.len();
    router.handle_rtp(now, PUB, &rtp(1001, 8, 0, 97, &[], &[]), &mut rec);
    assert!(rec.take_rtp().is_empty());
    assert_eq!(rec.notes.len(), notes);
}

#[test]
fn rtx_of_a_rid_layer_is_bound_from_the_repaired_rid_extension() {
    let t0 = Instant::now();
    let mut router = Router::new(RouterConfig::default(), 1);
    let mut rec = Recorder::default();
    let mut spec = simulcast_producer();
    spec.mid = ShortId::new(b"1");
    spec.extensions = ExtensionMap { mid: 4, rid: 10, repaired_rid: 11, ..Default::default() };
    for (l, rid) in spec.layers.iter_mut().zip([b"f", b"q", b"h"]) {
        l.ssrc = None;
        l.rid = ShortId::new(rid);
    }
    router.add_producer(spec).unwrap();
    router.add_consumer(t0, ConsumerSpec { max_height: 200, ..consumer(1, SUB, 10, 77) }, &mut rec).unwrap();
    let first = rtp(555, 1, 0, VP8, &[0x40, b'1', 0xA0, b'q'], KEY);
    router.handle_rtp(t0, PUB, &first, &mut rec);
    router.handle_rtp(t0, PUB, &rtp(555, 3, 0, VP8, &[], DELTA), &mut rec);
    assert_eq!(rec.take_rtp().len(), 2);
    // packet 2 comes back as RTX on SSRC 556, naming the layer by repaired-rid "q"
    let original = rtp(555, 2, 0, VP8, &[], &[0x10, 0x01, 0, 0, 2]);
    let h = RtpHeader::parse(&original).unwrap();
    let mut payload = 2u16.to_be_bytes().to_vec();
    payload.extend_from_slice(h.payload(&original));
    router.handle_rtp(t0, PUB, &rtp(556, 40, 0, 97, &[0x40, b'1', 0xB0, b'q'], &payload), &mut rec);
    let out = rec.take_rtp();
    assert_eq!(out.len(), 1, "{:?}", rec.notes);
    assert_eq!(out[0].1.ssrc, 77);
    assert_eq!(out[0].1.payload(&out[0].2), h.payload(&original));
    assert_eq!(rec.count(RouterNote::UnknownSsrc), 0);
}

#[test]
fn a_subscriber_with_other_numbers_gets_its_own_payload_type_and_extension_ids() {
    let t0 = Instant::now();
    let mut router = Router::new(RouterConfig::default(), 1);
    let mut rec = Recorder::default();
    let mut spec = simulcast_producer();
    spec.layers.truncate(1);
    spec.extensions = ExtensionMap { mid: 4, abs_send_time: 2, ..Default::default() };
    router.add_producer(spec).unwrap();
    router.add_consumer(t0, consumer(1, SUB, 10, 50), &mut rec).unwrap();
    router.add_consumer(t0, consumer(2, SUB2, 10, 60), &mut rec).unwrap();
    // SUB2 calls VP8 120 and mid 7, and did not negotiate abs-send-time
    let numbering = Numbering {
        codecs: vec![(126, crate::rtp::Codec::H264), (120, crate::rtp::Codec::Vp8)],
        extensions: ExtensionMap { mid: 7, ..Default::default() },
    };
    router.set_consumer_numbering(ConsumerId(2), numbering).unwrap();
    assert_eq!(
        router.set_consumer_numbering(ConsumerId(9), Numbering { codecs: vec![], extensions: ExtensionMap::default() }),
        Err(RouterError::UnknownConsumer)
    );
    let ext = [0x40, b'1', 0x22, 1, 2, 3];
    router.handle_rtp(t0, PUB, &rtp(1000, 1, 0, VP8, &ext, KEY), &mut rec);
    let out = rec.take_rtp();
    assert_eq!(out.len(), 2);
    let (_, plain, p) = out.iter().find(|(t, _, _)| *t == SUB).unwrap();
    assert_eq!(plain.payload_type, VP8, "same numbering: untouched");
    assert_eq!(&p[16..22], &ext);
    let (_, mapped, q) = out.iter().find(|(t, _, _)| *t == SUB2).unwrap();
    assert_eq!(mapped.payload_type, 120);
    let seen =
        crate::rtp::Extensions::parse(q, mapped, &ExtensionMap { mid: 7, abs_send_time: 2, ..Default::default() })
            .unwrap();
    assert_eq!(seen.mid.unwrap().as_bytes(), b"1");
    assert_eq!(seen.abs_send_time, None, "not negotiated by SUB2: stripped");
    assert_eq!(mapped.payload(q), plain.payload(p));
    // NACK resends are translated the same way
    let mut nack = [0u8; 64];
    let n = crate::rtp::rtcp::write_nack(&mut nack, 9, 60, &[mapped.sequence]).unwrap();
    router.handle_rtcp(t0, SUB2, &nack[..n], &mut rec);
    let resent = rec.take_rtp();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].2, *q);
}
