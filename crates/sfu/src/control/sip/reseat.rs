//! Moving a phone leg into another conversation (Call Automation's `moveParticipants` of a
//! phone caller into an agent's group call or room): [`Conferences::reseat_sip`] re-seats the
//! leg's trunk transport in the target conversation's conference without touching its
//! network path, so the trunk needs no re-INVITE.
//!
//! A trunk leg's RTP reaches the worker that hosts its conference, on that worker's socket.
//! When the target conference lives on the same worker (or does not exist yet, and is then
//! created there), the engine moves the transport between routers
//! ([`Command::MoveTransport`]): the socket address, the SRTP contexts (and their rollover
//! counters), a DTLS-SRTP association, the RFC 4733 detector and the trunk's reception
//! figures stay; only its producer, its mix output and its consumers are rebuilt in the new
//! router (the mix reaches the phone under a new SSRC, as after a hold). When the target
//! lives on another worker, the leg's local address would change: nothing is changed and
//! [`Reseat::OtherWorker`] names the address the caller must offer the trunk in a re-INVITE.
//!
//! The leg's [`TrunkLeg`] record (what was agreed, palaver's SDP, whether the trunk holds)
//! moves with it, re-keyed to the target conversation and participant: a later hold or
//! resume from the trunk changes the moved leg in place, as before the move, instead of
//! building a new transport (which would lose a DTLS-SRTP association and the mix's SSRC).
//! A leg the trunk holds stays held in its new conference.

use std::net::SocketAddr;

use super::legs::{TrunkLeg, change_in_place};
use super::{TrunkPolicy, negotiate, sip_attach};
use crate::control::{Conferences, Joined, Output};
use crate::engine::{Command, MixAudio, MixOutputSpec};
use crate::mixer::AudioCodec;
use crate::webrtc::sdp::Description;

/// Where a re-seated trunk leg is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reseat {
    /// The transport moved to the target conference on the same worker: same local address,
    /// no re-INVITE.
    Moved(Joined),
    /// The target conference is hosted by another worker, whose socket is `address`: the
    /// leg was left where it is; re-offer the trunk that address (re-INVITE) and join again.
    OtherWorker { address: SocketAddr },
}

/// Why a trunk leg cannot be re-seated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReseatError {
    #[error("`{0}` has no media in the conversation it leaves")]
    NotSeated(String),
    #[error("the leg is already in that conversation")]
    SameConversation,
    #[error("the trunk's SDP: {0}")]
    Sdp(String),
}

impl Conferences {
    /// Re-seats `participant`'s trunk transport of conversation `from` as `to_participant`
    /// in conversation `to` (see the module docs). `peer` is the trunk's last SDP and
    /// `policy` its preference, from which the leg's producer and mix output are built again
    /// exactly as when it joined (same codec and payload types).
    pub fn reseat_sip(
        &mut self,
        from: &str,
        participant: &str,
        to: &str,
        to_participant: &str,
        peer: &str,
        policy: &TrunkPolicy,
    ) -> Result<(Reseat, Output), ReseatError> {
        if from == to {
            return Err(ReseatError::SameConversation);
        }
        let description = Description::parse(peer).map_err(|e| ReseatError::Sdp(e.to_string()))?;
        let media = negotiate(&description, policy).map_err(|e| ReseatError::Sdp(e.to_string()))?;
        let source = self.conferences.get(from);
        let (transport, worker) = source
            .and_then(|c| Some((c.transport_of(participant)?, c.worker)))
            .ok_or_else(|| ReseatError::NotSeated(participant.to_owned()))?;
        if let Some(target) = self.conferences.get(to)
            && target.worker != worker
        {
            return Ok((Reseat::OtherWorker { address: self.config.candidates[target.worker] }, Output::default()));
        }
        let mut out = Output::default();
        let router = self.conference_on(to, worker, &mut out);
        out.extend(self.release(to, to_participant, false));
        // The leg leaves `from` like any leaver (the others' slots repointed, its audio
        // settings forgotten, the router closed when it was the last), except that its
        // transport moves instead of being removed (before a `CloseRouter` would drop it).
        self.sip_offers.remove(&(from.to_owned(), participant.to_owned()));
        let carried = self.trunk_legs.remove(&(from.to_owned(), participant.to_owned()));
        let left = self.release(from, participant, true);
        out.commands.extend(left.commands.into_iter().map(|(w, command)| match command {
            Command::RemoveTransport { transport: gone } if gone == transport => {
                (w, Command::MoveTransport { transport, router })
            }
            other => (w, other),
        }));
        out.frames.extend(left.frames);
        out.speakers.extend(left.speakers);
        out.tones.extend(left.tones);
        let may_send = media.direction != "inactive";
        let (_, seating) = sip_attach(&media, may_send, None, &mut self.rng).split();
        let mix = MixOutputSpec {
            ssrc: seating.receive.first().map_or(0, |slot| slot.ssrc),
            payload_type: media.payload_type,
        };
        out.extend(self.seat(to, to_participant, transport, seating));
        let joined = Joined { worker, router, transport };
        if let Some(before) = carried {
            // Re-keyed: the next SDP of this media session changes the leg in place.
            let mut leg = TrunkLeg {
                joined,
                media: media.clone(),
                answer: before.answer,
                output: mix,
                early: false,
                peer_holds: false,
                publishes: may_send,
            };
            let also_held = self.is_held(to, to_participant);
            out.extend(change_in_place(&mut leg, None, before.peer_holds, also_held));
            self.trunk_legs.insert((to.to_owned(), to_participant.to_owned()), leg);
        }
        if let Some(payload_type) = media.telephone_event.filter(|_| media.codec != AudioCodec::Opus) {
            // Tones the new conversation's participants send reach the trunk as RFC 4733.
            let clock_rate = media.telephone_event_clock;
            let audio = MixAudio::TelephoneEventsOut { transport, payload_type: Some(payload_type), clock_rate };
            out.commands.push((worker, Command::SetMixAudio { router, audio }));
        }
        Ok((Reseat::Moved(joined), out))
    }
}

#[cfg(test)]
mod tests;
