//! Long random stories on virtual time: thousands of inputs (most of them out of order
//! or refused) from a small population of directory, external and queue-member users.
//! After every input the machine must be internally consistent, refusals must change
//! nothing, and every billed participant must be closed exactly once.

use super::*;
use std::collections::HashMap;

const USERS: &[&str] = &[
    "8:orgid:alice",
    "8:orgid:bob",
    "8:orgid:carol",
    "8:orgid:agent-1",
    "8:orgid:agent-2",
    "8:acs:res_ext-1",
    "8:acs:res_ext-2",
];
const TARGETS: &[&str] = &["28:orgid:support", "4:+14255550123", "8:gcch:gov", "8:teamsvisitor:v", "28:orgid:nope"];

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn user(&mut self) -> String {
        USERS[self.below(USERS.len())].to_string()
    }
    fn target(&mut self) -> String {
        if self.below(4) == 0 { TARGETS[self.below(TARGETS.len())].to_string() } else { self.user() }
    }
}

fn config() -> CallsConfig {
    CallsConfig {
        ring_timeout_secs: 20,
        max_participants: 5,
        queues: vec![CallQueueConfig {
            app_id: "support".into(),
            name: None,
            members: vec!["8:orgid:agent-1".into(), "8:orgid:agent-2".into()],
            member_ring_timeout_secs: 7,
            hold_audio: None,
        }],
        ..CallsConfig::default()
    }
}

fn run_story(seed: u64, steps: usize) -> (usize, usize, usize) {
    let mut rng = Rng(seed);
    let mut m = CallManager::new(config());
    let mut now = 0u64;
    let mut open: HashMap<(String, String), bool> = HashMap::new();
    let (mut accepted, mut refused, mut connects) = (0, 0, 0);
    for step in 0..steps {
        let call_id = format!("c{}", rng.below(6));
        // Mostly act as someone the call knows (rung or connected), sometimes as anyone.
        let snapshot = m.snapshot(&call_id);
        let pick = |rng: &mut Rng, ringing: bool| -> String {
            let known: Vec<String> = match &snapshot {
                Some(s) if ringing => s.ringing.clone(),
                Some(s) => s.participants.iter().map(|p| p.raw_id.clone()).collect(),
                None => Vec::new(),
            };
            if known.is_empty() || rng.below(5) == 0 { rng.user() } else { known[rng.below(known.len())].clone() }
        };
        let input = match rng.below(10) {
            0 => Input::Place {
                call_id,
                caller: Party::new(rng.user(), "u"),
                endpoint: "ep".into(),
                targets: (0..1 + rng.below(3)).map(|_| rng.target()).collect(),
            },
            1 | 2 => Input::Accept { call_id, callee: Party::new(pick(&mut rng, true), "u"), endpoint: "ep".into() },
            3 => Input::Decline { call_id, user: pick(&mut rng, true) },
            4 => Input::Cancel { call_id, user: pick(&mut rng, false) },
            5 => Input::HangUp { call_id, user: pick(&mut rng, false) },
            6 => Input::AddParticipant { call_id, by: pick(&mut rng, false), target: rng.target() },
            7 => Input::Transfer { call_id, by: pick(&mut rng, false), target: rng.target() },
            8 => Input::UserGone { user: rng.user() },
            _ => {
                now += rng.below(9_000) as u64;
                Input::Tick
            }
        };
        let before = format!("{m:?}");
        match m.handle(now, input.clone()) {
            Ok(out) => {
                accepted += 1;
                for o in &out {
                    match o {
                        Output::ParticipantConnected { call_id, participant, .. } => {
                            connects += 1;
                            let prev = open.insert((call_id.clone(), participant.raw_id.clone()), true);
                            assert_ne!(prev, Some(true), "seed {seed} step {step}: connected twice");
                        }
                        Output::ParticipantDisconnected { call_id, raw_id, .. } => {
                            let prev = open.insert((call_id.clone(), raw_id.clone()), false);
                            assert_eq!(prev, Some(true), "seed {seed} step {step}: disconnect without connect");
                        }
                        _ => {}
                    }
                }
            }
            Err(_) => {
                refused += 1;
                assert_eq!(format!("{m:?}"), before, "seed {seed} step {step}: refused {input:?} changed state");
            }
        }
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.assert_consistent())) {
            panic!("seed {seed} step {step}: after {input:?}: {:?}\nbefore: {before}", panic.downcast_ref::<String>());
        }
    }
    for user in USERS {
        m.handle(now, Input::UserGone { user: user.to_string() }).unwrap().iter().for_each(|o| {
            if let Output::ParticipantDisconnected { call_id, raw_id, .. } = o {
                open.insert((call_id.clone(), raw_id.clone()), false);
            }
        });
    }
    // Rings of users who never come back end on their timers.
    now += 60_000;
    m.handle(now, Input::Tick).unwrap();
    m.assert_consistent();
    assert_eq!(m.call_count(), 0, "seed {seed}: calls left over");
    assert!(open.values().all(|v| !v), "seed {seed}: billing sessions left open");
    (accepted, refused, connects)
}

#[test]
fn random_stories_keep_the_machine_consistent() {
    let (mut accepted, mut refused, mut connects) = (0, 0, 0);
    for seed in 1..=40u64 {
        let (a, r, c) = run_story(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 3_000);
        accepted += a;
        refused += r;
        connects += c;
    }
    eprintln!("random stories: {accepted} inputs accepted, {refused} refused, {connects} participants connected");
    // The stories must exercise both paths and real calls substantially to mean anything.
    assert!(
        accepted > 5_000 && refused > 5_000 && connects > 1_000,
        "accepted {accepted}, refused {refused}, connects {connects}"
    );
}
