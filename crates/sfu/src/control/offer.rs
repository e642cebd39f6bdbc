//! A browser's SDP offer as an [`Attach`]: one producer per m-section the client sends on
//! (simulcast by rid or by SSRC group, sizes from [`super::layers`]), one receive slot per
//! m-section it receives on (numbered the way the client numbered that section), the Opus
//! payload type of the mix, and the tracks the answer announces on each section. The answer
//! itself is written once the transport is placed ([`super::Conferences::join_offer`]).

use rand::Rng;

use super::layers::{DeclaredLayer, layer_specs};
use super::{Attach, ReceiveSlot, TransportKind};
use crate::router::{Numbering, ProducerId, ProducerSpec, TransportId};
use crate::rtp::{Codec, ShortId};
use crate::webrtc::sdp::{AnswerTrack, Offer, OfferedMedia};
use palaver_core::MediaKind;

/// Length of the server's ICE ufrag and password (RFC 8445: at least 4 and 22 characters).
pub(super) const ICE_UFRAG_LEN: usize = 8;
pub(super) const ICE_PWD_LEN: usize = 24;

/// What an offer asks of the media plane, and what the answer says per m-section.
#[derive(Debug)]
pub struct OfferAttach {
    pub attach: Attach,
    /// Per offered m-section (same order): the track the server sends there, if any.
    pub answer_tracks: Vec<Option<AnswerTrack>>,
}

/// The kind of the offer's m-section `index`: audio sections are audio; the first video
/// section is the camera, the second the screen share, and any further video section (the
/// reference client offers them receive-only) is one more camera slot.
pub fn section_kind(offer: &Offer, index: usize) -> MediaKind {
    if offer.media[index].kind == Some(MediaKind::Audio) {
        return MediaKind::Audio;
    }
    let earlier_video = offer.media[..index].iter().filter(|m| m.kind == Some(MediaKind::Video)).count();
    if earlier_video == 1 { MediaKind::Screen } else { MediaKind::Video }
}

/// Interprets `offer`. `may_send`: false for receive-only participants (their sent sections
/// get no producer). ICE credentials and slot SSRCs come from `rng`.
pub fn offer_attach(offer: &Offer, may_send: bool, rng: &mut impl Rng) -> OfferAttach {
    let transport = TransportKind::WebRtc {
        ice_ufrag: random_token(rng, ICE_UFRAG_LEN),
        ice_pwd: random_token(rng, ICE_PWD_LEN),
        remote_fingerprint: offer.fingerprint.clone(),
    };
    let mut publish = Vec::new();
    let mut receive = Vec::new();
    let mut answer_tracks = Vec::new();
    // The Opus payload type of the first audio section the client receives on (the mix).
    let mut mix_pt = None;
    for (index, m) in offer.media.iter().enumerate() {
        let codecs = accepted_codecs(m);
        if codecs.is_empty() {
            answer_tracks.push(None);
            continue;
        }
        let kind = section_kind(offer, index);
        if may_send && m.client_sends() {
            publish.extend(published_track(m, kind, codecs.clone()));
        }
        if !m.client_receives() {
            answer_tracks.push(None);
            continue;
        }
        if kind == MediaKind::Audio && mix_pt.is_none() {
            mix_pt = Some(codecs.iter().find(|(_, c)| *c == Codec::Opus).map(|(pt, _)| *pt));
        }
        let ssrc = rng.gen_range(1..u32::MAX);
        let name = match kind {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Screen => "screen",
        };
        answer_tracks.push(Some(AnswerTrack {
            ssrc,
            stream_id: format!("palaver-{name}-{index}"),
            track_id: format!("palaver-{name}-{index}-{ssrc}"),
        }));
        let numbering = Some(Numbering { codecs, extensions: m.extension_map() });
        receive.push(ReceiveSlot { mid: m.mid.clone(), kind, ssrc, numbering });
    }
    let mix_payload_type = mix_pt.flatten().unwrap_or(super::conference::DEFAULT_MIX_PT);
    // A browser is always told what its video slots carry after an offer.
    let attach = Attach { transport, publish, receive, mix_payload_type, announce_slots: true };
    OfferAttach { attach, answer_tracks }
}

/// The section's codecs palaver accepts, by payload type.
fn accepted_codecs(m: &OfferedMedia) -> Vec<(u8, Codec)> {
    m.accepted_codecs().iter().filter_map(|c| Some((c.payload_type, c.codec()?))).collect()
}

/// The producer of a section the client sends on: rid layers, else the SSRC (with its RTX
/// SSRC from the first FID group); `None` when the section names neither.
fn published_track(m: &OfferedMedia, kind: MediaKind, codecs: Vec<(u8, Codec)>) -> Option<ProducerSpec> {
    let declared: Vec<DeclaredLayer<'_>> = if m.send_rids.is_empty() {
        let primary = m.fid_groups.first().map(|g| g.0).or(m.ssrcs.first().copied())?;
        let rtx_ssrc = m.fid_groups.first().map(|g| g.1);
        vec![DeclaredLayer { ssrc: Some(primary), rtx_ssrc, ..DeclaredLayer::default() }]
    } else {
        let by_rid =
            m.send_rids.iter().map(|rid| DeclaredLayer { rid: Some(rid.as_str()), ..DeclaredLayer::default() });
        by_rid.collect()
    };
    Some(ProducerSpec {
        id: ProducerId(0),
        transport: TransportId(0),
        kind,
        mid: ShortId::new(m.mid.as_bytes()),
        codecs,
        layers: layer_specs(kind, &declared),
        extensions: m.extension_map(),
    })
}

/// `len` random letters and digits (ICE credentials).
pub(super) fn random_token(rng: &mut impl Rng, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests;
