//! What the controller remembers of each joined trunk leg, so that a later SDP of the same
//! media session changes the leg **in place** instead of making a new transport:
//!
//! - **early media → answer**: a leg joined while its callee rings (palaver's 183 with SDP)
//!   is held and hears a ringback [`ToneLoop`] (or, waiting in a call queue or a meeting's
//!   lobby, the hold audio registered with [`Conferences::register_hold_audio`]); the 200 repeats the same SDP, and the same
//!   transport, SSRC and sequence numbers go on with the conversation;
//! - **hold → resume** (re-INVITE/UPDATE with `sendonly`/`inactive`, then `sendrecv`): the
//!   leg is held and its mix output paused, then restored. A DTLS-SRTP leg keeps its
//!   association and keys (RFC 5763 §6.7.1: a peer that keeps its fingerprint and `setup`
//!   role keeps the association and does not handshake again); an SDES leg keeps its keys.
//!
//! Anything that changes the transport — the address or port, the codec, the peer's SDES
//! key, its DTLS fingerprint or role — makes a new transport as before (a new DTLS handshake).

use std::collections::HashMap;
use std::sync::Arc;

use super::TrunkMedia;
use crate::control::{Conferences, ControlError, Joined, Output};
use crate::engine::early_media::{Ringback, ToneLoop};
use crate::engine::{Command, MixAudio, MixOutputSpec};

/// How a leg waiting for its callee sounds (the trunk's `ringback`, or the hold audio of
/// the queue or lobby it waits in).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EarlyMedia {
    /// The national ringback tone.
    Ringback(Ringback),
    /// Hold audio registered under this name ([`Conferences::register_hold_audio`]; the
    /// server names each configured file by its path).
    HoldAudio(String),
}

impl EarlyMedia {
    /// Reads the `early=ringback-<country>` or `early=audio:<name>` entry of a trunk's media
    /// names (see `TrunkPolicy::from_names`), `None` when there is none.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Option<Self> {
        names.iter().find_map(|n| {
            let n = n.as_ref();
            if let Some(name) = n.strip_prefix("early=audio:") {
                return Some(EarlyMedia::HoldAudio(name.to_owned()));
            }
            let country = n.strip_prefix("early=ringback-")?;
            Ringback::from_name(country).map(EarlyMedia::Ringback)
        })
    }

    /// The name [`Self::from_names`] reads.
    pub fn name(&self) -> String {
        match self {
            EarlyMedia::Ringback(tone) => format!("early=ringback-{}", tone.name()),
            EarlyMedia::HoldAudio(name) => format!("early=audio:{name}"),
        }
    }
}

impl Conferences {
    /// Makes `tone` (hold audio read from a file at start) playable as
    /// [`EarlyMedia::HoldAudio`]`(name)` to phone legs that wait in a queue or a lobby.
    pub fn register_hold_audio(&mut self, name: &str, tone: Arc<ToneLoop>) {
        self.tone_loops.audio.insert(name.to_owned(), tone);
    }
}

/// One joined trunk leg (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct TrunkLeg {
    pub joined: Joined,
    /// What was agreed last.
    pub media: TrunkMedia,
    /// The server's SDP for it (repeated, with the direction of the moment, when the leg
    /// changes in place).
    pub answer: String,
    /// The leg's mix output, paused while the peer holds.
    pub output: MixOutputSpec,
    /// Early media is playing to it.
    pub early: bool,
    /// The peer holds the call (`sendonly`/`inactive`).
    pub peer_holds: bool,
    /// The leg has its audio producer (it was not joined `inactive`).
    pub publishes: bool,
}

impl TrunkLeg {
    /// The new SDP `media` is the same media session: same address, codec, events and keys.
    pub fn continues_with(&self, media: &TrunkMedia) -> bool {
        let a = &self.media;
        (self.publishes || media.direction == "inactive")
            && a.remote == media.remote
            && a.codec == media.codec
            && a.payload_type == media.payload_type
            && a.telephone_event == media.telephone_event
            && a.crypto == media.crypto
            && a.dtls == media.dtls
    }
}

/// True when the peer's direction puts the call on hold.
pub(crate) fn peer_holds(direction: &str) -> bool {
    matches!(direction, "sendonly" | "inactive")
}

/// `sdp` with its direction attribute(s) replaced by `a=<direction>`.
pub(crate) fn with_direction(sdp: &str, direction: &str) -> String {
    let mut out = String::with_capacity(sdp.len() + 4);
    for line in sdp.split("\r\n").filter(|l| !l.is_empty()) {
        let line = match line {
            "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive" => format!("a={direction}"),
            other => other.to_owned(),
        };
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out
}

/// The commands that move `leg` from what it was to `early` / `peer_holds` (`also_held`:
/// Call Automation holds the participant too, so the mix's hold stays).
pub(crate) fn change_in_place(
    leg: &mut TrunkLeg,
    early: Option<Arc<ToneLoop>>,
    peer_holds: bool,
    also_held: bool,
) -> Output {
    let mut out = Output::default();
    let Joined { worker, router, transport } = leg.joined;
    let mut push = |command| out.commands.push((worker, command));
    let was_held = leg.early || leg.peer_holds;
    if leg.early && early.is_none() {
        push(Command::SetMixAudio { router, audio: MixAudio::EarlyMedia { transport, tone: None } });
    }
    let now_held = early.is_some() || peer_holds;
    if was_held != now_held {
        push(Command::SetMixAudio { router, audio: MixAudio::Held { transport, held: now_held || also_held } });
    }
    if leg.peer_holds != peer_holds {
        // Answered recvonly/inactive: nothing goes to the peer while it holds.
        let output = (!peer_holds).then_some(leg.output);
        push(Command::SetMixOutput { router, transport, output });
    }
    if !leg.early && early.is_some() {
        push(Command::SetMixAudio { router, audio: MixAudio::EarlyMedia { transport, tone: early.clone() } });
    }
    leg.early = early.is_some();
    leg.peer_holds = peer_holds;
    out
}

/// The encoded tone loops: ringbacks built once per tone on first use, hold audio
/// registered at start.
#[derive(Debug, Default)]
pub(crate) struct ToneLoops {
    loops: HashMap<Ringback, Arc<ToneLoop>>,
    audio: HashMap<String, Arc<ToneLoop>>,
}

impl ToneLoops {
    /// The loop of `early` (a ringback is built on first use; `None` if the encoder failed
    /// or no hold audio has that name).
    pub fn get(&mut self, early: &EarlyMedia) -> Option<Arc<ToneLoop>> {
        let tone = match early {
            EarlyMedia::HoldAudio(name) => return self.audio.get(name).cloned(),
            EarlyMedia::Ringback(tone) => *tone,
        };
        if let Some(found) = self.loops.get(&tone) {
            return Some(found.clone());
        }
        let built = Arc::new(ToneLoop::ringback(tone).ok()?);
        self.loops.insert(tone, built.clone());
        Some(built)
    }

    /// The loop of `early` when one is asked for; an error when it cannot be played (a leg
    /// joined without it would be heard by the conversation it waits for).
    pub fn resolve(&mut self, early: Option<&EarlyMedia>) -> Result<Option<Arc<ToneLoop>>, ControlError> {
        let Some(early) = early else { return Ok(None) };
        match self.get(early) {
            Some(tone) => Ok(Some(tone)),
            None => Err(ControlError::InvalidTracks(format!("early media `{}` is not available", early.name()))),
        }
    }
}
