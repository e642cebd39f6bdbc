//! A QUIC participant's `media.attach` as an [`Attach`]: its media becomes a direct transport
//! (plain RTP through the connection's datagram path, no ICE/DTLS/SRTP), a producer per
//! declared track group (audio feeds the mixer; rid layers of one kind are one simulcast
//! producer, sizes from [`super::layers`]), one audio receive slot that carries its mix, and
//! the camera/screen receive slots it asks for, which the last-N planner fills exactly like a
//! browser's. [`attached_tracks`] is the `media.attached` answer.

use std::sync::Arc;

use rand::Rng;

use super::layers::{DeclaredLayer, layer_specs};
use super::{Attach, ReceiveSlot, TransportKind};
use crate::net::DirectLink;
use crate::router::{Numbering, ProducerId, ProducerSpec, TransportId};
use crate::rtp::{Codec, ExtensionMap};
use palaver_core::MediaKind;
use palaver_core::protocol::{MediaReceive, MediaTrack, SentTrackGroup, quic};

/// Interprets a checked `media.attach` (`groups` from `group_sent_tracks(tracks)`): the
/// participant sends `groups` (ignored unless `may_send`) through `link` and receives the mix
/// plus the slots `receive` asks for. Slot SSRCs come from `rng`.
pub fn direct_attach(
    link: Arc<DirectLink>,
    tracks: &[MediaTrack],
    groups: &[SentTrackGroup<'_>],
    receive: MediaReceive,
    may_send: bool,
    rng: &mut impl Rng,
) -> Attach {
    quic_attach(TransportKind::Direct { link }, tracks, groups, receive, may_send, rng)
}

/// [`direct_attach`] over any QUIC media carrier: `transport` is the connection's datagram
/// link ([`TransportKind::Direct`]) or SRTP over the worker's socket ([`TransportKind::IceSrtp`]).
pub fn quic_attach(
    transport: TransportKind,
    tracks: &[MediaTrack],
    groups: &[SentTrackGroup<'_>],
    receive: MediaReceive,
    may_send: bool,
    rng: &mut impl Rng,
) -> Attach {
    let publish = if may_send { groups.iter().map(published_track).collect() } else { Vec::new() };
    let declared_pt =
        |audio: bool| tracks.iter().find(|t| (t.kind == MediaKind::Audio) == audio).map(|t| t.payload_type);
    let audio_pt = declared_pt(true).unwrap_or(quic::DEFAULT_OPUS_PT);
    let vp8_pt = declared_pt(false).unwrap_or(quic::DEFAULT_VP8_PT);
    // Forwarded video carries the client's VP8 payload type and no header extensions.
    let video_numbering = Numbering { codecs: vec![(vp8_pt, Codec::Vp8)], extensions: ExtensionMap::default() };
    let mut slot = |mid: String, kind| {
        let numbering = (kind != MediaKind::Audio).then(|| video_numbering.clone());
        ReceiveSlot { mid, kind, ssrc: rng.gen_range(1..u32::MAX), numbering }
    };
    let mut slots = vec![slot(quic::AUDIO_MID.to_owned(), MediaKind::Audio)];
    for i in 0..receive.video {
        slots.push(slot(quic::video_mid(usize::from(i)), MediaKind::Video));
    }
    if receive.screen {
        slots.push(slot(quic::SCREEN_MID.to_owned(), MediaKind::Screen));
    }
    Attach {
        transport,
        publish,
        receive: slots,
        mix_payload_type: audio_pt,
        // A participant with video slots is told what they carry, like a browser after its offer.
        announce_slots: !receive.is_audio_only(),
    }
}

/// What the server sends on each receive slot of a direct attach, as listed in
/// `media.attached`: the mix (Opus, the client's payload type) and VP8 on video slots.
pub fn attached_tracks(attach: &Attach) -> Vec<MediaTrack> {
    let vp8_pt = |s: &ReceiveSlot| {
        let codecs = s.numbering.as_ref().map(|n| n.codecs.as_slice()).unwrap_or_default();
        codecs.first().map(|(pt, _)| *pt).unwrap_or(quic::DEFAULT_VP8_PT)
    };
    attach
        .receive
        .iter()
        .map(|s| {
            let payload_type = if s.kind.is_visual() { vp8_pt(s) } else { attach.mix_payload_type };
            // The mix is not a named slot (`media.slots` lists video slots only).
            let mid = s.kind.is_visual().then(|| s.mid.clone());
            MediaTrack { mid, ..MediaTrack::new(s.kind, s.ssrc, payload_type) }
        })
        .collect()
}

/// A producer for one declared track group: one layer per track, identified by its SSRC.
fn published_track(group: &SentTrackGroup<'_>) -> ProducerSpec {
    let kind = group.kind;
    let codec = if kind == MediaKind::Audio { Codec::Opus } else { Codec::Vp8 };
    let declared: Vec<DeclaredLayer<'_>> = group
        .layers
        .iter()
        .map(|t| DeclaredLayer {
            rid: t.rid.as_deref(),
            ssrc: Some(t.ssrc),
            rtx_ssrc: None,
            width: t.width,
            height: t.height,
        })
        .collect();
    let extensions = match kind {
        MediaKind::Audio => ExtensionMap { audio_level: quic::AUDIO_LEVEL_EXTENSION_ID, ..ExtensionMap::default() },
        _ => ExtensionMap::default(),
    };
    ProducerSpec {
        id: ProducerId(0),
        transport: TransportId(0),
        kind,
        mid: None,
        codecs: vec![(group.layers[0].payload_type, codec)],
        layers: layer_specs(kind, &declared),
        extensions,
    }
}

#[cfg(test)]
mod tests;
