//! One conversation's packet routing (mediasoup's vocabulary): producers are incoming tracks (audio,
//! video, screen; simulcast layers by rid or SSRC), consumers are one subscriber's copy of a
//! producer. The [`Router`] is sans-IO: it is fed plaintext RTP/RTCP with the current time and
//! answers through a [`RouterOutput`] with what to send where, so the engine owns all
//! buffers, crypto and sockets.
//!
//! Per consumer it rewrites SSRC/sequence/timestamp (seamless layer and publisher switches),
//! picks a simulcast layer from the requested size and a bandwidth estimate (REMB or TWCC),
//! switches only on a keyframe of the target layer, relays PLI/FIR to the publisher with a
//! rate limit, answers NACKs from a per-layer packet cache (RTX when negotiated), pauses
//! unsubscribed tracks, and sends and answers RTCP reports. Audio levels are not judged here:
//! active speakers come from the mixer (see `engine::RouterMix`).

mod bandwidth;
mod feedback;
mod ids;
mod layers;
mod packet_cache;
mod remap;
mod reports;
mod rewriter;
#[allow(clippy::module_inception)]
mod router;
mod upstream;

pub use bandwidth::TwccEstimator;
pub use ids::{ConsumerId, FastMap, ProducerId, TransportId};
pub use packet_cache::PacketCache;
pub use remap::{Numbering, Remap, rewrite_extension_ids};
pub use reports::{CNAME, WallClock};
pub use router::{Router, RouterError};

use std::time::Duration;

use crate::rtp::{Codec, ExtensionMap, RtpError, ShortId, packet};
use palaver_core::MediaKind;

/// One simulcast encoding of a producer (a non-simulcast track has exactly one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpec {
    /// The `a=simulcast` rid, if the publisher identifies layers by rid.
    pub rid: Option<ShortId>,
    /// The SSRC, if signalled (`a=ssrc-group:SIM`); rid-only layers learn it from packets.
    pub ssrc: Option<u32>,
    /// The publisher's RTX SSRC for this layer, if signalled.
    pub rtx_ssrc: Option<u32>,
    pub width: u16,
    pub height: u16,
    /// Expected bitrate, used for layer choice until the layer's own rate is measured.
    pub max_bitrate_bps: u64,
}

/// Everything the router needs to accept a publisher's track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSpec {
    pub id: ProducerId,
    pub transport: TransportId,
    pub kind: MediaKind,
    pub mid: Option<ShortId>,
    /// Payload type to codec mapping negotiated with the publisher.
    pub codecs: Vec<(u8, Codec)>,
    /// Layers, any order (sorted by height internally). Audio has one.
    pub layers: Vec<LayerSpec>,
    pub extensions: ExtensionMap,
}

impl ProducerSpec {
    /// A single-layer Opus producer identified by `ssrc`, with the RFC 6464 audio-level
    /// extension under id `audio_level` (0 = not negotiated).
    pub fn opus(id: ProducerId, transport: TransportId, payload_type: u8, ssrc: u32, audio_level: u8) -> Self {
        Self {
            id,
            transport,
            kind: MediaKind::Audio,
            mid: None,
            codecs: vec![(payload_type, Codec::Opus)],
            layers: vec![LayerSpec {
                rid: None,
                ssrc: Some(ssrc),
                rtx_ssrc: None,
                width: 0,
                height: 0,
                max_bitrate_bps: 0,
            }],
            extensions: ExtensionMap { audio_level, ..ExtensionMap::default() },
        }
    }
}

/// One subscriber's copy of a producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    pub id: ConsumerId,
    pub transport: TransportId,
    pub producer: ProducerId,
    /// SSRC the subscriber sees (stable across layer and publisher switches).
    pub ssrc: u32,
    /// RTX SSRC and payload type, if the subscriber negotiated RTX.
    pub rtx: Option<(u32, u8)>,
    pub paused: bool,
    /// Largest picture height the subscriber wants (its rendered size); `u16::MAX` = any.
    pub max_height: u16,
}

/// Tuning knobs; the defaults are what production uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterConfig {
    /// Minimum time between keyframe requests sent to one publisher layer.
    pub keyframe_request_interval: Duration,
    /// Packet cache slots per video layer (answers NACKs for about this many packets).
    pub video_cache_packets: usize,
    /// A layer with no packet for this long is considered stopped.
    pub layer_timeout: Duration,
    /// Maximum packets resent for one NACK packet.
    pub max_nack_resends: usize,
    /// Mean interval of the SRs sent per consumer stream and the RRs sent per publisher
    /// (each randomized to 0.5–1.5× of it).
    pub report_interval: Duration,
    /// The wall clock the SRs' NTP timestamps follow; `None` starts NTP time at the Unix epoch
    /// on the router's first report (RTTs are right either way).
    pub wall_clock: Option<WallClock>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            keyframe_request_interval: Duration::from_millis(300),
            video_cache_packets: 512,
            layer_timeout: Duration::from_secs(2),
            max_nack_resends: 64,
            report_interval: Duration::from_secs(1),
            wall_clock: None,
        }
    }
}

/// How a forwarded copy differs from the packet as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpRewrite<'a> {
    pub ssrc: u32,
    pub sequence: u16,
    pub timestamp: u32,
    /// Wrap as RTX (RFC 4588): (rtx ssrc, rtx payload type, rtx sequence number); the
    /// original sequence number (`sequence`) goes in the first two payload bytes.
    pub rtx: Option<(u32, u8, u16)>,
    /// Transport-wide sequence number to write at this byte offset of the header extension.
    pub transport_cc: Option<(usize, u16)>,
    /// The subscriber's payload type when it numbered the codec differently (not for RTX).
    pub payload_type: Option<u8>,
    /// Publisher → subscriber extension ids when they differ ([`Remap`]; 0 strips).
    pub extension_ids: Option<&'a [u8; 256]>,
}

/// Countable things the router saw (the worker turns them into atomic counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterNote {
    UnknownSsrc,
    MalformedRtp,
    MalformedRtcp,
    NackReceived,
    NackResent,
    NackMissed,
    KeyframeRequestSent,
    KeyframeRequestSuppressed,
    LayerSwitched,
    /// A subscriber's RTCP report block about one of its consumers' streams.
    ReceptionReport {
        /// Increase of the cumulative lost count since this stream's previous block.
        lost_increase: u32,
        /// RTCP 8-bit fixed-point fraction lost (x / 256).
        fraction_lost: u8,
        /// Interarrival jitter converted from RTP clock units (48 kHz audio, 90 kHz video).
        jitter_ns: u64,
    },
    /// A round trip measured from a report block echoing one of the router's SRs.
    RoundTrip {
        rtt_ns: u64,
    },
}

/// The router's way out: the worker implements this over its send batch and crypto contexts.
pub trait RouterOutput {
    /// Send `packet` (plaintext RTP as received from the publisher) to `to`, rewritten.
    fn forward_rtp(&mut self, to: TransportId, packet: &[u8], rewrite: &RtpRewrite<'_>);
    /// Send a plaintext RTCP packet the router composed to `to`.
    fn send_rtcp(&mut self, to: TransportId, packet: &[u8]);
    fn note(&mut self, note: RouterNote);
}

/// Copies `src` into `dst` applying `rewrite`; returns the length written. Works for every
/// valid RTP packet; an RTX copy drops padding and inserts the original sequence number.
pub fn apply_rewrite(src: &[u8], dst: &mut [u8], rewrite: &RtpRewrite<'_>) -> Result<usize, RtpError> {
    let header = packet::RtpHeader::parse(src)?;
    let len = match rewrite.rtx {
        None => {
            let dst = dst.get_mut(..src.len()).ok_or(RtpError::BufferTooSmall)?;
            dst.copy_from_slice(src);
            packet::set_sequence(dst, rewrite.sequence);
            packet::set_ssrc(dst, rewrite.ssrc);
            src.len()
        }
        Some((rtx_ssrc, rtx_pt, rtx_seq)) => {
            let head = header.payload_offset;
            let len = head + 2 + header.payload_len;
            let out = dst.get_mut(..len).ok_or(RtpError::BufferTooSmall)?;
            out[..head].copy_from_slice(&src[..head]);
            out[0] &= !0x20; // no padding in the RTX copy
            out[head..head + 2].copy_from_slice(&rewrite.sequence.to_be_bytes());
            out[head + 2..].copy_from_slice(header.payload(src));
            packet::set_sequence(out, rtx_seq);
            packet::set_ssrc(out, rtx_ssrc);
            packet::set_payload_type(out, rtx_pt);
            len
        }
    };
    packet::set_timestamp(dst, rewrite.timestamp);
    if let (Some(pt), None) = (rewrite.payload_type, rewrite.rtx) {
        packet::set_payload_type(dst, pt);
    }
    if let Some(table) = rewrite.extension_ids {
        rewrite_extension_ids(&mut dst[..len], &header, table);
    }
    if let Some((offset, seq)) = rewrite.transport_cc
        && offset + 2 <= header.payload_offset
    {
        crate::rtp::extension::set_transport_cc(dst, offset, seq);
    }
    Ok(len)
}

#[cfg(test)]
mod tests;
