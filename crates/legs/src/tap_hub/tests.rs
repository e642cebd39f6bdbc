use super::*;
use bytes::Bytes;
use palaver_sfu::net::DirectLink;
use palaver_sfu::router::TransportId;

/// A leg transport that only records what it did with the tap.
struct FakeTransport {
    link: Arc<DirectLink>,
    tap: Mutex<Option<Arc<SourceTap>>>,
    calls: Mutex<Vec<bool>>,
}

impl FakeTransport {
    fn new() -> Arc<Self> {
        Arc::new(Self { link: DirectLink::new(4), tap: Mutex::new(None), calls: Mutex::new(Vec::new()) })
    }
    /// `true` per start, `false` per stop, in order.
    fn calls(&self) -> Vec<bool> {
        self.calls.lock().unwrap().clone()
    }
}

impl LegTransport for FakeTransport {
    fn send(&self, _packet: Bytes) -> bool {
        true
    }
    fn link(&self) -> &Arc<DirectLink> {
        &self.link
    }
    fn detach(&self) {}
    fn set_audience(&self, _ssrc: u32, _listeners: Option<Vec<String>>) {}
    fn set_muted(&self, _target: &str, _muted: bool) {}
    fn set_held(&self, _target: &str, _held: bool) {}
    fn set_source_tap(&self, tap: Option<Arc<SourceTap>>) {
        self.calls.lock().unwrap().push(tap.is_some());
        *self.tap.lock().unwrap() = tap;
    }
    fn source_name(&self, _source: TransportId) -> Option<String> {
        None
    }
}

fn push(tap: &SourceTap, source: u32, tick: u64) {
    tap.push(TransportId(source), tick, &[tick as i16; 960], 1);
}

fn drain(consumer: &TapConsumer) -> Vec<(u32, u64)> {
    std::iter::from_fn(|| consumer.pop()).map(|f| (f.source.0, f.tick)).collect()
}

#[test]
fn a_stream_and_a_recording_of_one_call_each_get_every_frame() {
    let hubs = TapHubs::default();
    let (stream_leg, recorder_leg) = (FakeTransport::new(), FakeTransport::new());
    let stream = hubs.subscribe("conv", stream_leg.clone());
    let tap = stream_leg.tap.lock().unwrap().clone().expect("the first consumer starts the tap");
    let recording = hubs.subscribe("conv", recorder_leg.clone());
    assert!(recorder_leg.calls().is_empty(), "a second consumer shares the tap instead of taking it");

    for tick in 0..3 {
        push(&tap, 7, tick);
        push(&tap, 9, tick);
    }
    let expected = vec![(7, 0), (9, 0), (7, 1), (9, 1), (7, 2), (9, 2)];
    assert_eq!(drain(&stream), expected);
    assert_eq!(drain(&recording), expected, "the recording gets the frames the stream drained first");

    // The stream (the tap's owner) stops: the recording takes the tap over and goes on.
    stream.close();
    assert_eq!(stream_leg.calls(), vec![true], "the owner does not stop a tap others still use");
    assert_eq!(recorder_leg.calls(), vec![true], "the next consumer takes the same tap over");
    assert!(Arc::ptr_eq(recorder_leg.tap.lock().unwrap().as_ref().unwrap(), &tap));
    push(&tap, 7, 3);
    assert_eq!(drain(&recording), vec![(7, 3)]);

    // The last consumer stops the tap; a new one later starts afresh.
    drop(recording);
    assert_eq!(recorder_leg.calls(), vec![true, false]);
    let later = hubs.subscribe("conv", stream_leg.clone());
    assert_eq!(stream_leg.calls(), vec![true, true]);
    assert!(drain(&later).is_empty());
}

#[test]
fn conversations_do_not_share_taps_and_a_slow_consumer_only_loses_its_own_frames() {
    let hubs = TapHubs::default();
    let (a, b) = (FakeTransport::new(), FakeTransport::new());
    let first = hubs.subscribe("one", a.clone());
    let other = hubs.subscribe("two", b.clone());
    assert_eq!((a.calls(), b.calls()), (vec![true], vec![true]));
    let tap_one = a.tap.lock().unwrap().clone().unwrap();
    assert!(!Arc::ptr_eq(&tap_one, b.tap.lock().unwrap().as_ref().unwrap()));

    let slow = hubs.subscribe("one", b.clone());
    // `first` drains every tick; `slow` never does and overflows its own queue only.
    for tick in 0..(DEFAULT_TAP_CAPACITY as u64 + 20) {
        push(&tap_one, 1, tick);
        assert_eq!(drain(&first), vec![(1, tick)]);
    }
    assert_eq!(slow.dropped(), 20);
    assert_eq!(first.dropped(), 0);
    assert_eq!(drain(&slow).len(), DEFAULT_TAP_CAPACITY);
    assert!(drain(&other).is_empty());
}
