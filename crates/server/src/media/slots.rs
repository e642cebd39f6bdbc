//! Receive slots (a last-N design): which remote track each m-section a participant receives
//! on carries. The client offers a fixed set of receive slots (camera slots and one screen
//! slot); the server fills each with a different remote track, keeps a slot on its track while
//! that track is still wanted, and points a slot at another track (same SSRC, continuous
//! sequence) when its track leaves or falls out of the preferred set. Pure planning: `mod.rs`
//! turns a plan into worker commands and `media.slots` frames.

use palaver_core::protocol::SlotKind;
use palaver_sfu::router::{ProducerId, TrackKind};
use palaver_sfu::webrtc::sdp::{MediaKind, Offer};

/// The kind of the offer's m-section `index`: audio sections are audio; the first video
/// section is the camera, the second the screen share, and any further video section (the
/// reference client offers them receive-only) is one more camera slot.
pub(super) fn section_kind(offer: &Offer, index: usize) -> TrackKind {
    if offer.media[index].kind == MediaKind::Audio {
        return TrackKind::Audio;
    }
    let earlier_video = offer.media[..index].iter().filter(|m| m.kind == MediaKind::Video).count();
    if earlier_video == 1 { TrackKind::Screen } else { TrackKind::Video }
}

/// The `media.slots` kind of a slot; audio slots are not listed there.
pub(super) fn slot_kind(kind: TrackKind) -> Option<SlotKind> {
    match kind {
        TrackKind::Audio => None,
        TrackKind::Video => Some(SlotKind::Video),
        TrackKind::Screen => Some(SlotKind::Screen),
    }
}

/// The slot kinds [`plan`] fills with remote tracks. Audio is not among them: the room mixer
/// sends each participant one mixed stream on its first audio slot (see `mod.rs`).
pub(super) const PLANNED_KINDS: [TrackKind; 2] = [TrackKind::Video, TrackKind::Screen];

/// A published track that may fill other participants' slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Candidate<'a> {
    pub owner: &'a str,
    pub producer: ProducerId,
    pub kind: TrackKind,
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
pub(super) fn plan(me: &str, current: &[(TrackKind, Option<ProducerId>)], candidates: &[Candidate]) -> Vec<SlotAction> {
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
mod tests {
    use super::*;
    use TrackKind::{Audio, Screen, Video};

    fn p(n: u32) -> ProducerId {
        ProducerId(n)
    }

    fn c(owner: &str, n: u32, kind: TrackKind) -> Candidate<'_> {
        Candidate { owner, producer: p(n), kind }
    }

    #[test]
    fn each_camera_slot_gets_a_different_remote_camera() {
        let slots = [(Video, None), (Screen, None), (Video, None), (Video, None)];
        let candidates = [c("a", 1, Video), c("b", 2, Video), c("c", 3, Video), c("b", 4, Screen)];
        let actions = plan("a", &slots, &candidates);
        assert_eq!(
            actions,
            vec![
                SlotAction::Fill { slot: 0, producer: p(2) },
                SlotAction::Fill { slot: 2, producer: p(3) },
                SlotAction::Fill { slot: 1, producer: p(4) },
            ]
        );
    }

    #[test]
    fn slots_keep_their_track_and_a_leaver_is_replaced_in_the_same_slot() {
        // Slot 0 shows b, slot 1 shows c; c left, d is the next most wanted.
        let slots = [(Video, Some(p(2))), (Video, Some(p(3)))];
        let candidates = [c("b", 2, Video), c("d", 5, Video), c("e", 6, Video)];
        assert_eq!(plan("a", &slots, &candidates), vec![SlotAction::Repoint { slot: 1, producer: p(5) }]);
        // Nothing changes when the slots already show the most wanted tracks.
        let slots = [(Video, Some(p(5))), (Video, Some(p(2)))];
        assert_eq!(plan("a", &slots, &candidates), vec![]);
    }

    #[test]
    fn a_slot_with_nothing_left_to_show_is_emptied() {
        let slots = [(Video, Some(p(2))), (Video, Some(p(3))), (Screen, Some(p(4)))];
        let candidates = [c("b", 2, Video)];
        assert_eq!(plan("a", &slots, &candidates), vec![SlotAction::Empty { slot: 1 }, SlotAction::Empty { slot: 2 }]);
    }

    #[test]
    fn a_newly_preferred_track_takes_the_slot_of_the_least_wanted_one() {
        // Two camera slots, three remote cameras: f starts speaking and moves to the front.
        let slots = [(Video, Some(p(2))), (Video, Some(p(3)))];
        let candidates = [c("f", 7, Video), c("b", 2, Video), c("c", 3, Video)];
        assert_eq!(plan("a", &slots, &candidates), vec![SlotAction::Repoint { slot: 1, producer: p(7) }]);
    }

    #[test]
    fn own_tracks_and_duplicates_are_never_shown() {
        let slots = [(Video, Some(p(2))), (Video, Some(p(2))), (Audio, None)];
        let candidates = [c("a", 1, Video), c("b", 2, Video), c("a", 9, Audio)];
        assert_eq!(plan("a", &slots, &candidates), vec![SlotAction::Empty { slot: 1 }]);
    }

    #[test]
    fn audio_slots_are_left_to_the_mixer() {
        let slots = [(Audio, None), (Video, None), (Audio, None)];
        let candidates = [c("b", 2, Audio), c("b", 3, Video), c("c", 4, Audio)];
        assert_eq!(plan("a", &slots, &candidates), vec![SlotAction::Fill { slot: 1, producer: p(3) }]);
    }

    #[test]
    fn the_screen_slot_is_the_second_video_section() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 AA:BB\r\n\
                   a=ice-ufrag:u\r\na=ice-pwd:p\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=rtpmap:96 VP8/90000\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=recvonly\r\na=rtpmap:96 VP8/90000\r\n";
        let offer = Offer::parse(sdp).expect("offer parses");
        let kinds: Vec<TrackKind> = (0..offer.media.len()).map(|i| section_kind(&offer, i)).collect();
        assert_eq!(kinds, vec![Audio, Video, Screen, Video]);
        assert_eq!(slot_kind(Screen), Some(SlotKind::Screen));
        assert_eq!(slot_kind(Audio), None);
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod plan_tests;
