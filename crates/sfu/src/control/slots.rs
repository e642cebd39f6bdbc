//! Receive slots (a last-N design): which remote track each m-section a participant receives
//! on carries. The client offers a fixed set of receive slots (camera slots and one screen
//! slot); the server fills each with a different remote track, keeps a slot on its track while
//! that track is still wanted, and points a slot at another track (same SSRC, continuous
//! sequence) when its track leaves or falls out of the preferred set. Pure planning:
//! [`super::conference`] turns a plan into worker commands and `media.slots` frames.

use crate::router::ProducerId;
use palaver_core::MediaKind;

/// The slot kinds [`plan`] fills with remote tracks. Audio is not among them: the conference mixer
/// sends each participant one mixed stream on its first audio slot (see [`super::conference`]).
pub(super) const PLANNED_KINDS: [MediaKind; 2] = [MediaKind::Video, MediaKind::Screen];

/// A published track that may fill other participants' slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Candidate<'a> {
    pub owner: &'a str,
    pub producer: ProducerId,
    pub kind: MediaKind,
}

/// One change to one slot of a participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SlotAction {
    /// The empty slot gets a new consumer of `producer`.
    Fill { slot: usize, producer: ProducerId },
    /// The slot's consumer switches to `producer` (the subscriber keeps its SSRC and sequence).
    Repoint { slot: usize, producer: ProducerId },
    /// The slot's consumer is removed: there is nothing left to show in it.
    Empty { slot: usize },
}

/// Plans the slots of participant `me`. `current[i]` is slot `i`'s kind and the producer it
/// shows now; `candidates` are every published track in preference order (most wanted
/// first; `me`'s own tracks are skipped). For each kind with `n` slots the `n` most wanted
/// tracks are shown: a slot already showing one of them keeps it, the others are repointed
/// (or filled when empty), and slots left over are emptied.
pub(super) fn plan(me: &str, current: &[(MediaKind, Option<ProducerId>)], candidates: &[Candidate]) -> Vec<SlotAction> {
    let mut actions = Vec::new();
    for kind in PLANNED_KINDS {
        let slots: Vec<usize> = (0..current.len()).filter(|&i| current[i].0 == kind).collect();
        if slots.is_empty() {
            continue;
        }
        let mut wanted: Vec<ProducerId> = Vec::with_capacity(slots.len());
        for c in candidates.iter().filter(|c| c.kind == kind && c.owner != me) {
            if wanted.len() == slots.len() {
                break;
            }
            if !wanted.contains(&c.producer) {
                wanted.push(c.producer);
            }
        }
        // Slots that keep their track; a second slot showing the same track counts as stale.
        let mut kept: Vec<ProducerId> = Vec::new();
        let mut stale = Vec::new();
        let mut empty = Vec::new();
        for &slot in &slots {
            match current[slot].1 {
                Some(p) if wanted.contains(&p) && !kept.contains(&p) => kept.push(p),
                Some(_) => stale.push(slot),
                None => empty.push(slot),
            }
        }
        let mut missing = wanted.iter().copied().filter(|p| !kept.contains(p));
        for slot in stale {
            match missing.next() {
                Some(producer) => actions.push(SlotAction::Repoint { slot, producer }),
                None => actions.push(SlotAction::Empty { slot }),
            }
        }
        for (slot, producer) in empty.into_iter().zip(missing) {
            actions.push(SlotAction::Fill { slot, producer });
        }
    }
    actions
}

#[cfg(test)]
mod tests;
