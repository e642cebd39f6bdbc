use super::*;

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn unreliable_ringing_is_refreshed_every_interval_and_never_retransmitted() {
    let t0 = Instant::now();
    let mut p = Provisionals::new(false, Some(MINUTE), 1);
    assert_eq!(p.send(t0, 180, false), Some(Provisional { status: 180, rseq: None, repeat: false }));
    assert_eq!(p.next_wake(), Some(t0 + MINUTE));
    assert_eq!(p.poll(t0 + Duration::from_secs(59)), None);
    let refresh = Provisional { status: 180, rseq: None, repeat: true };
    assert_eq!(p.poll(t0 + MINUTE), Some(Step::Send(refresh)));
    assert_eq!(p.next_wake(), Some(t0 + 2 * MINUTE));
    assert_eq!(p.poll(t0 + 2 * MINUTE), Some(Step::Send(refresh)));
    assert!(p.may_answer());
}

#[test]
fn no_refresh_without_an_interval_or_before_the_first_18x() {
    let t0 = Instant::now();
    let p = Provisionals::new(false, Some(MINUTE), 1);
    assert_eq!(p.next_wake(), None, "nothing was sent yet");
    let mut off = Provisionals::new(false, Some(Duration::ZERO), 1);
    off.send(t0, 180, false);
    assert_eq!(off.next_wake(), None);
    assert_eq!(off.poll(t0 + 10 * MINUTE), None);
}

#[test]
fn a_reliable_18x_is_retransmitted_from_t1_doubling_to_t2_until_its_prack() {
    let t0 = Instant::now();
    let mut p = Provisionals::new(true, None, 7);
    assert_eq!(p.send(t0, 180, false), Some(Provisional { status: 180, rseq: Some(7), repeat: false }));
    let mut at = t0;
    let mut gaps = Vec::new();
    for _ in 0..6 {
        let wake = p.next_wake().unwrap();
        gaps.push((wake - at).as_millis());
        at = wake;
        assert_eq!(p.poll(at), Some(Step::Send(Provisional { status: 180, rseq: Some(7), repeat: true })));
    }
    assert_eq!(gaps, [500, 1000, 2000, 4000, 4000, 4000]);
    assert_eq!(p.prack(at, 6), (false, None), "a PRACK for another RSeq acknowledges nothing");
    assert_eq!(p.prack(at, 7), (true, None));
    assert_eq!(p.next_wake(), None, "acknowledged, no refresh configured");
}

#[test]
fn a_second_reliable_18x_waits_for_the_prack_of_the_first_and_takes_the_next_rseq() {
    let t0 = Instant::now();
    let mut p = Provisionals::new(true, None, 1);
    p.send(t0, 180, false);
    assert_eq!(p.send(t0, 183, true), None, "queued behind the unacknowledged 180");
    let (acked, next) = p.prack(t0 + T1, 1);
    assert!(acked);
    assert_eq!(next, Some(Provisional { status: 183, rseq: Some(2), repeat: false }));
    assert!(!p.may_answer(), "a 2xx waits while a reliable 183 with SDP is unacknowledged");
    assert_eq!(p.prack(t0 + T1, 2), (true, None));
    assert!(p.may_answer());
}

#[test]
fn a_reliable_refresh_is_a_new_rseq_after_the_interval() {
    let t0 = Instant::now();
    let mut p = Provisionals::new(true, Some(Duration::from_secs(2)), 1);
    p.send(t0, 180, false);
    p.prack(t0 + Duration::from_millis(10), 1);
    assert_eq!(p.next_wake(), Some(t0 + Duration::from_secs(2)));
    assert_eq!(
        p.poll(t0 + Duration::from_secs(2)),
        Some(Step::Send(Provisional { status: 180, rseq: Some(2), repeat: true }))
    );
}

#[test]
fn no_prack_for_64_t1_gives_up() {
    let t0 = Instant::now();
    let mut p = Provisionals::new(true, Some(MINUTE), 1);
    p.send(t0, 180, false);
    let mut steps = 0;
    loop {
        let wake = p.next_wake().expect("a wake-up while unacknowledged");
        match p.poll(wake) {
            Some(Step::GiveUp) => {
                assert_eq!(wake, t0 + 64 * T1);
                break;
            }
            Some(Step::Send(_)) => steps += 1,
            None => {}
        }
        assert!(steps < 20, "gives up within 64·T1");
    }
    assert_eq!(p.next_wake(), None, "nothing more after giving up");
}
