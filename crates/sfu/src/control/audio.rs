//! Per-participant audio of a conversation (Call Automation): who is muted or on hold, which
//! server-leg streams are addressed to whom (`playTo`, music on hold), and the per-source
//! tap of an unmixed recording. The state is kept by participant name (or raw id), not by
//! transport, so it survives a participant's new media session: each join re-applies what
//! concerns the newcomer ([`Conferences::join`] calls `reapply_audio`). Everything becomes
//! [`MixAudio`] commands for the conference's worker.
//!
//! Targets are ACS raw ids: a participant answers to a target when its media name is the
//! target or ends in `/{target}` (call participants and legs are named `{call id}/{raw id}`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Conferences, Output};
use crate::engine::{Command, MixAudio, SourceTap};
use crate::router::TransportId;

/// Does the participant named `name` answer to `target` (a raw id or a name)?
pub fn answers_to(name: &str, target: &str) -> bool {
    name == target || name.split_once('/').is_some_and(|(_, raw)| raw == target)
}

#[derive(Debug)]
struct Audience {
    /// The server leg that sends the stream.
    source: String,
    ssrc: u32,
    /// Who hears it (raw ids or names).
    targets: Vec<String>,
}

/// One conversation's per-participant audio state (see the module docs).
#[derive(Debug, Default)]
pub(super) struct ConversationAudio {
    muted: HashSet<String>,
    held: HashSet<String>,
    audiences: Vec<Audience>,
    /// The leg that owns the source tap, and the tap.
    tap: Option<(String, Arc<SourceTap>)>,
}

impl Conferences {
    /// Mutes (or unmutes) `target` in the conversation's mix: nobody hears it; it still hears.
    pub fn set_muted(&mut self, conversation: &str, target: &str, muted: bool) -> Output {
        let state = self.audio.entry(conversation.to_owned()).or_default();
        let changed = if muted { state.muted.insert(target.to_owned()) } else { state.muted.remove(target) };
        if !changed {
            return Output::default();
        }
        self.each_answering(conversation, target, |transport| MixAudio::Muted { transport, muted })
    }

    /// Holds (or unholds) `target`: it leaves the mix and hears only streams addressed to it.
    pub fn set_held(&mut self, conversation: &str, target: &str, held: bool) -> Output {
        let state = self.audio.entry(conversation.to_owned()).or_default();
        let changed = if held { state.held.insert(target.to_owned()) } else { state.held.remove(target) };
        if !changed {
            return Output::default();
        }
        self.each_answering(conversation, target, |transport| MixAudio::Held { transport, held })
    }

    /// The RTP that leg `source` sends under `ssrc` is heard only by `targets` (raw ids or
    /// names; participants joining later included); `None` ends that stream.
    pub fn set_audience(
        &mut self,
        conversation: &str,
        source: &str,
        ssrc: u32,
        targets: Option<Vec<String>>,
    ) -> Output {
        let state = self.audio.entry(conversation.to_owned()).or_default();
        state.audiences.retain(|a| !(a.source == source && a.ssrc == ssrc));
        let listeners = targets.as_ref().map(|targets| self.transports_answering(conversation, targets));
        if let Some(targets) = targets {
            let state = self.audio.entry(conversation.to_owned()).or_default();
            state.audiences.push(Audience { source: source.to_owned(), ssrc, targets });
        }
        let mut out = Output::default();
        let Some(conference) = self.conferences.get(conversation) else { return out };
        let Some(transport) = conference.transport_of(source) else { return out };
        let (router, worker) = (conference.router, conference.worker);
        let audio = MixAudio::Audience { transport, ssrc, listeners };
        out.commands.push((worker, Command::SetMixAudio { router, audio }));
        out
    }

    /// Starts (or with `None` stops) the conversation's per-source tap for leg `owner`: every
    /// unmuted participant's decoded audio goes into `tap` each tick, tagged by transport
    /// ([`Self::participant_of_transport`] names it).
    ///
    /// One tap per conversation: a newer one replaces it, and only its owner stops it.
    pub fn set_source_tap(&mut self, conversation: &str, owner: &str, tap: Option<Arc<SourceTap>>) -> Output {
        let state = self.audio.entry(conversation.to_owned()).or_default();
        if tap.is_none() && state.tap.as_ref().is_some_and(|(current, _)| current != owner) {
            return Output::default();
        }
        state.tap = tap.clone().map(|tap| (owner.to_owned(), tap));
        let mut out = Output::default();
        if let Some(conference) = self.conferences.get(conversation) {
            let audio = MixAudio::SourceTap { tap };
            out.commands.push((conference.worker, Command::SetMixAudio { router: conference.router, audio }));
        }
        out
    }

    /// The participant whose media uses `transport` now, in `conversation`.
    pub fn participant_of_transport(&self, conversation: &str, transport: TransportId) -> Option<String> {
        let conference = self.conferences.get(conversation)?;
        conference.participants.iter().find(|(_, p)| p.transport == transport).map(|(name, _)| name.clone())
    }

    /// Is `participant` on hold (Call Automation's hold)?
    pub(super) fn is_held(&self, conversation: &str, participant: &str) -> bool {
        self.audio.get(conversation).is_some_and(|s| s.held.iter().any(|t| answers_to(participant, t)))
    }

    /// After `participant` joined on `transport`: its mute and hold, and the streams
    /// addressed to it, apply to the new transport.
    pub(super) fn reapply_audio(&self, conversation: &str, participant: &str, transport: TransportId) -> Output {
        let mut out = Output::default();
        let (Some(state), Some(conference)) = (self.audio.get(conversation), self.conferences.get(conversation)) else {
            return out;
        };
        let (router, worker) = (conference.router, conference.worker);
        let mut push = |audio| out.commands.push((worker, Command::SetMixAudio { router, audio }));
        if state.muted.iter().any(|t| answers_to(participant, t)) {
            push(MixAudio::Muted { transport, muted: true });
        }
        if state.held.iter().any(|t| answers_to(participant, t)) {
            push(MixAudio::Held { transport, held: true });
        }
        for audience in &state.audiences {
            let Some(source) = conference.transport_of(&audience.source) else { continue };
            if audience.targets.iter().any(|t| answers_to(participant, t)) {
                let listeners = Some(self.transports_answering(conversation, &audience.targets));
                push(MixAudio::Audience { transport: source, ssrc: audience.ssrc, listeners });
            }
        }
        out
    }

    /// `participant` left: the streams it sent and the tap it owned end.
    pub(super) fn forget_audio(&mut self, conversation: &str, participant: &str, conference_closed: bool) -> Output {
        let mut out = Output::default();
        if conference_closed {
            self.audio.remove(conversation);
            return out;
        }
        let Some(state) = self.audio.get_mut(conversation) else { return out };
        state.audiences.retain(|a| a.source != participant);
        if state.tap.as_ref().is_some_and(|(owner, _)| owner == participant) {
            state.tap = None;
            if let Some(conference) = self.conferences.get(conversation) {
                let audio = MixAudio::SourceTap { tap: None };
                out.commands.push((conference.worker, Command::SetMixAudio { router: conference.router, audio }));
            }
        }
        out
    }

    fn transports_answering(&self, conversation: &str, targets: &[String]) -> Vec<TransportId> {
        let Some(conference) = self.conferences.get(conversation) else { return Vec::new() };
        conference
            .participants
            .iter()
            .filter(|(name, _)| targets.iter().any(|t| answers_to(name, t)))
            .map(|(_, p)| p.transport)
            .collect()
    }

    fn each_answering(&self, conversation: &str, target: &str, audio: impl Fn(TransportId) -> MixAudio) -> Output {
        let mut out = Output::default();
        let Some(conference) = self.conferences.get(conversation) else { return out };
        for (name, p) in &conference.participants {
            if answers_to(name, target) {
                let command = Command::SetMixAudio { router: conference.router, audio: audio(p.transport) };
                out.commands.push((conference.worker, command));
            }
        }
        out
    }
}

/// The per-conversation state map [`Conferences`] keeps.
pub(super) type AudioStates = HashMap<String, ConversationAudio>;

#[cfg(test)]
mod tests;
