//! Video for QUIC participants (issue #7) against the real binary. A QUIC publisher declares
//! its camera as three rid layers (q/h/f, each payload tagged with its layer and marked as a
//! VP8 keyframe or not) and sends keyframes only when the server asks (PLI/FIR), so every
//! picture a subscriber gets proves the server → QUIC publisher keyframe path. A QUIC
//! subscriber with one video slot gets `media.slots` naming the publisher and VP8 on the slot
//! SSRC: starting on an f keyframe, one SSRC, continuous sequence numbers; after
//! `media.subscribe maxHeight=180` it switches to q on a q keyframe, still continuous; its own
//! PLI reaches the publisher for the layer it watches. A WebRTC subscriber
//! (`palaver_client::webrtc` with one receive-only video section) gets the same QUIC camera,
//! starting on a keyframe the server requested once the subscriber's DTLS was up.

use crate::support::{Meeting, meeting, quic_address};
use palaver_client::webrtc::{MediaOptions, WebRtcClient, WebRtcOptions};
use palaver_client::{
    ClientMessage, ConnectOptions, JoinTarget, KeyframeRequest, MediaKind, MediaReceive, MediaTrack, QuicClient,
    ReceivedRtp, ServerMessage,
};
use palaver_core::ErrorCode;
use palaver_core::protocol::{MediaSlot, SlotSubscription};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const USERS: [(&str, &str); 2] = [
    ("0a000000-0000-4000-8000-0000000000d1", "Paula Publisher"),
    ("0a000000-0000-4000-8000-0000000000d2", "Sam Subscriber"),
];
/// The publisher's layers: rid, SSRC, payload tag.
const LAYERS: [(&str, u32, u8); 3] = [("q", 0x5100_0001, b'q'), ("h", 0x5100_0002, b'h'), ("f", 0x5100_0003, b'f')];
const WAIT: Duration = Duration::from_secs(10);

/// A VP8 payload: RFC 7741 descriptor (S=1, partition 0), the VP8 header byte whose P bit is
/// 0 on keyframes, then the layer tag and the frame number.
fn vp8_frame(tag: u8, frame: u32, keyframe: bool) -> Vec<u8> {
    let mut p = vec![0x10, if keyframe { 0x00 } else { 0x01 }, tag];
    p.extend_from_slice(&frame.to_be_bytes());
    p.resize(120 + 200 * usize::from(tag % 3), 0xAB);
    p
}

fn is_keyframe(p: &ReceivedRtp) -> bool {
    p.payload.len() >= 3 && p.payload[0] == 0x10 && p.payload[1] & 1 == 0
}

fn tag(p: &ReceivedRtp) -> u8 {
    p.payload.get(2).copied().unwrap_or(0)
}

/// Joins `token` to the meeting over QUIC; returns the client and its participant id.
async fn quic_participant(options: &ConnectOptions, token: &str, join_url: &str) -> (QuicClient, String) {
    let client = QuicClient::connect(options, token).await.expect("QUIC participant connects");
    let joined = client
        .join(JoinTarget::MeetingLink { join_url: join_url.to_string() }, None)
        .await
        .expect("QUIC participant joins");
    (client, joined.participant_id)
}

/// Attaches the three layers and sends a frame per layer every 33 ms until `stop`, keyframes
/// on request (a PLI/FIR for that layer's SSRC) and, with `keyframe_every`, every that many
/// frames. Every request it got goes to the returned channel.
async fn start_publisher(
    publisher: &mut QuicClient,
    stop: Arc<AtomicBool>,
    keyframe_every: Option<u32>,
) -> mpsc::UnboundedReceiver<KeyframeRequest> {
    let tracks = LAYERS.iter().map(|(rid, ssrc, _)| MediaTrack::vp8_layer(MediaKind::Video, *ssrc, rid)).collect();
    let to_publisher = publisher.attach_media(tracks).await.expect("the publisher attaches three layers");
    assert_eq!(to_publisher.len(), 1, "no receive request: the audio mix only ({to_publisher:?})");
    let mut requests = publisher.take_keyframe_requests().expect("keyframe request queue");
    let mut senders: Vec<_> = LAYERS.iter().map(|(_, ssrc, _)| publisher.rtp_sender(*ssrc, 96)).collect();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        let mut wanted = [false; 3];
        let mut frame = 0u32;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            while let Ok(request) = requests.try_recv() {
                if let Some(i) = LAYERS.iter().position(|(_, ssrc, _)| *ssrc == request.media_ssrc) {
                    wanted[i] = true;
                }
                let _ = seen_tx.send(request);
            }
            for (i, sender) in senders.iter_mut().enumerate() {
                let periodic = keyframe_every.is_some_and(|n| frame.is_multiple_of(n));
                let payload = vp8_frame(LAYERS[i].2, frame, std::mem::take(&mut wanted[i]) || periodic);
                if sender.send_frame(&[&payload], 3000).is_err() {
                    return;
                }
            }
            frame += 1;
        }
    });
    seen
}

/// Waits for a `media.slots` event whose video slot `mid` carries `publisher`.
async fn wait_for_slot(client: &mut QuicClient, mid: &str, publisher: &str) -> Vec<MediaSlot> {
    let deadline = Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline.into(), client.next_event()).await;
        match event.expect("media.slots naming the publisher in time").expect("connection open") {
            ServerMessage::MediaSlots { slots }
                if slots.iter().any(|s| s.mid == mid && s.participant_id.as_deref() == Some(publisher)) =>
            {
                return slots;
            }
            _ => {}
        }
    }
}

/// Receives until `done` says the packets so far are enough (or the deadline passes).
async fn receive_until(
    rx: &mut mpsc::Receiver<ReceivedRtp>,
    video_ssrc: u32,
    into: &mut Vec<ReceivedRtp>,
    done: impl Fn(&[ReceivedRtp]) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    while !done(into) {
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some(p)) if p.ssrc == video_ssrc => into.push(p),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
}

/// One SSRC, sequence numbers without a gap or repeat, payloads the publisher wrote.
fn assert_continuous(video: &[ReceivedRtp]) {
    for pair in video.windows(2) {
        let (x, y) = (&pair[0], &pair[1]);
        assert_eq!(y.ssrc, x.ssrc, "one SSRC for the slot");
        assert_eq!(
            y.sequence,
            x.sequence.wrapping_add(1),
            "continuous sequence numbers ({} then {})",
            x.sequence,
            y.sequence
        );
        assert!(LAYERS.iter().any(|l| l.2 == tag(y)), "a payload the publisher wrote: {:?}", &y.payload[..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_simulcast_camera_fills_a_quic_video_slot_and_follows_max_height() {
    let Meeting { dir: _dir, server, ca_pem, tokens: [paula, sam], join_url } =
        meeting("palaver-e2e-quic-video", USERS).await;
    let options = ConnectOptions::new(quic_address(&server, &paula).await, "localhost", ca_pem);
    let (mut publisher, publisher_id) = quic_participant(&options, &paula, &join_url).await;
    let (mut subscriber, _) = quic_participant(&options, &sam, &join_url).await;

    // Bad simulcast combinations and receive requests are refused; nothing is attached.
    let twice_q =
        vec![MediaTrack::vp8_layer(MediaKind::Video, 7, "q"), MediaTrack::vp8_layer(MediaKind::Video, 8, "q")];
    let refused = publisher.attach_media(twice_q).await.unwrap_err();
    assert!(refused.is_refusal(ErrorCode::InvalidParameter), "{refused}");
    let too_many = subscriber.attach_media_receiving(vec![], MediaReceive { video: 9, screen: false }).await;
    assert!(too_many.unwrap_err().is_refusal(ErrorCode::InvalidParameter));

    let stop = Arc::new(AtomicBool::new(false));
    let mut keyframe_requests = start_publisher(&mut publisher, stop.clone(), None).await;
    let to_subscriber = subscriber
        .attach_media_receiving(vec![], MediaReceive { video: 1, screen: false })
        .await
        .expect("the subscriber attaches with one video slot");
    assert_eq!(to_subscriber.len(), 2, "the mix and one video slot: {to_subscriber:?}");
    let slot = &to_subscriber[1];
    assert_eq!((slot.kind, slot.payload_type, slot.mid.as_deref()), (MediaKind::Video, 96, Some("quic-video-0")));
    assert_ne!(slot.ssrc, to_subscriber[0].ssrc);
    let slots = wait_for_slot(&mut subscriber, "quic-video-0", &publisher_id).await;
    assert_eq!(slots.len(), 1, "{slots:?}");
    assert_eq!(slots[0].kind, MediaKind::Video);

    // Full size by default: the f layer, from an f keyframe on.
    let mut rx = subscriber.take_rtp_receiver().expect("RTP queue");
    let mut video = Vec::new();
    receive_until(&mut rx, slot.ssrc, &mut video, |v| v.iter().filter(|p| tag(p) == b'f').count() >= 20).await;
    let f_packets = video.iter().filter(|p| tag(p) == b'f').count();
    println!("before maxHeight: {} packets on the slot, {f_packets} of layer f", video.len());
    assert!(f_packets >= 20, "the slot carried {f_packets} f packets in {WAIT:?}");
    assert!(is_keyframe(&video[0]) && tag(&video[0]) == b'f', "the slot starts on an f keyframe");
    assert!(video.iter().all(|p| tag(p) == b'f'), "only the f layer while the tile is large");
    assert_eq!(video[0].payload_type, 96);

    // A 180-pixel tile: the server switches the slot to q on a q keyframe.
    let wish = SlotSubscription { mid: "quic-video-0".into(), max_height: Some(180), paused: None };
    let ack = subscriber.request(ClientMessage::MediaSubscribe { slots: vec![wish] }).await.expect("subscribe");
    assert!(matches!(ack, ServerMessage::Ack { .. }), "{ack:?}");
    let switched_at = video.len();
    receive_until(&mut rx, slot.ssrc, &mut video, |v| v.iter().filter(|p| tag(p) == b'q').count() >= 20).await;
    let first_q = video.iter().position(|p| tag(p) == b'q').expect("the slot switched to the q layer");
    let q_packets = video.len() - first_q;
    println!(
        "after maxHeight=180: {} more packets, q from index {first_q}, {q_packets} q packets",
        video.len() - switched_at
    );
    assert!(is_keyframe(&video[first_q]), "the switch happens on a q keyframe");
    assert!(video[first_q..].iter().all(|p| tag(p) == b'q'), "only q after the switch");
    assert!(video[..first_q].iter().all(|p| tag(p) == b'f'), "f until the switch");
    assert!(q_packets >= 20, "{q_packets} q packets");
    assert_continuous(&video);

    // The subscriber's PLI reaches the publisher, for the layer the slot shows (q).
    tokio::time::sleep(Duration::from_millis(400)).await; // past the router's per-layer PLI interval
    while keyframe_requests.try_recv().is_ok() {}
    subscriber.send_pli(slot.ssrc).expect("PLI datagram");
    let deadline = Instant::now() + Duration::from_secs(3);
    let relayed = loop {
        match tokio::time::timeout_at(deadline.into(), keyframe_requests.recv()).await {
            Ok(Some(request)) if request.media_ssrc == LAYERS[0].1 => break Some(request),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break None,
        }
    };
    let stats = publisher.stats();
    println!("publisher stats: {stats:?}; subscriber stats: {:?}", subscriber.stats());
    assert!(relayed.is_some(), "the subscriber's PLI reached the publisher for the q layer");
    assert!(stats.plis_received >= 3, "keyframe requests for f, q and the relayed PLI: {stats:?}");
    stop.store(true, Ordering::Relaxed);
    subscriber.close().await;
    publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_simulcast_camera_reaches_a_webrtc_subscriber() {
    let Meeting { dir: _dir, server, ca_pem, tokens: [paula, sam], join_url } =
        meeting("palaver-e2e-quic-video-webrtc", USERS).await;
    let options = ConnectOptions::new(quic_address(&server, &paula).await, "localhost", ca_pem.clone());
    let (mut publisher, publisher_id) = quic_participant(&options, &paula, &join_url).await;
    let stop = Arc::new(AtomicBool::new(false));
    // Keyframes only on request, and this WebRTC client sends no PLI of its own: the keyframe
    // the server asks for when the slot is filled may go out before the peer connection's DTLS
    // is up (and be dropped), so the picture below proves the server asks again once it is.
    let _keyframe_requests = start_publisher(&mut publisher, stop.clone(), None).await;

    let mut browser = WebRtcClient::connect(&WebRtcOptions::new(server.base_url(), &ca_pem), &sam)
        .await
        .expect("WebRTC participant connects");
    browser.join(JoinTarget::MeetingLink { join_url: join_url.clone() }, None).await.expect("WebRTC joins");
    // Audio plus one receive-only video section: the camera slot.
    let session = browser.start_media_receiving(MediaOptions::default(), 1).await.expect("WebRTC media");
    let deadline = Instant::now() + WAIT;
    let mut named = false;
    while !named {
        match tokio::time::timeout_at(deadline.into(), browser.next_event()).await {
            Ok(Some(ServerMessage::MediaSlots { slots })) => {
                named = slots
                    .iter()
                    .any(|s| s.kind == MediaKind::Video && s.participant_id.as_deref() == Some(&publisher_id));
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    assert!(named, "media.slots names the QUIC publisher in the WebRTC participant's camera slot");

    let mut rx = browser.take_rtp_receiver().expect("RTP queue");
    let until = Instant::now() + Duration::from_secs(4);
    let mut video = Vec::new();
    while let Ok(Some(p)) = tokio::time::timeout_at(until.into(), rx.recv()).await {
        if p.payload_type != session.audio_payload_type {
            video.push(p);
        }
    }
    let mut layers: Vec<char> = video.iter().map(|p| tag(p) as char).collect();
    layers.dedup();
    println!("WebRTC subscriber: {} video packets, layers in order {layers:?}; {:?}", video.len(), browser.stats());
    assert!(video.len() >= 30, "the WebRTC subscriber got {} packets of the QUIC camera", video.len());
    assert!(is_keyframe(&video[0]), "the WebRTC subscriber's video starts on a keyframe");
    assert_continuous(&video);
    stop.store(true, Ordering::Relaxed);
    browser.close().await;
    publisher.close().await;
}
