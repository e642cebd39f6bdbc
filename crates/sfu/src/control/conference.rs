//! One conversation's media record ([`Conference`]): the router (and worker) it lives on, its
//! participants with their transport, producers and receive slots, and who spoke when. It
//! plans every participant's slots ([`Conference::plan_slots`], last-N through
//! [`super::slots::plan`]) and turns the plan into worker commands and `media.slots` frames.

use std::collections::HashMap;

use super::slots::{self, Candidate, SlotAction};
use crate::engine::{Command, MixOutputSpec, RouterId};
use crate::router::{ConsumerId, ConsumerSpec, Numbering, ProducerId, TransportId};
use palaver_core::MediaKind;
use palaver_core::protocol::MediaSlot;

/// The Opus payload type the mix uses when the receiver named none.
pub const DEFAULT_MIX_PT: u8 = palaver_core::protocol::quic::DEFAULT_OPUS_PT;
/// The height cap of a new consumer until the subscriber sends `media.subscribe`.
pub const DEFAULT_MAX_HEIGHT: u16 = 1080;

/// A track the participant publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Producer {
    pub id: ProducerId,
    pub kind: MediaKind,
}

/// A stream the server sends to this participant, and the remote track it carries now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Slot {
    /// The slot's name (an SDP `a=mid`, or a fixed QUIC name).
    pub mid: String,
    pub kind: MediaKind,
    /// The server's SSRC for this slot (kept across repoints).
    pub ssrc: u32,
    /// How the receiver numbers payload types and extensions on this slot (sent with every
    /// consumer that fills it); `None` = as the publisher numbers them.
    pub numbering: Option<Numbering>,
    pub consumer: Option<(ConsumerId, ProducerId)>,
}

/// One participant's media session in a conference.
#[derive(Debug)]
pub(super) struct Participant {
    pub transport: TransportId,
    pub producers: Vec<Producer>,
    pub slots: Vec<Slot>,
    /// Order of arrival (earlier arrivals are preferred among silent people).
    pub joined: u64,
}

/// The media record of one conversation: one router on one worker.
#[derive(Debug)]
pub struct Conference {
    pub(super) router: RouterId,
    pub(super) worker: usize,
    pub(super) participants: HashMap<String, Participant>,
    next_join: u64,
    /// When each participant last was among the active speakers (a counter, higher = later).
    pub(super) spoke: HashMap<String, u64>,
    speaker_round: u64,
}

/// Worker commands and `media.slots` frames (participant, slots) that carry out a slot plan.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub commands: Vec<Command>,
    pub frames: Vec<(String, Vec<MediaSlot>)>,
}

impl Conference {
    pub(super) fn new(router: RouterId, worker: usize) -> Self {
        Self { router, worker, participants: HashMap::new(), next_join: 0, spoke: HashMap::new(), speaker_round: 0 }
    }

    /// The router this conference lives on.
    pub fn router(&self) -> RouterId {
        self.router
    }

    /// The transport a participant's media uses now.
    pub fn transport_of(&self, participant: &str) -> Option<TransportId> {
        self.participants.get(participant).map(|p| p.transport)
    }

    /// The index of the worker that owns the router.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Adds a participant as the latest arrival.
    pub(super) fn admit(&mut self, name: &str, transport: TransportId, producers: Vec<Producer>, slots: Vec<Slot>) {
        self.next_join += 1;
        let participant = Participant { transport, producers, slots, joined: self.next_join };
        self.participants.insert(name.to_owned(), participant);
    }

    /// The participant's name of each transport in `ids` that belongs to this conference.
    pub(super) fn names_of(&self, ids: &[Option<TransportId>]) -> Vec<String> {
        let name_of = |t: TransportId| self.participants.iter().find(|(_, p)| p.transport == t).map(|(n, _)| n);
        ids.iter().flatten().filter_map(|t| name_of(*t).cloned()).collect()
    }

    /// Recent speakers (most active first) move to the front of everyone's camera slots.
    pub(super) fn note_speakers(&mut self, names: &[String]) {
        self.speaker_round += 1;
        for (rank, name) in names.iter().enumerate() {
            self.spoke.insert(name.clone(), self.speaker_round * 16 + (15 - rank.min(15) as u64));
        }
    }

    /// Plans every participant's slots (see [`slots::plan`]) and updates the record of them.
    /// Candidates: cameras of recent speakers first, then by arrival; only the screen of
    /// `sharing`; every audio track. A frame goes to each participant whose video slots
    /// changed, and always to `fresh` (just joined). `next_id` numbers new consumers.
    pub(super) fn plan_slots(&mut self, sharing: Option<&str>, fresh: Option<&str>, next_id: &mut u32) -> Plan {
        let mut owners: Vec<(&str, &Participant)> = self.participants.iter().map(|(n, p)| (n.as_str(), p)).collect();
        owners.sort_by_key(|(name, p)| (std::cmp::Reverse(self.spoke.get(*name).copied().unwrap_or(0)), p.joined));
        let mut candidates: Vec<(String, ProducerId, MediaKind)> = Vec::new();
        for (name, p) in &owners {
            for producer in &p.producers {
                if producer.kind != MediaKind::Screen || sharing == Some(*name) {
                    candidates.push(((*name).to_owned(), producer.id, producer.kind));
                }
            }
        }
        let owner_of = |producer: ProducerId| candidates.iter().find(|c| c.1 == producer).map(|c| c.0.clone());
        let view: Vec<Candidate> = candidates
            .iter()
            .map(|(owner, producer, kind)| Candidate { owner, producer: *producer, kind: *kind })
            .collect();
        let mut plan = Plan::default();
        let router = self.router;
        let mut names: Vec<String> = self.participants.keys().cloned().collect();
        names.sort();
        for name in names {
            let Some(participant) = self.participants.get_mut(&name) else { continue };
            let current: Vec<(MediaKind, Option<ProducerId>)> =
                participant.slots.iter().map(|s| (s.kind, s.consumer.map(|c| c.1))).collect();
            let actions = slots::plan(&name, &current, &view);
            let video_changed = actions.iter().any(|a| {
                let (SlotAction::Fill { slot, .. } | SlotAction::Repoint { slot, .. } | SlotAction::Empty { slot }) =
                    *a;
                participant.slots[slot].kind != MediaKind::Audio
            });
            for action in actions {
                apply_action(router, participant, action, next_id, &mut plan.commands);
            }
            if video_changed || fresh == Some(name.as_str()) {
                let frame = participant
                    .slots
                    .iter()
                    // The mix's audio slot is not listed in `media.slots`.
                    .filter(|s| s.kind.is_visual())
                    .map(|s| MediaSlot {
                        mid: s.mid.clone(),
                        kind: s.kind,
                        participant_id: s.consumer.and_then(|(_, producer)| owner_of(producer)),
                    })
                    .collect();
                plan.frames.push((name, frame));
            }
        }
        plan
    }
}

/// The commands of one slot change of `participant` (a new consumer also gets the slot's
/// numbering), recorded in its slot.
fn apply_action(
    router: RouterId,
    participant: &mut Participant,
    action: SlotAction,
    next_id: &mut u32,
    commands: &mut Vec<Command>,
) {
    match action {
        SlotAction::Fill { slot, producer } => {
            *next_id += 1;
            let consumer = ConsumerId(*next_id);
            let s = &mut participant.slots[slot];
            s.consumer = Some((consumer, producer));
            let spec = ConsumerSpec {
                id: consumer,
                transport: participant.transport,
                producer,
                ssrc: s.ssrc,
                rtx: None,
                paused: false,
                max_height: DEFAULT_MAX_HEIGHT,
            };
            commands.push(Command::AddConsumer { router, spec });
            if let Some(numbering) = s.numbering.clone() {
                commands.push(Command::SetConsumerNumbering { router, consumer, numbering });
            }
        }
        SlotAction::Repoint { slot, producer } => {
            let s = &mut participant.slots[slot];
            if let Some((consumer, _)) = s.consumer {
                s.consumer = Some((consumer, producer));
                commands.push(Command::RepointConsumer { router, consumer, producer });
            }
        }
        SlotAction::Empty { slot } => {
            if let Some((consumer, _)) = participant.slots[slot].consumer.take() {
                commands.push(Command::RemoveConsumer { router, consumer });
            }
        }
    }
}

/// The command that makes the conference mix flow to a participant: on its first audio
/// receive slot (that slot's SSRC), with the Opus payload type `payload_type`. `None` when it
/// receives no audio.
pub(super) fn mix_output(
    router: RouterId,
    transport: TransportId,
    slots: &[Slot],
    payload_type: u8,
) -> Option<Command> {
    let slot = slots.iter().find(|s| s.kind == MediaKind::Audio)?;
    let output = MixOutputSpec { ssrc: slot.ssrc, payload_type };
    Some(Command::SetMixOutput { router, transport, output: Some(output) })
}

#[cfg(test)]
mod tests;
