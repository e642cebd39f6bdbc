//! Tests of [`Conference::plan_slots`]: a conference's slot plan as worker commands and
//! `media.slots` frames — who fills which slot, screen slots only for the active share, recent
//! speakers first, a leaver's slots repointed — and of the mix output's slot.

use super::*;
use palaver_core::MediaKind;

/// Participant `n` (1-based) publishes camera `n*10+1` and screen `n*10+2`; its slots are
/// camera mid "1", screen mid "2", then `extra` more camera slots (mids "3", …).
fn participant(n: u32, extra: usize) -> Participant {
    let mut slots = vec![slot("1", MediaKind::Video, n * 100 + 1), slot("2", MediaKind::Screen, n * 100 + 2)];
    for i in 0..extra {
        slots.push(slot(&(3 + i).to_string(), MediaKind::Video, n * 100 + 3 + i as u32));
    }
    Participant {
        transport: TransportId(n),
        producers: vec![
            Producer { id: ProducerId(n * 10 + 1), kind: MediaKind::Video },
            Producer { id: ProducerId(n * 10 + 2), kind: MediaKind::Screen },
        ],
        slots,
        joined: u64::from(n),
    }
}

fn slot(mid: &str, kind: MediaKind, ssrc: u32) -> Slot {
    Slot { mid: mid.to_owned(), kind, ssrc, numbering: None, consumer: None }
}

fn conference(people: Vec<(&str, Participant)>) -> Conference {
    let mut conference = Conference::new(RouterId(1), 0);
    conference.participants = people.into_iter().map(|(name, p)| (name.to_owned(), p)).collect();
    conference
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
    let mut r = conference(vec![("a", participant(1, 1)), ("b", participant(2, 1)), ("c", participant(3, 1))]);
    let mut next_id = 100;
    let plan = r.plan_slots(None, Some("c"), &mut next_id);
    let adds = plan.commands.iter().filter(|c| matches!(c, Command::AddConsumer { .. })).count();
    assert_eq!(adds, 6, "two camera consumers per participant, no screen consumer");
    assert_eq!(next_id, 106);
    // Earlier arrivals first: a sees b on its first camera slot, c on the next.
    assert_eq!(shown(frame(&plan, "a").unwrap()), [entry("1", Some("b")), entry("2", None), entry("3", Some("c"))]);
    assert_eq!(shown(frame(&plan, "c").unwrap()), [entry("1", Some("a")), entry("2", None), entry("3", Some("b"))]);
    assert_eq!(frame(&plan, "b").unwrap()[1].kind, MediaKind::Screen);
    // Planning again changes nothing and tells nobody but a fresh participant.
    let again = r.plan_slots(None, Some("b"), &mut next_id);
    assert!(again.commands.is_empty());
    assert_eq!(again.frames.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["b"]);
}

#[test]
fn only_video_and_screen_slots_are_listed_in_media_slots() {
    let mut a = participant(1, 0);
    a.slots.insert(0, slot("0", MediaKind::Audio, 100));
    let mut r = conference(vec![("a", a), ("b", participant(2, 0))]);
    let mut next_id = 100;
    let plan = r.plan_slots(None, Some("a"), &mut next_id);
    let kinds: Vec<MediaKind> = frame(&plan, "a").unwrap().iter().map(|s| s.kind).collect();
    assert_eq!(kinds, [MediaKind::Video, MediaKind::Screen]);
}

#[test]
fn only_the_active_share_fills_screen_slots() {
    let mut r = conference(vec![("a", participant(1, 0)), ("b", participant(2, 0)), ("c", participant(3, 0))]);
    let mut next_id = 100;
    r.plan_slots(None, None, &mut next_id);
    let plan = r.plan_slots(Some("b"), None, &mut next_id);
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
    let plan = r.plan_slots(None, None, &mut next_id);
    let removed = plan.commands.iter().filter(|c| matches!(c, Command::RemoveConsumer { .. })).count();
    assert_eq!(removed, 2);
    assert_eq!(shown(frame(&plan, "c").unwrap())[1], entry("2", None));
}

#[test]
fn a_recent_speaker_moves_into_view_and_a_leaver_is_replaced_in_place() {
    // Four people, one camera slot each (mid "1"): each sees one of the three others.
    let mut r = conference(vec![
        ("a", participant(1, 0)),
        ("b", participant(2, 0)),
        ("c", participant(3, 0)),
        ("d", participant(4, 0)),
    ]);
    let mut next_id = 100;
    let plan = r.plan_slots(None, None, &mut next_id);
    assert_eq!(shown(frame(&plan, "a").unwrap())[0], entry("1", Some("b")));
    // d speaks: everyone else's camera slot is repointed to d (same consumer, same SSRC).
    r.spoke.insert("d".into(), 5);
    let plan = r.plan_slots(None, None, &mut next_id);
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
    let plan = r.plan_slots(None, None, &mut next_id);
    assert_eq!(plan.commands.len(), 3);
    assert!(plan.commands.iter().all(|c| matches!(c, Command::RepointConsumer { .. })));
    assert_eq!(shown(frame(&plan, "a").unwrap())[0], entry("1", Some("b")));
    assert_eq!(shown(frame(&plan, "b").unwrap())[0], entry("1", Some("a")));
}

#[test]
fn the_first_audio_slot_carries_the_mix() {
    let slots = [slot("v", MediaKind::Video, 1), slot("a", MediaKind::Audio, 2), slot("b", MediaKind::Audio, 3)];
    let command = mix_output(RouterId(4), TransportId(5), &slots, 109);
    let expected = Some(MixOutputSpec { ssrc: 2, payload_type: 109 });
    assert!(matches!(command, Some(Command::SetMixOutput { router: RouterId(4), transport: TransportId(5), output })
        if output == expected));
    assert!(mix_output(RouterId(4), TransportId(5), &slots[..1], 109).is_none());
}

#[test]
fn a_filled_slot_with_its_own_numbering_sends_it_with_the_consumer() {
    let mut a = participant(1, 0);
    let numbering = Numbering { codecs: vec![(100, crate::rtp::Codec::Vp8)], extensions: Default::default() };
    a.slots[0].numbering = Some(numbering.clone());
    let mut r = conference(vec![("a", a), ("b", participant(2, 0))]);
    let mut next_id = 0;
    let plan = r.plan_slots(None, None, &mut next_id);
    let a_consumer = r.participants["a"].slots[0].consumer.expect("a sees b").0;
    let numbered: Vec<_> = plan
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::SetConsumerNumbering { consumer, numbering, .. } => Some((*consumer, numbering.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(numbered, [(a_consumer, numbering)], "only a's slot has a numbering of its own");
}
