//! Tests of the last-N slot planner: which remote track each slot shows after a change.

use super::*;
use MediaKind::{Audio, Screen, Video};

fn p(n: u32) -> ProducerId {
    ProducerId(n)
}

fn c(owner: &str, n: u32, kind: MediaKind) -> Candidate<'_> {
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
