//! RTP latching through the controller (`Conferences::latch_sip`): two phones of one SBC
//! behind a port-preserving NAT (their SDP says 10.0.0.5, their packets come from
//! 203.0.113.7, the trunk's signaling address, from the SDP's ports) each hear the other once
//! their legs latch, though both wait for their first packet at once; without latching
//! nothing from the NAT is taken.

use super::*;
use palaver_sfu::control::sip::latching;

#[test]
fn phones_behind_nat_are_heard_and_hear_each_other_once_their_legs_latch() {
    let sbc: std::net::IpAddr = "203.0.113.7".parse().unwrap();
    let (sdp_a, sdp_b): (SocketAddr, SocketAddr) = ("10.0.0.5:6000".parse().unwrap(), "10.0.0.5:6002".parse().unwrap());
    let (nat_a, nat_b) = (SocketAddr::new(sbc, 6000), SocketAddr::new(sbc, 6002));
    let mut control = controller();
    let mut engine = TestEngine::new();
    let names = ["PCMU".to_owned(), "srtp=off".to_owned(), latching::name(&[sbc])];
    let signaling = latching::from_names(&names).unwrap();
    let policy = TrunkPolicy::from_names(&names);
    let mut a = Phone::new(TrunkCodec::Pcmu, 1000.0, 0xA);
    let mut b = Phone::new(TrunkCodec::Pcmu, 700.0, 0xB);
    let run = |engine: &mut TestEngine, a: &mut Phone, b: &mut Phone, ticks| {
        let (mut to_a, mut to_b, mut elsewhere) = (0, 0, 0);
        for _ in 0..ticks {
            engine.datagram(nat_a, a.next());
            engine.datagram(nat_b, b.next());
            engine.drive(Duration::from_millis(20));
            for (to, packet) in engine.take_sent() {
                if packet.len() < 2 || (200..=206).contains(&packet[1]) {
                    continue;
                }
                match to {
                    to if to == nat_a => (to_a += 1, a.hear(&packet)).0,
                    to if to == nat_b => (to_b += 1, b.hear(&packet)).0,
                    _ => elsewhere += 1,
                }
            }
        }
        (to_a, to_b, elsewhere)
    };
    // A joins without latching: the NAT's packets are unknown sources.
    let (_, _, out) = control.join_sip(CONVERSATION, "a", &offer_plain(sdp_a), &policy).unwrap();
    apply(&mut engine, &out).unwrap();
    let (_, _, out) = control.join_sip(CONVERSATION, "b", &offer_plain(sdp_b), &policy).unwrap();
    apply(&mut engine, &out).unwrap();
    let (to_a, to_b, elsewhere) = run(&mut engine, &mut a, &mut b, 10);
    let unknown = engine.counters().dropped(DropReason::UnknownSource);
    assert_eq!((to_a, to_b, unknown), (0, 0, 20), "without latching: nothing to the NAT, 20 unknown sources");
    assert!(elsewhere >= 18, "the mix went to the SDP's private addresses: {elsewhere}");
    // Both legs latch (the trunk's `rtp_latching`): no transport changes, the worker is told.
    for participant in ["a", "b"] {
        let out = control.latch_sip(CONVERSATION, participant, &signaling);
        assert!(transport_changes(&out).is_empty() && out.commands.len() == 1, "{:?}", out.commands);
        apply(&mut engine, &out).unwrap();
    }
    let (to_a, to_b, elsewhere) = run(&mut engine, &mut a, &mut b, 60);
    let (a_hears_b, a_hears_a, b_hears_a, b_hears_b) =
        (a.heard_at(700.0), a.heard_at(1000.0), b.heard_at(1000.0), b.heard_at(700.0));
    let refused = engine.counters().dropped(DropReason::RtpLatchRefused);
    println!(
        "latched: {to_a} packets to A's NAT port, {to_b} to B's, {elsewhere} elsewhere; A hears B's 700 Hz at \
         {a_hears_b:.0} (own {a_hears_a:.0}), B hears A's 1 kHz at {b_hears_a:.0} (own {b_hears_b:.0}); \
         {refused} refused"
    );
    assert!(to_a >= 59 && to_b >= 59 && elsewhere == 0, "{to_a} {to_b} {elsewhere}");
    assert!(a_hears_b > AMPLITUDE / 2.0 && a_hears_a < AMPLITUDE / 50.0, "{a_hears_b:.0} {a_hears_a:.0}");
    assert!(b_hears_a > AMPLITUDE / 2.0 && b_hears_b < AMPLITUDE / 50.0, "{b_hears_a:.0} {b_hears_b:.0}");
    assert_eq!(refused, 0);
}
