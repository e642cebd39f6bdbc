//! Tests of `plan_slots` (mod.rs): a room's slot plan as worker commands and `media.slots`
//! frames — who fills which slot, screen slots only for the active share, recent speakers
//! first, and a leaver's slots repointed.

use super::super::{Participant, Plan, Producer, Room, Slot, plan_slots};
use palaver_core::protocol::{MediaSlot, SlotKind};
use palaver_sfu::engine::{Command, RouterId};
use palaver_sfu::router::{ProducerId, TrackKind, TransportId};
use std::collections::HashMap;

/// Participant `n` (1-based) publishes camera `n*10+1` and screen `n*10+2`; its slots are
/// camera mid "1", screen mid "2", then `extra` more camera slots (mids "3", …).
fn participant(n: u32, extra: usize) -> Participant {
    let mut slots = vec![slot("1", TrackKind::Video, n * 100 + 1), slot("2", TrackKind::Screen, n * 100 + 2)];
    for i in 0..extra {
        slots.push(slot(&(3 + i).to_string(), TrackKind::Video, n * 100 + 3 + i as u32));
    }
    Participant {
        transport: TransportId(n),
        producers: vec![
            Producer { id: ProducerId(n * 10 + 1), kind: TrackKind::Video },
            Producer { id: ProducerId(n * 10 + 2), kind: TrackKind::Screen },
        ],
        slots,
        joined: u64::from(n),
    }
}

fn slot(mid: &str, kind: TrackKind, ssrc: u32) -> Slot {
    Slot { mid: mid.to_owned(), kind, ssrc, consumer: None }
}

fn room(people: Vec<(&str, Participant)>) -> Room {
    let participants = people.into_iter().map(|(name, p)| (name.to_owned(), p)).collect();
    Room { id: RouterId(1), worker: 0, participants, next_join: 9, spoke: HashMap::new(), speaker_round: 0 }
}

fn frame<'a>(plan: &'a Plan, who: &str) -> Option<&'a Vec<MediaSlot>> {
    plan.frames.iter().find(|(name, _)| name == who).map(|(_, slots)| slots)
}

/// `(mid, participant)` of the filled slots in a frame.
fn shown(slots: &[MediaSlot]) -> Vec<(String, Option<String>)> {
    slots.iter().map(|s| (s.mid.clone(), s.participant_id.clone())).collect()
}

fn entry(mid: &str, who: Option<&str>) -> (String, Option<String>) {
    (mid.to_owned(), who.map(str::to_owned))
}

#[test]
fn three_people_each_see_both_others_cameras_and_no_idle_screen() {
    let mut r = room(vec![("a", participant(1, 1)), ("b", participant(2, 1)), ("c", participant(3, 1))]);
    let mut next_id = 100;
    let plan = plan_slots(&mut r, None, Some("c"), &mut next_id);
    let adds = plan.commands.iter().filter(|c| matches!(c, Command::AddConsumer { .. })).count();
    assert_eq!(adds, 6, "two camera consumers per participant, no screen consumer");
    assert_eq!(next_id, 106);
    // Earlier arrivals first: a sees b on its first camera slot, c on the next.
    assert_eq!(shown(frame(&plan, "a").unwrap()), [entry("1", Some("b")), entry("2", None), entry("3", Some("c"))]);
    assert_eq!(shown(frame(&plan, "c").unwrap()), [entry("1", Some("a")), entry("2", None), entry("3", Some("b"))]);
    assert_eq!(frame(&plan, "b").unwrap()[1].kind, SlotKind::Screen);
    // Planning again changes nothing and tells nobody but a fresh participant.
    let again = plan_slots(&mut r, None, Some("b"), &mut next_id);
    assert!(again.commands.is_empty());
    assert_eq!(again.frames.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["b"]);
}

#[test]
fn only_the_active_share_fills_screen_slots() {
    let mut r = room(vec![("a", participant(1, 0)), ("b", participant(2, 0)), ("c", participant(3, 0))]);
    let mut next_id = 100;
    plan_slots(&mut r, None, None, &mut next_id);
    let plan = plan_slots(&mut r, Some("b"), None, &mut next_id);
    let screen_adds: Vec<_> = plan
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::AddConsumer { spec, .. } => Some((spec.transport, spec.producer)),
            _ => None,
        })
        .collect();
    assert_eq!(screen_adds.len(), 2);
    assert!(screen_adds.iter().all(|(t, p)| *p == ProducerId(22) && *t != TransportId(2)), "{screen_adds:?}");
    assert_eq!(shown(frame(&plan, "a").unwrap())[1], entry("2", Some("b")));
    assert!(frame(&plan, "b").is_none(), "the sharer's own slots did not change");
    // Sharing stops: the screen slots are emptied.
    let plan = plan_slots(&mut r, None, None, &mut next_id);
    let removed = plan.commands.iter().filter(|c| matches!(c, Command::RemoveConsumer { .. })).count();
    assert_eq!(removed, 2);
    assert_eq!(shown(frame(&plan, "c").unwrap())[1], entry("2", None));
}

#[test]
fn a_recent_speaker_moves_into_view_and_a_leaver_is_replaced_in_place() {
    // Four people, one camera slot each (mid "1"): each sees one of the three others.
    let mut r = room(vec![
        ("a", participant(1, 0)),
        ("b", participant(2, 0)),
        ("c", participant(3, 0)),
        ("d", participant(4, 0)),
    ]);
    let mut next_id = 100;
    let plan = plan_slots(&mut r, None, None, &mut next_id);
    assert_eq!(shown(frame(&plan, "a").unwrap())[0], entry("1", Some("b")));
    // d speaks: everyone else's camera slot is repointed to d (same consumer, same SSRC).
    r.spoke.insert("d".into(), 5);
    let plan = plan_slots(&mut r, None, None, &mut next_id);
    let repoints: Vec<_> = plan
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::RepointConsumer { producer, .. } => Some(*producer),
            _ => None,
        })
        .collect();
    assert_eq!(repoints, [ProducerId(41); 3]);
    assert!(plan.commands.iter().all(|c| matches!(c, Command::RepointConsumer { .. })));
    assert_eq!(shown(frame(&plan, "a").unwrap())[0], entry("1", Some("d")));
    // d itself still sees b (the earliest silent arrival).
    assert!(frame(&plan, "d").is_none());
    // d leaves: the slots that showed d are repointed to the next wanted camera (b; a for b).
    r.participants.remove("d");
    let plan = plan_slots(&mut r, None, None, &mut next_id);
    assert_eq!(plan.commands.len(), 3);
    assert!(plan.commands.iter().all(|c| matches!(c, Command::RepointConsumer { .. })));
    assert_eq!(shown(frame(&plan, "a").unwrap())[0], entry("1", Some("b")));
    assert_eq!(shown(frame(&plan, "b").unwrap())[0], entry("1", Some("a")));
}
