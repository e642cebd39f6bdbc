//! Hold audio of call queues and lobbies in the media plane: a phone waiting in a queue
//! hears the queue's file (registered at start with `Conferences::register_hold_audio`),
//! looped, in its own codec, where a ringing call hears the trunk's ringback; an unknown
//! name is refused instead of joining the phone unheld.

use super::*;
use palaver_sfu::control::sip::legs::EarlyMedia;
use palaver_sfu::engine::early_media::ToneLoop;

/// The hold audio of the test: 600 Hz then 900 Hz, one second each, at `HOLD_AMPLITUDE`.
const HOLD_AMPLITUDE: f32 = 6000.0;

fn hold_pcm() -> Vec<i16> {
    (0..96_000)
        .map(|i| {
            let hz = if i < 48_000 { 600.0 } else { 900.0 };
            ((std::f32::consts::TAU * hz * i as f32 / 48_000.0).sin() * HOLD_AMPLITUDE) as i16
        })
        .collect()
}

/// Runs `ticks` of 20 ms; the waiting `caller` and the `callee` each send their tone.
fn run(engine: &mut TestEngine, phones: [(&mut Phone, SocketAddr); 2], ticks: usize) -> usize {
    let [(caller, caller_addr), (callee, callee_addr)] = phones;
    let mut to_caller = 0;
    for _ in 0..ticks {
        engine.datagram(caller_addr, caller.next());
        engine.datagram(callee_addr, callee.next());
        engine.drive(Duration::from_millis(20));
        for (to, packet) in engine.take_sent() {
            if packet.len() < 2 || (200..=206).contains(&packet[1]) {
                continue;
            }
            if to == caller_addr {
                to_caller += 1;
                caller.hear(&packet);
            } else {
                callee.hear(&packet);
            }
        }
    }
    to_caller
}

#[test]
fn a_phone_waiting_in_a_queue_hears_its_hold_audio_in_a_loop_then_the_agent() {
    let (caller_addr, agent_addr): (SocketAddr, SocketAddr) =
        ("198.51.100.9:7000".parse().unwrap(), "198.51.100.8:6000".parse().unwrap());
    let mut control = controller();
    let mut engine = TestEngine::new();
    control.register_hold_audio("/srv/hold/support.wav", std::sync::Arc::new(ToneLoop::from_pcm(&hold_pcm()).unwrap()));
    let policy = TrunkPolicy { codecs: vec![AudioCodec::Pcmu], srtp: SrtpPolicy::Off, trunk: None };
    let (_, _, out) = control.join_sip(CONVERSATION, "agent", &offer_plain(agent_addr), &policy).unwrap();
    apply(&mut engine, &out).unwrap();
    let caller_offer = offer_plain(caller_addr);
    // A name nobody registered: refused, nothing joined (the gateway sends 180 instead).
    let unknown = Some(EarlyMedia::HoldAudio("/srv/hold/missing.wav".into()));
    let refused = control.join_sip_early(CONVERSATION, "caller", &caller_offer, &policy, unknown).unwrap_err();
    assert!(refused.to_string().contains("early=audio:/srv/hold/missing.wav"), "{refused}");
    let hold = Some(EarlyMedia::HoldAudio("/srv/hold/support.wav".into()));
    let (_, early_sdp, out) = control.join_sip_early(CONVERSATION, "caller", &caller_offer, &policy, hold).unwrap();
    apply(&mut engine, &out).unwrap();
    let mut caller = Phone::new(TrunkCodec::Pcmu, 1000.0, 0xCA11);
    let mut agent = Phone::new(TrunkCodec::Pcmu, 700.0, 0xA6E7);
    // The first second of the file (600 Hz), then the second (900 Hz), then the loop again.
    let mut seconds = Vec::new();
    let mut packets = 0;
    for _ in 0..3 {
        packets += run(&mut engine, [(&mut caller, caller_addr), (&mut agent, agent_addr)], 50);
        seconds.push((caller.heard_at(600.0), caller.heard_at(900.0)));
    }
    let (ringback, agent_heard, caller_heard) =
        (caller.heard_at(440.0), caller.heard_at(700.0), agent.heard_at(1000.0));
    println!(
        "hold audio to the waiting phone ({packets} packets in 3 s): (600 Hz, 900 Hz) per second {seconds:.0?} \
         (sent at {HOLD_AMPLITUDE}); ringback 440 Hz {ringback:.0}; the agent's 700 Hz {agent_heard:.0}; \
         the agent hears the caller at {caller_heard:.0}"
    );
    assert!(packets >= 148, "a packet every tick: {packets}");
    let loud = HOLD_AMPLITUDE / 2.0;
    assert!(seconds[0].0 > loud && seconds[0].1 < loud / 10.0, "first second: 600 Hz {:?}", seconds[0]);
    assert!(seconds[1].1 > loud && seconds[1].0 < loud / 10.0, "second second: 900 Hz {:?}", seconds[1]);
    assert!(seconds[2].0 > loud && seconds[2].1 < loud / 10.0, "the loop starts again: {:?}", seconds[2]);
    assert!(ringback < AMPLITUDE / 50.0 && agent_heard < AMPLITUDE / 50.0, "{ringback:.0} {agent_heard:.0}");
    assert!(caller_heard < AMPLITUDE / 50.0, "nobody hears a waiting phone ({caller_heard:.0})");
    // The agent answers: the same SDP and transport, and the hold audio stops.
    let (_, answer_sdp, out) = control.join_sip(CONVERSATION, "caller", &caller_offer, &policy).unwrap();
    assert_eq!(answer_sdp, early_sdp, "the 200 repeats the 183's SDP");
    assert!(transport_changes(&out).is_empty(), "{:?}", out.commands);
    apply(&mut engine, &out).unwrap();
    run(&mut engine, [(&mut caller, caller_addr), (&mut agent, agent_addr)], 60);
    let (agent_after, hold_after) = (caller.heard_at(700.0), caller.heard_at(600.0).max(caller.heard_at(900.0)));
    println!("after the answer: the phone hears the agent's 700 Hz at {agent_after:.0}, hold audio {hold_after:.0}");
    assert!(agent_after > AMPLITUDE / 2.0 && hold_after < AMPLITUDE / 50.0, "{agent_after:.0} {hold_after:.0}");
    assert!(agent.heard_at(1000.0) > AMPLITUDE / 2.0);
}
