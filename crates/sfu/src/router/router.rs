//! The [`Router`] of one room: producer/consumer bookkeeping, the RTP forwarding path and the
//! control operations (subscribe, pause, resize, re-point). RTCP feedback handling lives in
//! `feedback.rs`.

use std::time::Instant;

use super::layers::{Layer, choose_layer};
use super::remap::{Numbering, Remap};
use super::reports::{Jitter, NtpClock, PublisherReports, REPORT_SCAN, SendStats};
use super::rewriter::OutStream;
use super::upstream::REORDER_GRACE;
use super::{
    ConsumerId, ConsumerSpec, FastMap, ProducerId, ProducerSpec, RouterConfig, RouterNote, RouterOutput, RtpRewrite,
    TransportId, TwccEstimator,
};
use crate::rtp::{Codec, ExtensionMap, Extensions, RtpHeader, ShortId, is_keyframe};
use palaver_core::MediaKind;

/// Why a control operation was refused (nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    #[error("producer id already exists")]
    DuplicateProducer,
    #[error("consumer id already exists")]
    DuplicateConsumer,
    #[error("unknown producer")]
    UnknownProducer,
    #[error("unknown consumer")]
    UnknownConsumer,
    #[error("SSRC already used on this transport")]
    SsrcInUse,
    #[error("a producer needs 1 to 4 layers, each with an SSRC or a rid")]
    BadLayers,
}

pub(super) struct Producer {
    pub id: ProducerId,
    pub transport: TransportId,
    pub kind: MediaKind,
    pub mid: Option<ShortId>,
    pub codecs: [Option<Codec>; 128],
    pub extensions: ExtensionMap,
    pub layers: Vec<Layer>,
    pub consumers: Vec<usize>,
}

pub(super) struct Consumer {
    pub id: ConsumerId,
    pub transport: TransportId,
    pub producer: usize,
    pub ssrc: u32,
    pub rtx: Option<(u32, u8)>,
    pub paused: bool,
    pub max_height: u16,
    pub current_layer: Option<u8>,
    pub target_layer: Option<u8>,
    /// Set when the consumer must re-base (new producer or resumed) before forwarding.
    pub needs_switch: bool,
    pub out: OutStream,
    /// Cumulative lost count (24-bit) of the subscriber's last report block on this stream.
    pub reported_lost: Option<u32>,
    /// Packets and octets sent, for sender reports.
    pub sent: SendStats,
    /// How the subscriber numbered this m-section, if the control plane said so.
    pub numbering: Option<Numbering>,
    /// Translation from the current producer's numbering, when any number differs.
    pub remap: Option<Box<Remap>>,
}

#[derive(Debug, Default)]
pub(super) struct Subscriber {
    pub remb_bps: Option<u64>,
    pub twcc: TwccEstimator,
}

impl Subscriber {
    pub fn estimate_bps(&self) -> Option<u64> {
        match (self.remb_bps, self.twcc.estimate_bps()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Route {
    pub producer: usize,
    pub layer: u8,
    /// The layer's RTX stream (RFC 4588), unwrapped before routing.
    pub rtx: bool,
}

/// A room's router. See the module docs of [`crate::router`].
pub struct Router {
    pub(super) config: RouterConfig,
    pub(super) server_ssrc: u32,
    pub(super) producers: Vec<Option<Producer>>,
    pub(super) producer_index: FastMap<ProducerId, usize>,
    pub(super) consumers: Vec<Option<Consumer>>,
    pub(super) consumer_index: FastMap<ConsumerId, usize>,
    /// (publisher transport, incoming SSRC) -> producer layer.
    pub(super) routes: FastMap<(TransportId, u32), Route>,
    /// (subscriber transport, consumer SSRC or RTX SSRC) -> consumer.
    pub(super) feedback_routes: FastMap<(TransportId, u32), usize>,
    pub(super) subscribers: FastMap<TransportId, Subscriber>,
    pub(super) last_layer_review: Option<Instant>,
    pub(super) scratch: [u8; 64],
    /// Publishing transports: RR schedule and receive-side estimate.
    pub(super) publishers: FastMap<TransportId, PublisherReports>,
    pub(super) clock: Option<NtpClock>,
    pub(super) last_report_scan: Option<Instant>,
    /// Earliest scheduled SR/RR (from the last scan), or a stream that has none yet.
    pub(super) next_report: Option<Instant>,
    /// Earliest upstream NACK (re)try of any video layer.
    pub(super) next_nack: Option<Instant>,
    pub(super) jitter: Jitter,
    /// Where SR/RR compound packets are composed.
    pub(super) report_buf: [u8; 1024],
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("producers", &self.producer_index.len())
            .field("consumers", &self.consumer_index.len())
            .finish()
    }
}

impl Router {
    /// `server_ssrc` is the sender SSRC of RTCP the router originates (PLI/FIR).
    pub fn new(config: RouterConfig, server_ssrc: u32) -> Self {
        Self {
            config,
            server_ssrc,
            producers: Vec::new(),
            producer_index: FastMap::default(),
            consumers: Vec::new(),
            consumer_index: FastMap::default(),
            routes: FastMap::default(),
            feedback_routes: FastMap::default(),
            subscribers: FastMap::default(),
            last_layer_review: None,
            scratch: [0; 64],
            publishers: FastMap::default(),
            clock: None,
            last_report_scan: None,
            next_report: None,
            next_nack: None,
            jitter: Jitter::new(server_ssrc),
            report_buf: [0; 1024],
        }
    }

    pub fn producer_count(&self) -> usize {
        self.producer_index.len()
    }

    pub fn consumer_count(&self) -> usize {
        self.consumer_index.len()
    }

    /// The layer a consumer currently forwards (index into the producer's layers sorted by
    /// height), for tests and diagnostics.
    pub fn consumer_layer(&self, id: ConsumerId) -> Option<u8> {
        let c = self.consumers[*self.consumer_index.get(&id)?].as_ref()?;
        if c.needs_switch { None } else { c.current_layer }
    }

    /// Accepts a publisher's track.
    pub fn add_producer(&mut self, spec: ProducerSpec) -> Result<(), RouterError> {
        if self.producer_index.contains_key(&spec.id) {
            return Err(RouterError::DuplicateProducer);
        }
        if spec.layers.is_empty()
            || spec.layers.len() > 4
            || (spec.layers.iter().any(|l| l.ssrc.is_none() && l.rid.is_none()) && !unsignalled_audio(&spec))
        {
            return Err(RouterError::BadLayers);
        }
        let ssrcs = spec.layers.iter().flat_map(|l| [l.ssrc, l.rtx_ssrc]).flatten();
        if ssrcs.clone().any(|s| self.routes.contains_key(&(spec.transport, s))) {
            return Err(RouterError::SsrcInUse);
        }
        let mut layers = spec.layers.clone();
        layers.sort_by_key(|l| l.height);
        let cache = if spec.kind == MediaKind::Audio { 0 } else { self.config.video_cache_packets };
        let mut codecs = [None; 128];
        for &(pt, codec) in &spec.codecs {
            if let Some(slot) = codecs.get_mut(pt as usize) {
                *slot = Some(codec);
            }
        }
        let index = self.producers.iter().position(Option::is_none).unwrap_or(self.producers.len());
        for (i, layer) in layers.iter().enumerate() {
            if let Some(ssrc) = layer.ssrc {
                self.routes.insert((spec.transport, ssrc), Route { producer: index, layer: i as u8, rtx: false });
            }
            if let Some(ssrc) = layer.rtx_ssrc {
                self.routes.insert((spec.transport, ssrc), Route { producer: index, layer: i as u8, rtx: true });
            }
        }
        let producer = Producer {
            id: spec.id,
            transport: spec.transport,
            kind: spec.kind,
            mid: spec.mid,
            codecs,
            extensions: spec.extensions,
            layers: layers.into_iter().map(|l| Layer::new(l, cache)).collect(),
            consumers: Vec::new(),
        };
        if index == self.producers.len() {
            self.producers.push(Some(producer));
        } else {
            self.producers[index] = Some(producer);
        }
        self.producer_index.insert(spec.id, index);
        self.publishers.entry(spec.transport).or_default();
        Ok(())
    }

    /// Removes a producer and every consumer of it.
    pub fn remove_producer(&mut self, id: ProducerId) -> Result<(), RouterError> {
        let index = self.producer_index.remove(&id).ok_or(RouterError::UnknownProducer)?;
        let producer = self.producers[index].take().ok_or(RouterError::UnknownProducer)?;
        self.routes.retain(|_, r| r.producer != index);
        for c in producer.consumers {
            if let Some(consumer) = self.consumers[c].as_ref() {
                let id = consumer.id;
                let _ = self.remove_consumer(id);
            }
        }
        if !self.producers.iter().flatten().any(|p| p.transport == producer.transport) {
            self.publishers.remove(&producer.transport);
        }
        Ok(())
    }

    /// Subscribes a transport to a producer.
    pub fn add_consumer(
        &mut self,
        now: Instant,
        spec: ConsumerSpec,
        out: &mut impl RouterOutput,
    ) -> Result<(), RouterError> {
        if self.consumer_index.contains_key(&spec.id) {
            return Err(RouterError::DuplicateConsumer);
        }
        if self.last_layer_review.is_none() {
            // The first review is due at once (as if one had run a review period ago).
            self.last_layer_review = now.checked_sub(self.config.layer_timeout / 4).or(Some(now));
        }
        let producer = *self.producer_index.get(&spec.producer).ok_or(RouterError::UnknownProducer)?;
        let rtx_ssrc = spec.rtx.map(|(s, _)| s);
        if [Some(spec.ssrc), rtx_ssrc]
            .into_iter()
            .flatten()
            .any(|s| self.feedback_routes.contains_key(&(spec.transport, s)))
        {
            return Err(RouterError::SsrcInUse);
        }
        let index = self.consumers.iter().position(Option::is_none).unwrap_or(self.consumers.len());
        let consumer = Consumer {
            id: spec.id,
            transport: spec.transport,
            producer,
            ssrc: spec.ssrc,
            rtx: spec.rtx,
            paused: spec.paused,
            max_height: spec.max_height,
            current_layer: None,
            target_layer: None,
            needs_switch: true,
            out: OutStream::new(spec.ssrc),
            reported_lost: None,
            sent: SendStats::default(),
            numbering: None,
            remap: None,
        };
        if index == self.consumers.len() {
            self.consumers.push(Some(consumer));
        } else {
            self.consumers[index] = Some(consumer);
        }
        self.consumer_index.insert(spec.id, index);
        self.feedback_routes.insert((spec.transport, spec.ssrc), index);
        if let Some(rtx) = rtx_ssrc {
            self.feedback_routes.insert((spec.transport, rtx), index);
        }
        self.subscribers.entry(spec.transport).or_default();
        if let Some(p) = self.producers[producer].as_mut() {
            p.consumers.push(index);
        }
        self.review_consumer(now, index, out);
        Ok(())
    }

    pub fn remove_consumer(&mut self, id: ConsumerId) -> Result<(), RouterError> {
        let index = self.consumer_index.remove(&id).ok_or(RouterError::UnknownConsumer)?;
        let consumer = self.consumers[index].take().ok_or(RouterError::UnknownConsumer)?;
        self.feedback_routes.retain(|_, c| *c != index);
        if let Some(p) = self.producers[consumer.producer].as_mut() {
            p.consumers.retain(|&c| c != index);
        }
        if !self.consumers.iter().flatten().any(|c| c.transport == consumer.transport) {
            self.subscribers.remove(&consumer.transport);
        }
        Ok(())
    }

    /// Removes everything a transport published or subscribed (participant left).
    pub fn remove_transport(&mut self, transport: TransportId) {
        let producers: Vec<_> =
            self.producers.iter().flatten().filter(|p| p.transport == transport).map(|p| p.id).collect();
        for id in producers {
            let _ = self.remove_producer(id);
        }
        let consumers: Vec<_> =
            self.consumers.iter().flatten().filter(|c| c.transport == transport).map(|c| c.id).collect();
        for id in consumers {
            let _ = self.remove_consumer(id);
        }
        self.subscribers.remove(&transport);
        self.publishers.remove(&transport);
    }

    /// Pauses (off screen / unsubscribed) or resumes a consumer; resuming asks for a keyframe.
    pub fn set_consumer_paused(
        &mut self,
        now: Instant,
        id: ConsumerId,
        paused: bool,
        out: &mut impl RouterOutput,
    ) -> Result<(), RouterError> {
        let index = *self.consumer_index.get(&id).ok_or(RouterError::UnknownConsumer)?;
        let c = self.consumers[index].as_mut().ok_or(RouterError::UnknownConsumer)?;
        if c.paused != paused {
            c.paused = paused;
            c.needs_switch = true;
            let transport = c.transport;
            self.review_transport(now, transport, out);
        }
        Ok(())
    }

    /// A subscriber's transport can carry media now (its DTLS handshake finished). Video that
    /// its consumers "sent" before was dropped unencrypted, keyframe included, so each video
    /// consumer starts again from a fresh keyframe instead of waiting for the receiver's PLI.
    pub fn transport_ready(&mut self, now: Instant, transport: TransportId, out: &mut impl RouterOutput) {
        let mut any = false;
        for c in self.consumers.iter_mut().flatten().filter(|c| c.transport == transport) {
            if self.producers[c.producer].as_ref().is_some_and(|p| p.kind != MediaKind::Audio) {
                c.needs_switch = true;
                any = true;
            }
        }
        if any {
            self.review_transport(now, transport, out);
        }
    }

    /// Changes the largest picture height a consumer wants (its rendered size).
    pub fn set_consumer_max_height(
        &mut self,
        now: Instant,
        id: ConsumerId,
        max_height: u16,
        out: &mut impl RouterOutput,
    ) -> Result<(), RouterError> {
        let index = *self.consumer_index.get(&id).ok_or(RouterError::UnknownConsumer)?;
        let c = self.consumers[index].as_mut().ok_or(RouterError::UnknownConsumer)?;
        c.max_height = max_height;
        self.review_consumer(now, index, out);
        Ok(())
    }

    /// Points a consumer at another producer (e.g. "show the active speaker"); the subscriber
    /// keeps the same SSRC and a continuous sequence.
    pub fn repoint_consumer(
        &mut self,
        now: Instant,
        id: ConsumerId,
        producer: ProducerId,
        out: &mut impl RouterOutput,
    ) -> Result<(), RouterError> {
        let index = *self.consumer_index.get(&id).ok_or(RouterError::UnknownConsumer)?;
        let new = *self.producer_index.get(&producer).ok_or(RouterError::UnknownProducer)?;
        let c = self.consumers[index].as_mut().ok_or(RouterError::UnknownConsumer)?;
        let old = c.producer;
        if old == new {
            return Ok(());
        }
        c.producer = new;
        c.needs_switch = true;
        c.current_layer = None;
        c.target_layer = None;
        c.remap = match (&c.numbering, self.producers[new].as_ref()) {
            (Some(n), Some(p)) => Remap::between(&p.codecs, &p.extensions, n).map(Box::new),
            _ => None,
        };
        if let Some(p) = self.producers[old].as_mut() {
            p.consumers.retain(|&x| x != index);
        }
        if let Some(p) = self.producers[new].as_mut() {
            p.consumers.push(index);
        }
        self.review_consumer(now, index, out);
        Ok(())
    }

    /// Tells the router how the subscriber numbered payload types and header extensions in the
    /// m-section this consumer feeds; forwarded packets are translated when numbers differ.
    pub fn set_consumer_numbering(&mut self, id: ConsumerId, numbering: Numbering) -> Result<(), RouterError> {
        let index = *self.consumer_index.get(&id).ok_or(RouterError::UnknownConsumer)?;
        let c = self.consumers[index].as_mut().ok_or(RouterError::UnknownConsumer)?;
        c.remap = self.producers[c.producer]
            .as_ref()
            .and_then(|p| Remap::between(&p.codecs, &p.extensions, &numbering))
            .map(Box::new);
        c.numbering = Some(numbering);
        Ok(())
    }

    /// Sets a subscriber's bandwidth estimate from outside (e.g. a QUIC transport's own
    /// congestion controller) and re-chooses its layers.
    pub fn set_subscriber_bandwidth(
        &mut self,
        now: Instant,
        transport: TransportId,
        bps: u64,
        out: &mut impl RouterOutput,
    ) {
        self.subscribers.entry(transport).or_default().remb_bps = Some(bps);
        self.review_transport(now, transport, out);
    }

    /// When [`Self::poll`] next has work: an RTCP report, an upstream NACK or the periodic
    /// layer review; `None` for a router without producers and consumers.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.producer_index.is_empty() && self.consumer_index.is_empty() {
            return None;
        }
        let reports = self.next_report.map(|at| match self.last_report_scan {
            Some(scan) => at.max(scan + REPORT_SCAN),
            None => at,
        });
        let review = match self.consumer_index.is_empty() {
            true => None,
            false => self.last_layer_review.map(|at| at + self.config.layer_timeout / 4),
        };
        [reports, self.next_nack, review].into_iter().flatten().min()
    }

    /// Timers: periodic layer review (layers starting/stopping) and
    /// RTCP sender/receiver reports.
    pub fn poll(&mut self, now: Instant, out: &mut impl RouterOutput) {
        self.send_reports(now, out);
        self.send_upstream_nacks(now, out);
        let due =
            self.last_layer_review.is_none_or(|at| now.saturating_duration_since(at) >= self.config.layer_timeout / 4);
        if due {
            self.last_layer_review = Some(now);
            for index in 0..self.consumers.len() {
                if self.consumers[index].is_some() {
                    self.review_consumer(now, index, out);
                }
            }
        }
    }

    /// Routes one plaintext RTP packet from a publisher to its consumers.
    pub fn handle_rtp(&mut self, now: Instant, from: TransportId, packet: &[u8], out: &mut impl RouterOutput) {
        let header = match RtpHeader::parse(packet) {
            Ok(h) => h,
            Err(_) => return out.note(RouterNote::MalformedRtp),
        };
        let route = match self.routes.get(&(from, header.ssrc)) {
            Some(r) => *r,
            None => match self.bind_by_rid(from, packet, &header).or_else(|| self.bind_unsignalled(from, &header)) {
                Some(r) => r,
                None => return out.note(RouterNote::UnknownSsrc),
            },
        };
        if route.rtx {
            return self.handle_rtx(now, from, route, packet, &header, out);
        }
        let Some(producer) = self.producers[route.producer].as_mut() else { return out.note(RouterNote::UnknownSsrc) };
        let Some(codec) = producer.codecs[header.payload_type as usize] else {
            return out.note(RouterNote::MalformedRtp);
        };
        let extensions = if producer.extensions == ExtensionMap::default() {
            Extensions::default()
        } else {
            match Extensions::parse(packet, &header, &producer.extensions) {
                Ok(e) => e,
                Err(_) => return out.note(RouterNote::MalformedRtp),
            }
        };
        let layer = &mut producer.layers[route.layer as usize];
        let first_packet = layer.last_packet_at.is_none();
        layer.last_packet_at = Some(now);
        layer.meter.add(now, packet.len());
        layer.cache.insert(header.sequence, packet);
        layer.received.on_packet(now, header.sequence, header.timestamp, codec.clock_rate());
        layer.last_payload_type = Some(header.payload_type);
        if codec.is_video() && layer.upstream.on_packet(now, header.sequence) {
            let at = now + REORDER_GRACE;
            self.next_nack = Some(self.next_nack.map_or(at, |next| next.min(at)));
        }
        if first_packet {
            self.next_report = Some(now); // the publisher's first RR gets scheduled at the next scan
            for i in 0..producer.consumers.len() {
                let c = self.producers[route.producer].as_ref().map(|p| p.consumers[i]);
                if let Some(c) = c {
                    self.review_consumer(now, c, out);
                }
            }
        }
        let keyframe = codec.is_video() && is_keyframe(codec, header.payload(packet));
        let clock_rate = codec.clock_rate();
        let Router { producers, consumers, subscribers, config, server_ssrc, scratch, next_report, .. } = self;
        let Some(producer) = producers[route.producer].as_mut() else { return };
        for &c in &producer.consumers {
            let Some(consumer) = consumers[c].as_mut() else { continue };
            if consumer.paused {
                continue;
            }
            if producer.kind == MediaKind::Audio {
                if consumer.needs_switch || !consumer.out.started() {
                    consumer.out.switch_to(now, header.sequence, header.timestamp, clock_rate);
                    consumer.needs_switch = false;
                    consumer.current_layer = Some(0);
                }
            } else if consumer.target_layer == Some(route.layer)
                && (consumer.current_layer != Some(route.layer) || consumer.needs_switch)
            {
                if keyframe {
                    consumer.out.switch_to(now, header.sequence, header.timestamp, clock_rate);
                    consumer.current_layer = Some(route.layer);
                    consumer.needs_switch = false;
                    out.note(RouterNote::LayerSwitched);
                } else {
                    let layer = &mut producer.layers[route.layer as usize];
                    super::feedback::request_keyframe(
                        layer,
                        producer.transport,
                        *server_ssrc,
                        config,
                        now,
                        scratch,
                        out,
                    );
                }
            }
            if consumer.needs_switch || consumer.current_layer != Some(route.layer) {
                continue;
            }
            let Some((sequence, timestamp)) =
                consumer.out.map(now, header.sequence, header.timestamp, route.producer as u32, route.layer)
            else {
                continue;
            };
            let remap = consumer.remap.as_deref();
            let keeps_twcc = remap.is_none_or(|r| r.keeps_extension(producer.extensions.transport_cc));
            let transport_cc = match (extensions.transport_cc, subscribers.get_mut(&consumer.transport)) {
                (Some((_, offset)), Some(sub)) if keeps_twcc => Some((offset, sub.twcc.on_send(packet.len()))),
                _ => None,
            };
            let rewrite = RtpRewrite {
                ssrc: consumer.ssrc,
                sequence,
                timestamp,
                rtx: None,
                transport_cc,
                payload_type: remap.map(|r| r.payload_type(header.payload_type)),
                extension_ids: remap.map(Remap::extension_ids),
            };
            if consumer.sent.packets == 0 {
                *next_report = Some(now); // its first SR gets scheduled at the next scan
            }
            consumer.sent.on_sent(header.payload_len);
            out.forward_rtp(consumer.transport, packet, &rewrite);
        }
    }

    /// Learns the SSRC of a single-layer producer that was signalled without one (a SIP trunk's
    /// SDP names no SSRC) from its first packet in one of the producer's payload types.
    fn bind_unsignalled(&mut self, from: TransportId, header: &RtpHeader) -> Option<Route> {
        let index = self.producers.iter().position(|p| {
            p.as_ref().is_some_and(|p| {
                p.transport == from
                    && p.layers.len() == 1
                    && p.layers[0].ssrc.is_none()
                    && p.layers[0].spec.rid.is_none()
                    && p.codecs[header.payload_type as usize].is_some()
            })
        })?;
        let producer = self.producers[index].as_mut()?;
        producer.layers[0].ssrc = Some(header.ssrc);
        let route = Route { producer: index, layer: 0, rtx: false };
        self.routes.insert((from, header.ssrc), route);
        Some(route)
    }

    /// Learns the SSRC of a rid-identified layer from its first packet (mid + rid extensions),
    /// and that of its RTX stream from the repaired-rid extension (one RTX SSRC per layer).
    fn bind_by_rid(&mut self, from: TransportId, packet: &[u8], header: &RtpHeader) -> Option<Route> {
        for (index, producer) in self.producers.iter_mut().enumerate() {
            let Some(producer) = producer.as_mut() else { continue };
            if producer.transport != from || producer.extensions.rid == 0 {
                continue;
            }
            let Ok(ext) = Extensions::parse(packet, header, &producer.extensions) else { continue };
            if producer.mid.is_some() && ext.mid.is_some() && producer.mid != ext.mid {
                continue;
            }
            if let (None, Some(repaired)) = (ext.rid, ext.repaired_rid) {
                let Some(layer) =
                    producer.layers.iter().position(|l| l.spec.rid == Some(repaired) && l.spec.rtx_ssrc.is_none())
                else {
                    continue;
                };
                producer.layers[layer].spec.rtx_ssrc = Some(header.ssrc);
                let route = Route { producer: index, layer: layer as u8, rtx: true };
                self.routes.insert((from, header.ssrc), route);
                return Some(route);
            }
            let Some(rid) = ext.rid else { continue };
            let Some(layer) = producer.layers.iter().position(|l| l.spec.rid == Some(rid) && l.ssrc.is_none()) else {
                continue;
            };
            producer.layers[layer].ssrc = Some(header.ssrc);
            let route = Route { producer: index, layer: layer as u8, rtx: false };
            self.routes.insert((from, header.ssrc), route);
            return Some(route);
        }
        None
    }

    /// Re-chooses layers for every consumer of a subscriber (its budget is shared).
    pub(super) fn review_transport(&mut self, now: Instant, transport: TransportId, out: &mut impl RouterOutput) {
        for index in 0..self.consumers.len() {
            if self.consumers[index].as_ref().is_some_and(|c| c.transport == transport) {
                self.review_consumer(now, index, out);
            }
        }
    }

    /// Re-chooses one consumer's target layer and asks for a keyframe if it has to switch.
    pub(super) fn review_consumer(&mut self, now: Instant, index: usize, out: &mut impl RouterOutput) {
        let Some(c) = self.consumers[index].as_ref() else { return };
        let transport = c.transport;
        let video_consumers = self
            .consumers
            .iter()
            .flatten()
            .filter(|o| {
                o.transport == transport
                    && !o.paused
                    && self.producers[o.producer].as_ref().is_some_and(|p| p.kind != MediaKind::Audio)
            })
            .count()
            .max(1) as u64;
        let budget = self.subscribers.get(&transport).and_then(Subscriber::estimate_bps).map(|b| b / video_consumers);
        let Router { producers, consumers, config, server_ssrc, scratch, .. } = self;
        let Some(c) = consumers[index].as_mut() else { return };
        let Some(producer) = producers[c.producer].as_mut() else { return };
        let target = if producer.kind == MediaKind::Audio {
            Some(0)
        } else {
            choose_layer(&producer.layers, now, config.layer_timeout, c.max_height, budget)
        };
        if target.is_none() {
            return; // nothing active yet: keep what we have
        }
        c.target_layer = target;
        let waiting = c.current_layer != target || c.needs_switch;
        if waiting && !c.paused && producer.kind != MediaKind::Audio {
            let layer = &mut producer.layers[target.unwrap_or(0) as usize];
            super::feedback::request_keyframe(layer, producer.transport, *server_ssrc, config, now, scratch, out);
        }
    }
}

/// One audio layer with neither SSRC nor rid: a SIP trunk leg, whose SDP names no SSRC; the
/// router learns it from the first packet ([`Router::handle_rtp`]).
fn unsignalled_audio(spec: &ProducerSpec) -> bool {
    spec.kind == palaver_core::MediaKind::Audio && spec.layers.len() == 1
}
