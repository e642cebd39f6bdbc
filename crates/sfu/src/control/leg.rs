//! A server-side leg (Call Automation's player, recognizer, recorder and voice-bot stream)
//! as an [`Attach`]: a participant with no network peer whose plain RTP goes through a
//! [`DirectLink`] like a QUIC participant's. It publishes one Opus audio producer (what it
//! plays feeds the mixer, so everyone hears it), receives the conference mix (mix-minus: all
//! but itself) on one audio slot, and sends and receives RFC 4733 DTMF on
//! [`quic::TELEPHONE_EVENT_PT`]. The pacing, codecs and files live in the `palaver-legs`
//! crate; this is only the media plane's side.

use std::sync::Arc;

use rand::Rng;

use super::layers::{DeclaredLayer, layer_specs};
use super::{Attach, Conferences, Joined, Output, ReceiveSlot, TransportKind};
use crate::engine::Command;
use crate::net::DirectLink;
use crate::router::{ProducerId, ProducerSpec, TransportId};
use crate::rtp::{Codec, ExtensionMap};
use palaver_core::MediaKind;
use palaver_core::protocol::quic;

/// What the leg's sender must put in its RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegStreams {
    /// The SSRC of the leg's audio (and of its telephone-events).
    pub audio_ssrc: u32,
    pub opus_payload_type: u8,
    pub telephone_event_payload_type: u8,
    /// The SSRC the mix arrives under.
    pub mix_ssrc: u32,
}

/// The leg's attach: one Opus producer with a fixed SSRC, one audio receive slot for the mix.
pub fn leg_attach(link: Arc<DirectLink>, rng: &mut impl Rng) -> (Attach, LegStreams) {
    let streams = LegStreams {
        audio_ssrc: rng.gen_range(1..u32::MAX),
        opus_payload_type: quic::DEFAULT_OPUS_PT,
        telephone_event_payload_type: quic::TELEPHONE_EVENT_PT,
        mix_ssrc: rng.gen_range(1..u32::MAX),
    };
    let producer = ProducerSpec {
        id: ProducerId(0),
        transport: TransportId(0),
        kind: MediaKind::Audio,
        mid: None,
        codecs: vec![(streams.opus_payload_type, Codec::Opus)],
        layers: layer_specs(
            MediaKind::Audio,
            &[DeclaredLayer { ssrc: Some(streams.audio_ssrc), ..DeclaredLayer::default() }],
        ),
        // Levels come from the packet size (the mixer's fallback): the leg writes no extension.
        extensions: ExtensionMap::default(),
    };
    let slot = ReceiveSlot {
        mid: quic::AUDIO_MID.to_owned(),
        kind: MediaKind::Audio,
        ssrc: streams.mix_ssrc,
        numbering: None,
    };
    let attach = Attach {
        transport: TransportKind::Direct { link },
        publish: vec![producer],
        receive: vec![slot],
        mix_payload_type: streams.opus_payload_type,
        announce_slots: false,
    };
    (attach, streams)
}

impl Conferences {
    /// Seats a server-side leg in `conversation` under `participant` (replacing an earlier
    /// session of that name) through `link`; its tones are reported like a participant's.
    pub fn join_leg(
        &mut self,
        conversation: &str,
        participant: &str,
        link: Arc<DirectLink>,
    ) -> (Joined, LegStreams, Output) {
        let (attach, streams) = leg_attach(link, &mut self.rng);
        let (joined, mut out) = self.join(conversation, participant, attach);
        let command = Command::SetTelephoneEvent {
            transport: joined.transport,
            payload_type: Some(streams.telephone_event_payload_type),
        };
        out.commands.push((joined.worker, command));
        (joined, streams, out)
    }
}
