//! Tests of the shared request plumbing over an in-memory transport: answers reach their
//! caller by `requestId`, everything else the event queue, timeouts and ended signaling fail
//! the caller, and nothing stays pending after a failed write.

use super::*;
use palaver_core::protocol::JoinTarget;
use serde_json::{Value, json};

/// Records every written frame; fails every write when `broken`.
#[derive(Default)]
struct MemoryWriter {
    written: Mutex<Vec<String>>,
    broken: bool,
}

impl FrameWriter for MemoryWriter {
    async fn write_json(&self, json: String) -> Result<(), ClientError> {
        if self.broken {
            return Err(ClientError::Closed);
        }
        self.written.lock().expect("writer lock").push(json);
        Ok(())
    }
}

/// Server frames fed by the test; the signaling ends when the sender is dropped.
struct MemoryReader(mpsc::UnboundedReceiver<Vec<u8>>);

impl FrameReader for MemoryReader {
    async fn next_frame(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        Ok(self.0.recv().await)
    }
}

struct Harness {
    requests: Arc<Requests<MemoryWriter>>,
    server: mpsc::UnboundedSender<Vec<u8>>,
    events: mpsc::Receiver<ServerMessage>,
    calls: mpsc::Receiver<CallEvent>,
    reader: tokio::task::JoinHandle<()>,
}

fn harness(event_queue: usize) -> Harness {
    let requests = Arc::new(Requests::new(MemoryWriter::default(), "t"));
    let (server, frames) = mpsc::unbounded_channel();
    let (events_tx, events) = mpsc::channel(event_queue);
    let (calls_tx, calls) = mpsc::channel(event_queue);
    let reader = tokio::spawn(read_frames(MemoryReader(frames), requests.clone(), events_tx, Some(calls_tx), Some));
    Harness { requests, server, events, calls, reader }
}

impl Harness {
    fn push(&self, frame: Value) {
        self.server.send(frame.to_string().into_bytes()).expect("reader alive");
    }

    /// The frames the client wrote so far, parsed.
    fn written(&self) -> Vec<Value> {
        let written = self.requests.writer().written.lock().expect("writer lock");
        written.iter().map(|s| serde_json::from_str(s).expect("client frames are JSON")).collect()
    }

    /// Waits until the client has written `n` frames; the `requestId` of the last one.
    async fn request_id(&self, n: usize) -> String {
        for _ in 0..200 {
            let written = self.written();
            if written.len() >= n {
                return written[n - 1]["requestId"].as_str().expect("a requestId").to_string();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the client did not write frame {n}");
    }
}

fn pending_len<W: FrameWriter>(requests: &Requests<W>) -> usize {
    requests.pending.lock().expect("pending lock").len()
}

#[tokio::test]
async fn an_answer_reaches_the_request_with_its_id() {
    let h = harness(8);
    let requests = h.requests.clone();
    let call =
        tokio::spawn(
            async move { requests.request(ClientMessage::SelfMute { muted: true }, Duration::from_secs(5)).await },
        );
    let id = h.request_id(1).await;
    assert_eq!(id, "t1");
    assert_eq!(h.written()[0]["type"], "self.mute");
    h.push(json!({"type":"ack","requestId":"t999"}));
    h.push(json!({"type":"ack","requestId":id}));
    let answer = call.await.expect("request task").expect("answered");
    assert_eq!(answer, ServerMessage::Ack { request_id: Some("t1".into()) });
    assert_eq!(pending_len(&h.requests), 0);
    let mut events = h.events;
    // The ack for an id nobody waits for is an event.
    assert_eq!(events.recv().await, Some(ServerMessage::Ack { request_id: Some("t999".into()) }));
}

#[tokio::test]
async fn an_error_answer_is_a_refusal() {
    let h = harness(8);
    let requests = h.requests.clone();
    let call = tokio::spawn(async move { requests.request(ClientMessage::Leave, Duration::from_secs(5)).await });
    let id = h.request_id(1).await;
    h.push(json!({"type":"error","code":"InvalidState","message":"not joined","requestId":id}));
    let err = call.await.expect("request task").expect_err("refused");
    assert_eq!(err.code(), Some("InvalidState"));
}

#[tokio::test]
async fn join_maps_the_joined_answer_and_rejects_others() {
    let h = harness(8);
    let requests = h.requests.clone();
    let target = JoinTarget::Room { room_id: "r".into() };
    let call = tokio::spawn(async move { requests.join(target, None, Duration::from_secs(5)).await });
    let id = h.request_id(1).await;
    h.push(json!({"type":"ack","requestId":id}));
    let err = call.await.expect("join task").expect_err("ack is not joined");
    assert!(matches!(err, ClientError::Protocol(ref m) if m.contains("expected joined")), "{err:?}");
}

#[tokio::test]
async fn a_timed_out_request_is_forgotten_and_its_late_answer_becomes_an_event() {
    let mut h = harness(8);
    let err = h.requests.request(ClientMessage::Leave, Duration::from_millis(30)).await.expect_err("no answer");
    assert!(matches!(err, ClientError::Timeout(_)), "{err:?}");
    assert_eq!(pending_len(&h.requests), 0);
    h.push(json!({"type":"ack","requestId":"t1"}));
    assert_eq!(h.events.recv().await, Some(ServerMessage::Ack { request_id: Some("t1".into()) }));
}

#[tokio::test]
async fn events_skip_pongs_count_unreadable_frames_and_drop_when_full() {
    let mut h = harness(1);
    h.server.send(b"not json".to_vec()).expect("reader alive");
    h.push(json!({"type":"pong"}));
    h.push(json!({"type":"token.expiring","expiresAtMs":5}));
    h.push(json!({"type":"token.expiring","expiresAtMs":6}));
    drop(h.server);
    h.reader.await.expect("reader task");
    assert_eq!(h.events.recv().await, Some(ServerMessage::TokenExpiring { expires_at_ms: 5 }));
    assert_eq!(h.events.recv().await, None);
    let counters = &h.requests.counters;
    assert_eq!(counters.invalid_frames.load(Ordering::Relaxed), 1);
    assert_eq!(counters.events_dropped.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn divert_takes_frames_before_the_event_queue() {
    let requests = Arc::new(Requests::new(MemoryWriter::default(), "t"));
    let (server, frames) = mpsc::unbounded_channel();
    let (events_tx, mut events) = mpsc::channel(8);
    let (answers_tx, mut answers) = mpsc::unbounded_channel();
    let divert = move |m: ServerMessage| match m {
        ServerMessage::MediaAnswer { sdp, .. } => {
            let _ = answers_tx.send(sdp);
            None
        }
        other => Some(other),
    };
    let reader = tokio::spawn(read_frames(MemoryReader(frames), requests, events_tx, None, divert));
    server.send(json!({"type":"media.answer","sdp":"v=0"}).to_string().into_bytes()).expect("reader alive");
    server.send(json!({"type":"token.refreshed","expiresAtMs":7}).to_string().into_bytes()).expect("reader alive");
    drop(server);
    reader.await.expect("reader task");
    assert_eq!(answers.recv().await.as_deref(), Some("v=0"));
    assert_eq!(events.recv().await, Some(ServerMessage::TokenRefreshed { expires_at_ms: 7 }));
    assert_eq!(events.recv().await, None);
}

#[tokio::test]
async fn ended_signaling_fails_waiting_requests_with_closed() {
    let h = harness(8);
    let requests = h.requests.clone();
    let call = tokio::spawn(async move { requests.request(ClientMessage::Leave, Duration::from_secs(5)).await });
    h.request_id(1).await;
    drop(h.server);
    let err = call.await.expect("request task").expect_err("signaling ended");
    assert!(matches!(err, ClientError::Closed), "{err:?}");
    assert_eq!(pending_len(&h.requests), 0);
}

#[tokio::test]
async fn a_failed_write_leaves_nothing_pending() {
    let requests = Requests::new(MemoryWriter { broken: true, ..MemoryWriter::default() }, "t");
    let err = requests.request(ClientMessage::Leave, Duration::from_secs(5)).await.expect_err("write fails");
    assert!(matches!(err, ClientError::Closed), "{err:?}");
    assert_eq!(pending_len(&requests), 0);
    assert_eq!(requests.next_request.load(Ordering::Relaxed), 2, "the id was used");
}

#[tokio::test]
async fn the_heartbeat_pings_every_period() {
    let requests = Arc::new(Requests::new(MemoryWriter::default(), "t"));
    let task = tokio::spawn(heartbeat(requests.clone(), Duration::from_millis(40)));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(requests.writer().written.lock().expect("writer lock").is_empty(), "no ping before one period");
    tokio::time::sleep(Duration::from_millis(150)).await;
    task.abort();
    let written = requests.writer().written.lock().expect("writer lock").clone();
    assert!((2..=5).contains(&written.len()), "{written:?}");
    assert!(written.iter().all(|w| w == r#"{"type":"ping"}"#), "{written:?}");
}

#[tokio::test]
async fn the_first_frame_must_be_welcome() {
    let welcome = json!({"type":"welcome","protocolVersion":1,"connectionId":"k1","identifier":{"rawId":"8:acs:u"},
        "displayName":"U","heartbeatIntervalMs":15000,"idleTimeoutMs":45000,"maxFrameBytes":65536,"tokenExpiresAtMs":9});
    let read = |frame: Value| async move {
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(frame.to_string().into_bytes()).expect("open");
        read_welcome(&mut MemoryReader(rx)).await
    };
    let w = read(welcome).await.expect("welcome");
    assert_eq!((w.protocol_version, w.connection_id.as_str(), w.display_name.as_str()), (1, "k1", "U"));
    assert_eq!(
        (w.heartbeat_interval_ms, w.idle_timeout_ms, w.max_frame_bytes, w.token_expires_at_ms),
        (15000, 45000, 65536, 9)
    );
    assert_eq!(w.identifier.raw_id.as_deref(), Some("8:acs:u"));
    let refused = read(json!({"type":"error","code":"InvalidToken","message":"bad"})).await.expect_err("refused");
    assert_eq!(refused.code(), Some("InvalidToken"));
    let other = read(json!({"type":"pong"})).await.expect_err("not welcome");
    assert!(matches!(other, ClientError::Protocol(_)), "{other:?}");
    let (tx, rx) = mpsc::unbounded_channel::<Vec<u8>>();
    drop(tx);
    assert!(matches!(read_welcome(&mut MemoryReader(rx)).await, Err(ClientError::Closed)));
}

#[tokio::test]
async fn call_frames_go_to_the_call_queue_with_the_invitation_target_and_custom_context() {
    let mut h = harness(8);
    h.push(json!({"type": "call.incoming", "callId": "inv1", "caller": {"rawId": "8:acs:app", "displayName": "Bot"},
        "participants": [], "ringTimeoutMs": 30000, "join": {"kind": "groupCall", "groupId": "g1"},
        "customContext": {"voipHeaders": {"x-ms-custom-ticket": "42"}}}));
    h.push(json!({"type": "call.moved", "callId": "c1", "join": {"kind": "room", "roomId": "r1"}}));
    h.push(json!({"type": "call.unknownThing", "callId": "c1"}));
    h.push(json!({"type": "pong"}));
    h.push(json!({"type": "session.ended", "conversationId": "x", "reason": "Left"}));
    let Some(CallEvent::Incoming { call_id, join, custom_context, .. }) = h.calls.recv().await else { panic!() };
    assert_eq!(call_id, "inv1");
    assert_eq!(join, Some(JoinTarget::GroupCall { group_id: "g1".into() }));
    assert_eq!(custom_context.unwrap()["voipHeaders"]["x-ms-custom-ticket"], "42");
    let moved = h.calls.recv().await.unwrap();
    assert_eq!(moved, CallEvent::Moved { call_id: "c1".into(), join: JoinTarget::Room { room_id: "r1".into() } });
    // Other frames still reach the event queue; an unknown call frame is skipped and counted.
    assert!(matches!(h.events.recv().await, Some(ServerMessage::SessionEnded { .. })));
    assert_eq!(h.requests.counters.invalid_frames.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(h.calls.try_recv().is_err());
}

#[tokio::test]
async fn a_resume_answer_leaves_the_capture_notice_sent_right_after_it_queued() {
    let snapshot: ConversationSnapshot = serde_json::from_value(json!({
        "conversationId": "c2", "kind": "meeting", "participantId": "p1", "state": "connected",
        "role": "attendee", "capture": {"recording": "active", "transcription": "active"},
        "rosterVersion": 1, "participants": []
    }))
    .expect("snapshot");
    let previous = Joined::seated("t1".into(), snapshot.clone());
    let capture: ServerMessage = serde_json::from_value(json!({
        "type": "capture.changed", "capture": {"recording": "active", "transcription": "active"}
    }))
    .expect("capture.changed");
    // Both ready at once, as when the new home's `joined` and `capture.changed` arrive in one
    // read: an unbiased choice dropped the notice about every other time.
    for _ in 0..64 {
        let (tx, answer) = oneshot::channel();
        let (events_tx, mut events) = mpsc::channel(8);
        tx.send(ServerMessage::Joined {
            request_id: Some("resume".into()),
            resume_token: "t2".into(),
            snapshot: snapshot.clone(),
        })
        .expect("answer");
        events_tx.send(capture.clone()).await.expect("event");
        let joined = resume_answer(answer, &mut events, &previous, Duration::from_secs(1)).await.expect("joined");
        assert_eq!(joined.resume_token, "t2");
        assert!(matches!(events.try_recv(), Ok(ServerMessage::CaptureChanged { .. })), "the notice stays queued");
    }
}
