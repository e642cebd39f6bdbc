//! Router tests told as stories: a publisher sends simulcast and a subscriber's layer follows
//! its bandwidth, switching only on keyframes with a continuous sequence; NACKs are answered;
//! keyframe requests are rate limited; paused consumers get nothing; garbage is counted.

use std::time::{Duration, Instant};

use super::*;
use crate::rtp::rtcp::{write_nack, write_pli};
use crate::rtp::{RtpHeader, ShortId};

const VP8: u8 = 96;
const OPUS: u8 = 111;
const PUB: TransportId = TransportId(1);
const SUB: TransportId = TransportId(2);
const SUB2: TransportId = TransportId(3);

#[derive(Default)]
struct Recorder {
    rtp: Vec<(TransportId, Vec<u8>)>,
    rtcp: Vec<(TransportId, Vec<u8>)>,
    notes: Vec<RouterNote>,
}

impl RouterOutput for Recorder {
    fn forward_rtp(&mut self, to: TransportId, packet: &[u8], rewrite: &RtpRewrite<'_>) {
        let mut buf = vec![0; packet.len() + 2];
        let n = apply_rewrite(packet, &mut buf, rewrite).unwrap();
        buf.truncate(n);
        self.rtp.push((to, buf));
    }
    fn send_rtcp(&mut self, to: TransportId, packet: &[u8]) {
        self.rtcp.push((to, packet.to_vec()));
    }
    fn note(&mut self, note: RouterNote) {
        self.notes.push(note);
    }
}

impl Recorder {
    fn take_rtp(&mut self) -> Vec<(TransportId, RtpHeader, Vec<u8>)> {
        self.rtp.drain(..).map(|(t, p)| (t, RtpHeader::parse(&p).unwrap(), p)).collect()
    }
    fn count(&self, note: RouterNote) -> usize {
        self.notes.iter().filter(|n| **n == note).count()
    }
}

fn rtp(ssrc: u32, seq: u16, ts: u32, pt: u8, ext: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    if !ext.is_empty() {
        p[0] |= 0x10;
        let words = ext.len().div_ceil(4);
        p.extend_from_slice(&[0xBE, 0xDE, 0, words as u8]);
        p.extend_from_slice(ext);
        p.resize(16 + words * 4, 0);
    }
    p.extend_from_slice(payload);
    p
}

const KEY: &[u8] = &[0x10, 0x00, 0x9d, 0x01, 0x2a];
const DELTA: &[u8] = &[0x10, 0x01, 0, 0, 0];

fn layer(ssrc: u32, height: u16, bps: u64) -> LayerSpec {
    LayerSpec { rid: None, ssrc: Some(ssrc), rtx_ssrc: None, width: height * 16 / 9, height, max_bitrate_bps: bps }
}

fn simulcast_producer() -> ProducerSpec {
    ProducerSpec {
        id: ProducerId(10),
        transport: PUB,
        kind: MediaKind::Video,
        mid: None,
        codecs: vec![(VP8, crate::rtp::Codec::Vp8)],
        layers: vec![layer(1000, 720, 1_500_000), layer(3000, 180, 150_000), layer(2000, 360, 500_000)],
        extensions: ExtensionMap::default(),
    }
}

/// A router (server SSRC `server_ssrc`) with one single-layer VP8 producer (SSRC 1000 on `PUB`).
fn one_layer_video_room(server_ssrc: u32) -> (Instant, Router, Recorder) {
    let mut router = Router::new(RouterConfig::default(), server_ssrc);
    let mut spec = simulcast_producer();
    spec.layers.truncate(1);
    router.add_producer(spec).unwrap();
    (Instant::now(), router, Recorder::default())
}

fn consumer(id: u32, transport: TransportId, producer: u32, ssrc: u32) -> ConsumerSpec {
    ConsumerSpec {
        id: ConsumerId(id),
        transport,
        producer: ProducerId(producer),
        ssrc,
        rtx: None,
        paused: false,
        max_height: u16::MAX,
    }
}

/// One frame interval of a three-layer publisher: (ssrc, seq base, ts base) per layer.
struct Publisher {
    layers: [(u32, u16, u32); 3],
    tick: u32,
}

impl Publisher {
    fn new() -> Self {
        Self { layers: [(1000, 65_500, 7), (2000, 100, 1 << 31), (3000, 30_000, u32::MAX - 10_000)], tick: 0 }
    }

    /// Sends one packet per layer; layers listed in `keyframes` send a keyframe.
    fn send(&mut self, router: &mut Router, rec: &mut Recorder, now: Instant, keyframes: &[u32]) {
        for (ssrc, seq, ts) in self.layers {
            let mut payload = if keyframes.contains(&ssrc) { KEY.to_vec() } else { DELTA.to_vec() };
            payload.extend_from_slice(&ssrc.to_be_bytes());
            let p =
                rtp(ssrc, seq.wrapping_add(self.tick as u16), ts.wrapping_add(3000 * self.tick), VP8, &[], &payload);
            router.handle_rtp(now, PUB, &p, rec);
        }
        self.tick += 1;
    }
}

fn remb(bps: u64) -> Vec<u8> {
    let exp = 64 - (bps >> 18).leading_zeros();
    let mantissa = (bps >> exp) as u32;
    let mut p = vec![0x8F, 206, 0, 5, 0, 0, 0, 9, 0, 0, 0, 0, b'R', b'E', b'M', b'B', 1];
    p.push(((exp as u8) << 2) | ((mantissa >> 16) as u8 & 0x3));
    p.extend_from_slice(&(mantissa as u16).to_be_bytes());
    p.extend_from_slice(&4242u32.to_be_bytes());
    p
}

fn source_of(packet: &[u8], header: &RtpHeader) -> (u32, bool) {
    let payload = header.payload(packet);
    let ssrc = u32::from_be_bytes(payload[5..9].try_into().unwrap());
    (ssrc, crate::rtp::is_keyframe(crate::rtp::Codec::Vp8, payload))
}

#[test]
fn simulcast_layer_follows_bandwidth_switching_on_keyframes_with_continuous_sequence() {
    let t0 = Instant::now();
    let mut router = Router::new(RouterConfig::default(), 0x5EBE);
    let mut rec = Recorder::default();
    router.add_producer(simulcast_producer()).unwrap();
    router.add_consumer(t0, consumer(1, SUB, 10, 4242), &mut rec).unwrap();
    let mut publisher = Publisher::new();
    let mut now = t0;
    let mut forwarded = Vec::new();
    // (REMB to apply before the phase, layer keyframes per tick) phases
    let phases: [(Option<u64>, u32, u32); 4] =
        [(None, 1000, 720), (Some(600_000), 2000, 360), (Some(100_000), 3000, 180), (Some(10_000_000), 1000, 720)];
    for (bandwidth, key_ssrc, height) in phases {
        if let Some(bps) = bandwidth {
            router.handle_rtcp(now, SUB, &remb(bps), &mut rec);
        }
        for tick in 0..10 {
            now += Duration::from_millis(33);
            // the target layer sends its keyframe on tick 5 only (so the switch must wait)
            let keys: &[u32] = if tick == 5 { &[key_ssrc] } else { &[] };
            publisher.send(&mut router, &mut rec, now, keys);
        }
        let expected_layer = match height {
            180 => 0,
            360 => 1,
            _ => 2,
        };
        assert_eq!(router.consumer_layer(ConsumerId(1)), Some(expected_layer), "after phase for {height}p");
        // a PLI for the target layer went to the publisher
        assert!(rec.rtcp.iter().any(|(to, p)| *to == PUB && p[1] == 206 && p[8..12] == key_ssrc.to_be_bytes()));
        forwarded.extend(rec.take_rtp());
    }
    assert!(forwarded.iter().all(|(to, h, _)| *to == SUB && h.ssrc == 4242));
    let mut switches = 0;
    for pair in forwarded.windows(2) {
        let (_, a, pa) = &pair[0];
        let (_, b, pb) = &pair[1];
        assert_eq!(b.sequence, a.sequence.wrapping_add(1), "sequence must be continuous");
        assert!(b.timestamp.wrapping_sub(a.timestamp) as i32 > 0, "timestamp must advance");
        let (src_a, _) = source_of(pa, a);
        let (src_b, key_b) = source_of(pb, b);
        if src_a != src_b {
            switches += 1;
            assert!(key_b, "switched to {src_b} on a delta frame");
        }
    }
    assert_eq!(switches, 3);
    assert_eq!(source_of(&forwarded[0].2, &forwarded[0].1), (1000, true), "starts on a keyframe");
    assert_eq!(rec.count(RouterNote::LayerSwitched), 4);
}

#[test]
fn rid_layers_are_bound_from_mid_and_rid_extensions() {
    let t0 = Instant::now();
    let mut router = Router::new(RouterConfig::default(), 1);
    let mut rec = Recorder::default();
    let mut spec = simulcast_producer();
    spec.mid = ShortId::new(b"1");
    spec.extensions = ExtensionMap { mid: 4, rid: 10, ..Default::default() };
    for (l, rid) in spec.layers.iter_mut().zip([b"f", b"q", b"h"]) {
        l.ssrc = None;
        l.rid = ShortId::new(rid);
    }
    router.add_producer(spec).unwrap();
    router.add_consumer(t0, ConsumerSpec { max_height: 200, ..consumer(1, SUB, 10, 77) }, &mut rec).unwrap();
    let ext = [0x40, b'1', 0xA0, b'q'];
    router.handle_rtp(t0, PUB, &rtp(555, 1, 0, VP8, &ext, KEY), &mut rec);
    // later packets of the same SSRC need no rid
    router.handle_rtp(t0, PUB, &rtp(555, 2, 0, VP8, &[], DELTA), &mut rec);
    let out = rec.take_rtp();
    assert_eq!(out.len(), 2);
    assert_eq!(router.consumer_layer(ConsumerId(1)), Some(0), "q is the lowest layer");
    router.handle_rtp(t0, PUB, &rtp(556, 1, 0, VP8, &[0x40, b'1', 0xA0, b'x'], KEY), &mut rec);
    assert_eq!(rec.count(RouterNote::UnknownSsrc), 1, "unknown rid");
}

fn audio_producer(id: u32, transport: TransportId, ssrc: u32) -> ProducerSpec {
    ProducerSpec::opus(ProducerId(id), transport, OPUS, ssrc, 1)
}

#[test]
fn audio_reaches_each_subscriber() {
    let t0 = Instant::now();
    let mut router = Router::new(RouterConfig::default(), 1);
    let mut rec = Recorder::default();
    router.add_producer(audio_producer(1, PUB, 11)).unwrap();
    router.add_consumer(t0, consumer(1, SUB, 1, 21), &mut rec).unwrap();
    router.add_consumer(t0, consumer(2, SUB2, 1, 22), &mut rec).unwrap();
    let mut now = t0;
    for i in 0..50u16 {
        now += Duration::from_millis(20);
        router.handle_rtp(now, PUB, &rtp(11, i, 960 * i as u32, OPUS, &[0x10, 0x80 | 25], &[1, 2, 3]), &mut rec);
        router.poll(now, &mut rec);
    }
    let out = rec.take_rtp();
    assert_eq!(out.iter().filter(|(t, h, _)| *t == SUB && h.ssrc == 21).count(), 50);
    assert_eq!(out.iter().filter(|(t, h, _)| *t == SUB2 && h.ssrc == 22).count(), 50);
}

#[test]
fn nack_is_answered_from_cache_plain_and_as_rtx() {
    let (t0, mut router, mut rec) = one_layer_video_room(1);
    router.add_consumer(t0, consumer(1, SUB, 10, 50), &mut rec).unwrap();
    router.add_consumer(t0, ConsumerSpec { rtx: Some((51, 97)), ..consumer(2, SUB2, 10, 60) }, &mut rec).unwrap();
    for i in 0..20u16 {
        let payload = if i == 0 { KEY } else { DELTA };
        router.handle_rtp(t0, PUB, &rtp(1000, 500 + i, 90 * i as u32, VP8, &[], payload), &mut rec);
    }
    let sent = rec.take_rtp();
    let to_sub: Vec<_> = sent.iter().filter(|(t, _, _)| *t == SUB).collect();
    let lost = [to_sub[3].1.sequence, to_sub[7].1.sequence];
    let mut nack = [0u8; 64];
    let n = write_nack(&mut nack, 9, 50, &lost).unwrap();
    router.handle_rtcp(t0, SUB, &nack[..n], &mut rec);
    let resent = rec.take_rtp();
    assert_eq!(resent.len(), 2);
    assert_eq!(resent[0].2, to_sub[3].2, "plain resend is byte-identical to the original copy");
    assert_eq!(resent[1].2, to_sub[7].2);
    // RTX subscriber: OSN in the first two payload bytes, RTX ssrc and payload type
    let to_sub2: Vec<_> = sent.iter().filter(|(t, _, _)| *t == SUB2).collect();
    let n = write_nack(&mut nack, 9, 60, &[to_sub2[5].1.sequence]).unwrap();
    router.handle_rtcp(t0, SUB2, &nack[..n], &mut rec);
    let rtx = rec.take_rtp();
    assert_eq!(rtx.len(), 1);
    let (_, h, p) = &rtx[0];
    assert_eq!((h.ssrc, h.payload_type), (51, 97));
    assert_eq!(&h.payload(p)[..2], &to_sub2[5].1.sequence.to_be_bytes());
    assert_eq!(&h.payload(p)[2..], to_sub2[5].1.payload(&to_sub2[5].2));
    assert_eq!(h.timestamp, to_sub2[5].1.timestamp);
    // a NACK for something never sent is counted as missed
    let n = write_nack(&mut nack, 9, 50, &[to_sub[0].1.sequence.wrapping_sub(100)]).unwrap();
    router.handle_rtcp(t0, SUB, &nack[..n], &mut rec);
    assert_eq!(rec.count(RouterNote::NackMissed), 1);
    assert_eq!(rec.count(RouterNote::NackResent), 3);
}

#[test]
fn keyframe_requests_are_relayed_with_a_rate_limit() {
    let (t0, mut router, mut rec) = one_layer_video_room(0xABCD);
    router.add_consumer(t0, consumer(1, SUB, 10, 50), &mut rec).unwrap();
    router.handle_rtp(t0, PUB, &rtp(1000, 1, 0, VP8, &[], KEY), &mut rec);
    rec.rtcp.clear();
    let mut pli = [0u8; 12];
    write_pli(&mut pli, 9, 50).unwrap();
    let t1 = t0 + Duration::from_secs(1);
    for i in 0..10 {
        router.handle_rtcp(t1 + Duration::from_millis(20 * i), SUB, &pli, &mut rec);
    }
    assert_eq!(rec.rtcp.len(), 1, "ten PLIs within 200 ms become one");
    let (to, p) = &rec.rtcp[0];
    assert_eq!(*to, PUB);
    assert_eq!((&p[4..8], &p[8..12]), (&0xABCDu32.to_be_bytes()[..], &1000u32.to_be_bytes()[..]));
    router.handle_rtcp(t1 + Duration::from_millis(400), SUB, &pli, &mut rec);
    assert_eq!(rec.rtcp.len(), 2);
}

#[test]
fn paused_consumer_gets_nothing_and_resumes_on_a_keyframe() {
    let (t0, mut router, mut rec) = one_layer_video_room(1);
    router.add_consumer(t0, ConsumerSpec { paused: true, ..consumer(1, SUB, 10, 50) }, &mut rec).unwrap();
    router.handle_rtp(t0, PUB, &rtp(1000, 1, 0, VP8, &[], KEY), &mut rec);
    assert!(rec.take_rtp().is_empty());
    router.set_consumer_paused(t0, ConsumerId(1), false, &mut rec).unwrap();
    router.handle_rtp(t0, PUB, &rtp(1000, 2, 0, VP8, &[], DELTA), &mut rec);
    assert!(rec.take_rtp().is_empty(), "waits for a keyframe after resume");
    router.handle_rtp(t0, PUB, &rtp(1000, 3, 0, VP8, &[], KEY), &mut rec);
    assert_eq!(rec.take_rtp().len(), 1);
}

#[test]
fn a_transport_that_becomes_ready_restarts_its_video_from_a_fresh_keyframe() {
    let (t0, mut router, mut rec) = one_layer_video_room(0xABCD);
    router.add_producer(audio_producer(2, PUB, 11)).unwrap();
    router.add_consumer(t0, consumer(1, SUB, 10, 50), &mut rec).unwrap();
    router.add_consumer(t0, consumer(2, SUB, 2, 51), &mut rec).unwrap();
    // Before the subscriber's DTLS finished, its keyframe and a delta "went out" (dropped).
    router.handle_rtp(t0, PUB, &rtp(1000, 1, 0, VP8, &[], KEY), &mut rec);
    router.handle_rtp(t0, PUB, &rtp(1000, 2, 3000, VP8, &[], DELTA), &mut rec);
    let before: Vec<u16> = rec.take_rtp().iter().map(|(_, h, _)| h.sequence).collect();
    assert_eq!(before.len(), 2);
    rec.rtcp.clear();
    let t1 = t0 + Duration::from_secs(1);
    router.transport_ready(t1, SUB, &mut rec);
    assert_eq!(rec.rtcp.len(), 1, "one PLI for the video layer, none for audio");
    assert_eq!((rec.rtcp[0].0, &rec.rtcp[0].1[8..12]), (PUB, &1000u32.to_be_bytes()[..]));
    router.handle_rtp(t1, PUB, &rtp(1000, 3, 6000, VP8, &[], DELTA), &mut rec);
    assert!(rec.take_rtp().is_empty(), "deltas wait for the fresh keyframe");
    router.handle_rtp(t1, PUB, &rtp(1000, 4, 9000, VP8, &[], KEY), &mut rec);
    let after = rec.take_rtp();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].1.sequence, before[1].wrapping_add(1), "the subscriber's sequence stays continuous");
    // A transport with nothing but audio asks for nothing.
    rec.rtcp.clear();
    router.transport_ready(t1 + Duration::from_secs(1), SUB2, &mut rec);
    assert!(rec.rtcp.is_empty());
}

#[test]
fn repointing_to_another_publisher_is_seamless() {
    let t0 = Instant::now();
    let mut router = Router::new(RouterConfig::default(), 1);
    let mut rec = Recorder::default();
    router.add_producer(audio_producer(1, PUB, 11)).unwrap();
    router.add_producer(audio_producer(2, SUB2, 12)).unwrap();
    router.add_consumer(t0, consumer(1, SUB, 1, 21), &mut rec).unwrap();
    for i in 0..5u16 {
        router.handle_rtp(t0, PUB, &rtp(11, 100 + i, 960 * i as u32, OPUS, &[], &[1]), &mut rec);
    }
    router.repoint_consumer(t0, ConsumerId(1), ProducerId(2), &mut rec).unwrap();
    let t1 = t0 + Duration::from_millis(100);
    for i in 0..5u16 {
        router.handle_rtp(t1, PUB, &rtp(11, 105 + i, 960 * (5 + i) as u32, OPUS, &[], &[1]), &mut rec);
        router.handle_rtp(t1, SUB2, &rtp(12, 9000 + i, 55 + 960 * i as u32, OPUS, &[], &[2]), &mut rec);
    }
    let out = rec.take_rtp();
    assert_eq!(out.len(), 10);
    for pair in out.windows(2) {
        assert_eq!(pair[1].1.sequence, pair[0].1.sequence.wrapping_add(1));
        assert!(pair[1].1.timestamp.wrapping_sub(pair[0].1.timestamp) as i32 > 0);
    }
    assert!(out[5..].iter().all(|(_, h, p)| h.payload(p) == [2]));
}

#[test]
fn bad_input_is_counted_never_panics() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let t0 = Instant::now();
    let mut router = Router::new(RouterConfig::default(), 1);
    let mut rec = Recorder::default();
    router.add_producer(simulcast_producer()).unwrap();
    router.add_consumer(t0, consumer(1, SUB, 10, 50), &mut rec).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut buf = [0u8; 300];
    for i in 0..20_000 {
        let len = rng.gen_range(0..buf.len());
        rng.fill(&mut buf[..len]);
        if i % 2 == 0 {
            buf[0] = 0x80 | (buf[0] & 0x3F);
        }
        router.handle_rtp(t0, PUB, &buf[..len], &mut rec);
        router.handle_rtcp(t0, SUB, &buf[..len], &mut rec);
    }
    router.handle_rtp(t0, PUB, &rtp(999, 1, 0, VP8, &[], KEY), &mut rec);
    assert!(rec.count(RouterNote::UnknownSsrc) >= 1);
    assert!(rec.count(RouterNote::MalformedRtp) + rec.count(RouterNote::MalformedRtcp) > 10_000);
    assert_eq!(router.add_producer(simulcast_producer()), Err(RouterError::DuplicateProducer));
    assert_eq!(router.remove_consumer(ConsumerId(99)), Err(RouterError::UnknownConsumer));
}

/// A report block: (media ssrc, fraction lost, cumulative lost, jitter in RTP clock units).
fn report_block(ssrc: u32, fraction: u8, lost: u32, jitter: u32) -> Vec<u8> {
    let mut b = ssrc.to_be_bytes().to_vec();
    b.push(fraction);
    b.extend_from_slice(&lost.to_be_bytes()[1..]);
    b.extend_from_slice(&1000u32.to_be_bytes()); // highest sequence
    b.extend_from_slice(&jitter.to_be_bytes());
    b.extend_from_slice(&[0; 8]); // LSR, DLSR
    b
}

/// An RR (PT 201) or, with `sr`, an SR (PT 200) carrying `blocks`.
fn report(sr: bool, blocks: &[Vec<u8>]) -> Vec<u8> {
    let body: usize = 4 + if sr { 20 } else { 0 } + 24 * blocks.len();
    let words = (body / 4) as u16;
    let mut p = vec![0x80 | blocks.len() as u8, if sr { 200 } else { 201 }];
    p.extend_from_slice(&words.to_be_bytes());
    p.extend_from_slice(&9u32.to_be_bytes()); // reporter ssrc
    if sr {
        p.extend_from_slice(&[0; 20]);
    }
    for b in blocks {
        p.extend_from_slice(b);
    }
    p
}

#[test]
fn receiver_reports_become_loss_and_jitter_notes_per_consumer_stream() {
    let t0 = Instant::now();
    let mut router = Router::new(RouterConfig::default(), 1);
    let mut rec = Recorder::default();
    let mut video = simulcast_producer();
    video.layers.truncate(1);
    router.add_producer(video).unwrap();
    router.add_producer(audio_producer(1, PUB, 11)).unwrap();
    router.add_consumer(t0, consumer(1, SUB, 10, 50), &mut rec).unwrap();
    router.add_consumer(t0, consumer(2, SUB, 1, 21), &mut rec).unwrap();
    rec.notes.clear();
    // Video: 4500 units at 90 kHz = 50 ms; audio: 480 units at 48 kHz = 10 ms. An unknown SSRC
    // (here the publisher's) is ignored.
    let rr = report(false, &[report_block(50, 64, 5, 4500), report_block(21, 0, 0, 480), report_block(1000, 9, 9, 9)]);
    router.handle_rtcp(t0, SUB, &rr, &mut rec);
    let first = |lost_increase, fraction_lost, jitter_ns| RouterNote::ReceptionReport {
        lost_increase,
        fraction_lost,
        jitter_ns,
    };
    assert_eq!(rec.notes, vec![first(5, 64, 50_000_000), first(0, 0, 10_000_000)]);
    rec.notes.clear();
    // The next SR from the subscriber: video's count grew by 3, audio's went down (duplicates).
    let sr = report(true, &[report_block(50, 16, 8, 900), report_block(21, 0, 0xFF_FFFF, 0)]);
    router.handle_rtcp(t0, SUB, &sr, &mut rec);
    assert_eq!(rec.notes, vec![first(3, 16, 10_000_000), first(0, 0, 0)]);
    // Reports about a transport's stream arriving from another transport are not its reports.
    rec.notes.clear();
    router.handle_rtcp(t0, SUB2, &rr, &mut rec);
    assert!(rec.notes.is_empty(), "{:?}", rec.notes);
}

mod reports;

mod upstream;
