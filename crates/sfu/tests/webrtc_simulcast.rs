//! Issue 4, end to end with a real WebRTC stack on both sides: a webrtc-rs (`webrtc` 0.21)
//! publisher sends three rid-based simulcast layers (q/h/f) of synthetic VP8 through a real
//! media worker (ICE-lite, DTLS-SRTP, answers written by `palaver_sfu::webrtc::sdp`), and a
//! webrtc-rs subscriber receives the forwarded stream. The test moves the subscriber's maximum
//! height with `Command::SetConsumerMaxHeight` (720p → 360p → 180p → 720p) and checks what the
//! subscriber got: every layer change starts on a keyframe of the target layer, no frame is
//! lost or repeated across a switch, the RTP sequence numbers are continuous (no gap, no
//! duplicate) and the timestamps strictly increase.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use palaver_core::MediaKind;
use palaver_sfu::engine::{Command, RouterId, WebRtcTransportSpec};
use palaver_sfu::net::{WorkerConfig, WorkerPool};
use palaver_sfu::router::{ConsumerId, ConsumerSpec, LayerSpec, ProducerId, ProducerSpec, TransportId};
use palaver_sfu::rtp::ShortId;
use palaver_sfu::webrtc::dtls::DtlsIdentity;
use palaver_sfu::webrtc::sdp::{AnswerParams, AnswerTrack, EXT_MID, EXT_RID, Offer, write_answer};
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCPeerConnectionState, RTCSessionDescription, Registry, configure_simulcast_extension_headers,
    register_default_interceptors,
};

const ROOM: RouterId = RouterId(1);
const PUBLISHER: TransportId = TransportId(1);
const SUBSCRIBER: TransportId = TransportId(2);
const PRODUCER: ProducerId = ProducerId(10);
const CONSUMER: ConsumerId = ConsumerId(20);
const SUBSCRIBER_SSRC: u32 = 0x5EED_0001;

/// Simulcast layers, lowest first (the order the publisher lists its rids in).
const RIDS: [&str; 3] = ["q", "h", "f"];
const HEIGHTS: [u16; 3] = [180, 360, 720];
const PAYLOAD_SIZES: [usize; 3] = [200, 500, 1000];
/// Frames per second per layer, and a keyframe every `KEYFRAME_EVERY` frames, with each layer
/// at a different phase so a switch can only happen on the target layer's own keyframe.
const FRAME_INTERVAL: Duration = Duration::from_millis(33);
const KEYFRAME_EVERY: u32 = 30;
const VP8_TICKS_PER_FRAME: u32 = 3000;

fn is_keyframe_frame(layer: usize, frame: u32) -> bool {
    (frame + KEYFRAME_EVERY - 10 * layer as u32).is_multiple_of(KEYFRAME_EVERY)
}

/// Peer-connection events the test waits on.
struct Events {
    state: watch::Sender<RTCPeerConnectionState>,
    tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.send(track);
    }
}

struct Peer {
    pc: Arc<dyn PeerConnection>,
    state: watch::Receiver<RTCPeerConnectionState>,
    tracks: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
}

async fn peer(simulcast_extensions: bool) -> Peer {
    let mut media = MediaEngine::default();
    media.register_default_codecs().expect("default codecs");
    if simulcast_extensions {
        configure_simulcast_extension_headers(&mut media).expect("simulcast extensions");
    }
    let registry = register_default_interceptors(Registry::new(), &mut media).expect("interceptors");
    let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
    let (tracks_tx, tracks) = mpsc::unbounded_channel();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Events { state: state_tx, tracks: tracks_tx }))
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await
        .expect("peer connection");
    Peer { pc: Arc::new(pc), state, tracks }
}

/// Creates the peer's offer and sets it as its local description; returns the SDP.
async fn local_offer(pc: &Arc<dyn PeerConnection>) -> String {
    let offer = pc.create_offer(None).await.expect("create offer");
    pc.set_local_description(offer).await.expect("set local offer");
    pc.local_description().await.expect("local description").sdp
}

/// The server side of one transport: ICE-lite credentials, the worker's candidate and the
/// DTLS identity, as the negotiator of `palaver run` writes them.
fn answer(offer: &Offer, identity: &DtlsIdentity, pool: &WorkerPool, n: u32, send: &[Option<AnswerTrack>]) -> String {
    write_answer(
        offer,
        &AnswerParams {
            ice_ufrag: &format!("ufrag{n}"),
            ice_pwd: &format!("a-long-enough-ice-password-{n}"),
            fingerprint: identity.fingerprint(),
            candidate: pool.workers()[0].local_addr,
            session_id: u64::from(n),
            send,
        },
    )
}

fn transport(id: TransportId, n: u32, offer: &Offer, identity: &DtlsIdentity) -> Command {
    Command::AddWebRtcTransport(Box::new(WebRtcTransportSpec {
        id,
        router: ROOM,
        ice_ufrag: format!("ufrag{n}"),
        ice_pwd: format!("a-long-enough-ice-password-{n}"),
        dtls: identity.clone(),
        remote_fingerprint: offer.fingerprint.clone(),
    }))
}

async fn wait_connected(peer: &mut Peer, who: &str) {
    let connected = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let state = *peer.state.borrow_and_update();
            match state {
                RTCPeerConnectionState::Connected => return Ok(()),
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => return Err(state),
                _ => {}
            }
            if peer.state.changed().await.is_err() {
                return Err(RTCPeerConnectionState::Closed);
            }
        }
    })
    .await;
    match connected {
        Ok(Ok(())) => {}
        Ok(Err(state)) => panic!("{who} peer connection ended in state {state}"),
        Err(_) => panic!("{who} peer connection did not connect within 20 s"),
    }
}

/// One VP8 packet as the subscriber decoded it from the synthetic payload.
#[derive(Debug, Clone, Copy)]
struct Received {
    sequence: u16,
    timestamp: u32,
    layer: usize,
    frame: u32,
    keyframe: bool,
}

/// Synthetic VP8 payload: a payload descriptor (S=1, PID=0), a one-byte VP8 payload header
/// whose P bit says keyframe or not (what the router inspects), then the test's own tag
/// (layer, frame number, keyframe flag) and padding up to the layer's size.
fn vp8_payload(layer: usize, frame: u32, keyframe: bool) -> Bytes {
    let mut p = Vec::with_capacity(PAYLOAD_SIZES[layer]);
    p.push(0x10);
    p.push(if keyframe { 0x00 } else { 0x01 });
    p.push(layer as u8);
    p.extend_from_slice(&frame.to_be_bytes());
    p.push(u8::from(keyframe));
    p.resize(PAYLOAD_SIZES[layer], 0xAB);
    Bytes::from(p)
}

fn parse_payload(packet: &rtp::Packet) -> Option<(usize, u32, bool)> {
    let p = &packet.payload;
    if p.len() < 8 || p[0] != 0x10 {
        return None;
    }
    let frame = u32::from_be_bytes([p[3], p[4], p[5], p[6]]);
    let keyframe = p[7] == 1;
    // The VP8 header's P bit and the tag must agree (they are written together).
    (usize::from(p[2]) < RIDS.len() && (p[1] & 1 == 0) == keyframe).then_some((usize::from(p[2]), frame, keyframe))
}

/// Writes all three layers, one packet per frame each, until `stop`; `frame_counter` is the
/// shared frame number the test reads when it issues a command.
async fn publish(track: PublishedTrack, frame_counter: Arc<AtomicU32>, stop: Arc<AtomicBool>) {
    let PublishedTrack { track, ssrcs, vp8_payload_type: payload_type, mid, mid_id, rid_id } = track;
    // Independent random sequence and timestamp bases per layer, as a real encoder has.
    let seq_base: [u16; 3] = [rand::random(), rand::random(), rand::random()];
    let ts_base: [u32; 3] = [rand::random(), rand::random(), rand::random()];
    let mut tick = tokio::time::interval(FRAME_INTERVAL);
    let mut frame: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        frame_counter.store(frame, Ordering::Relaxed);
        for layer in 0..RIDS.len() {
            let keyframe = is_keyframe_frame(layer, frame);
            let mut header = rtp::header::Header {
                version: 2,
                marker: true,
                payload_type,
                sequence_number: seq_base[layer].wrapping_add(frame as u16),
                timestamp: ts_base[layer].wrapping_add(frame.wrapping_mul(VP8_TICKS_PER_FRAME)),
                ssrc: ssrcs[layer],
                extension: true,
                extension_profile: rtp::header::EXTENSION_PROFILE_ONE_BYTE,
                ..Default::default()
            };
            header.set_extension(mid_id, Bytes::from(mid.clone().into_bytes())).expect("mid extension");
            header.set_extension(rid_id, Bytes::from_static(RIDS[layer].as_bytes())).expect("rid extension");
            let packet = rtp::Packet { header, payload: vp8_payload(layer, frame, keyframe) };
            if let Err(e) = track.write_rtp(packet).await {
                panic!("publisher write_rtp failed at frame {frame} layer {layer}: {e}");
            }
        }
        frame += 1;
    }
}

/// Waits until the subscriber has received a packet of `layer`, collecting everything.
async fn wait_for_layer(
    rx: &mut mpsc::UnboundedReceiver<Received>,
    log: &mut Vec<Received>,
    layer: usize,
    within: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(r)) => {
                log.push(r);
                if r.layer == layer {
                    return true;
                }
            }
            Ok(None) | Err(_) => return false,
        }
    }
}

/// The publisher's negotiated track and what its packets must carry.
#[derive(Clone)]
struct PublishedTrack {
    track: Arc<TrackLocalStaticRTP>,
    ssrcs: [u32; 3],
    vp8_payload_type: u8,
    mid: String,
    mid_id: u8,
    rid_id: u8,
}

/// A webrtc-rs peer with one video track of three rid encodings (q/h/f) on a sendonly
/// transceiver; the server side becomes a transport plus a three-layer producer.
async fn connect_publisher(pool: &WorkerPool, identity: &DtlsIdentity) -> (Peer, PublishedTrack) {
    let worker = &pool.workers()[0];
    let peer = peer(true).await;
    let ssrcs: [u32; 3] = [rand::random(), rand::random(), rand::random()];
    let vp8 = RTCRtpCodec {
        mime_type: "video/VP8".to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    };
    let encodings = RIDS
        .iter()
        .zip(ssrcs)
        .map(|(rid, ssrc)| RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                rid: (*rid).into(),
                ssrc: Some(ssrc),
                ..Default::default()
            },
            active: true,
            codec: vp8.clone(),
            ..Default::default()
        })
        .collect();
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "publisher".to_owned(),
        "camera".to_owned(),
        "camera".to_owned(),
        RtpCodecKind::Video,
        encodings,
    )));
    peer.pc
        .add_transceiver_from_track(
            track.clone() as Arc<dyn TrackLocal>,
            Some(RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendonly, ..Default::default() }),
        )
        .await
        .expect("publisher transceiver");
    let sdp = local_offer(&peer.pc).await;
    let offer = Offer::parse(&sdp).expect("server parses the webrtc-rs simulcast offer");
    let video = &offer.media[0];
    assert_eq!(video.send_rids, RIDS, "webrtc-rs offers the three rids\n{sdp}");
    let ext_id = |uri: &str| video.extmaps.iter().find(|(_, u)| u == uri).map(|(id, _)| *id);
    let (mid_id, rid_id) = (ext_id(EXT_MID).expect("mid extmap"), ext_id(EXT_RID).expect("rid extmap"));
    let accepted = video.accepted_codecs();
    let codecs: Vec<_> = accepted.iter().filter_map(|c| Some((c.payload_type, c.codec()?))).collect();
    let vp8_payload_type =
        accepted.iter().find(|c| c.name.eq_ignore_ascii_case("vp8")).expect("VP8 offered").payload_type;
    let layers = RIDS
        .iter()
        .zip(HEIGHTS)
        .map(|(rid, height)| LayerSpec {
            rid: ShortId::new(rid.as_bytes()),
            ssrc: None,
            rtx_ssrc: None,
            width: height / 9 * 16,
            height,
            max_bitrate_bps: u64::from(height) * 3000,
        })
        .collect();
    worker.send(transport(PUBLISHER, 1, &offer, identity)).unwrap();
    let spec = ProducerSpec {
        id: PRODUCER,
        transport: PUBLISHER,
        kind: MediaKind::Video,
        mid: ShortId::new(video.mid.as_bytes()),
        codecs,
        layers,
        extensions: video.extension_map(),
    };
    worker.send(Command::AddProducer { router: ROOM, spec }).unwrap();
    let answer_sdp = answer(&offer, identity, pool, 1, &[None]);
    peer.pc
        .set_remote_description(RTCSessionDescription::answer(answer_sdp.clone()).unwrap())
        .await
        .unwrap_or_else(|e| panic!("publisher accepts the server answer: {e}\n{answer_sdp}"));
    (peer, PublishedTrack { track, ssrcs, vp8_payload_type, mid: video.mid.clone(), mid_id, rid_id })
}

/// A webrtc-rs peer with one receive-only video transceiver; the server sends the producer
/// to it as `SUBSCRIBER_SSRC` through a consumer that starts at "any height".
async fn connect_subscriber(pool: &WorkerPool, identity: &DtlsIdentity) -> Peer {
    let worker = &pool.workers()[0];
    let peer = peer(false).await;
    peer.pc
        .add_transceiver_from_kind(
            RtpCodecKind::Video,
            Some(RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() }),
        )
        .await
        .expect("subscriber transceiver");
    let sdp = local_offer(&peer.pc).await;
    let offer = Offer::parse(&sdp).expect("server parses the subscriber offer");
    worker.send(transport(SUBSCRIBER, 2, &offer, identity)).unwrap();
    let spec = ConsumerSpec {
        id: CONSUMER,
        transport: SUBSCRIBER,
        producer: PRODUCER,
        ssrc: SUBSCRIBER_SSRC,
        rtx: None,
        paused: false,
        max_height: 1080,
    };
    worker.send(Command::AddConsumer { router: ROOM, spec }).unwrap();
    let send = [Some(AnswerTrack {
        ssrc: SUBSCRIBER_SSRC,
        stream_id: "palaver-video".into(),
        track_id: "palaver-video-0".into(),
    })];
    let answer_sdp = answer(&offer, identity, pool, 2, &send);
    peer.pc
        .set_remote_description(RTCSessionDescription::answer(answer_sdp.clone()).unwrap())
        .await
        .unwrap_or_else(|e| panic!("subscriber accepts the server answer: {e}\n{answer_sdp}"));
    peer
}

/// Reads the subscriber's track into `Received` records until the track ends; returns how
/// many packets did not carry a payload the publisher wrote.
fn spawn_reader(remote: Arc<dyn TrackRemote>, tx: mpsc::UnboundedSender<Received>) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let mut foreign = 0u32;
        while let Some(event) = remote.poll().await {
            let TrackRemoteEvent::OnRtpPacket(packet) = event else { continue };
            assert_eq!(packet.header.ssrc, SUBSCRIBER_SSRC, "forwarded under the subscriber's SSRC");
            let Some((layer, frame, keyframe)) = parse_payload(&packet) else {
                foreign += 1;
                continue;
            };
            let (sequence, timestamp) = (packet.header.sequence_number, packet.header.timestamp);
            if tx.send(Received { sequence, timestamp, layer, frame, keyframe }).is_err() {
                break;
            }
        }
        foreign
    })
}

/// The whole received stream: sequence numbers continuous, timestamps strictly increasing
/// (by less than a second), every frame of a layer present, and every layer change on a
/// keyframe of the new layer with no frame lost or repeated across it. From `settled` on (the
/// first 720p packet) the layers must be exactly 720p → 360p → 180p → 720p, each switch
/// to the commanded layer within one keyframe period of its command (`(layer, frame)`).
fn check_stream(log: &[Received], settled: usize, commands: &[(usize, u32)]) {
    assert!(log[0].keyframe, "the stream starts on a keyframe: {:?}", log[0]);
    let mut runs = vec![log[settled].layer];
    for (index, pair) in log.windows(2).enumerate() {
        let (a, b) = (pair[0], pair[1]);
        assert_eq!(b.sequence, a.sequence.wrapping_add(1), "sequence gap or duplicate between {a:?} and {b:?}");
        let ts_step = b.timestamp.wrapping_sub(a.timestamp) as i32;
        assert!(ts_step > 0 && ts_step < 90_000, "timestamp step {ts_step} between {a:?} and {b:?}");
        if a.layer == b.layer {
            assert_eq!(b.frame, a.frame + 1, "frame skipped inside layer {}: {a:?} → {b:?}", RIDS[a.layer]);
            continue;
        }
        let (from, to) = (RIDS[a.layer], RIDS[b.layer]);
        assert!(b.keyframe && is_keyframe_frame(b.layer, b.frame), "switch {from} → {to} not on a keyframe: {b:?}");
        assert!(
            b.frame == a.frame || b.frame == a.frame + 1,
            "frames lost or repeated across {from} → {to}: {a:?} → {b:?}"
        );
        if index < settled {
            continue; // ramp-up while the layers start: not commanded
        }
        let (target, issued_at) = commands[runs.len() - 1];
        runs.push(b.layer);
        assert_eq!(b.layer, target, "switch {} went to {to}", runs.len() - 1);
        assert!(
            b.frame + 1 >= issued_at && b.frame <= issued_at + KEYFRAME_EVERY,
            "switch to {to} at frame {} but the command was issued at frame {issued_at}",
            b.frame
        );
    }
    assert_eq!(runs, vec![2, 1, 0, 2], "layers the subscriber saw after reaching 720p, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_rs_simulcast_switches_layers_on_keyframes_with_continuous_sequence() {
    let config = WorkerConfig { workers: 1, bind: "127.0.0.1:0".parse().unwrap(), ..WorkerConfig::default() };
    let pool = WorkerPool::start(config).expect("worker pool");
    let worker = &pool.workers()[0];
    let identity = DtlsIdentity::generate_server().expect("server DTLS identity");
    worker.send(Command::CreateRouter { router: ROOM }).unwrap();
    let (mut publisher, published) = connect_publisher(&pool, &identity).await;
    let mut subscriber = connect_subscriber(&pool, &identity).await;
    wait_connected(&mut publisher, "publisher").await;
    wait_connected(&mut subscriber, "subscriber").await;

    let frame_counter = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn(publish(published, frame_counter.clone(), stop.clone()));
    // The subscriber's track opens on the first forwarded packet.
    let remote = tokio::time::timeout(Duration::from_secs(10), subscriber.tracks.recv())
        .await
        .expect("subscriber gets a track within 10 s")
        .expect("track channel open");
    let (received_tx, mut received) = mpsc::unbounded_channel();
    let reader = spawn_reader(remote, received_tx);

    // Layers start one after another, so the stream may ramp up; it settles on 720p (any
    // height allowed). Then down to 360p and 180p, then back up to 720p.
    let mut log = Vec::new();
    let reached = wait_for_layer(&mut received, &mut log, 2, Duration::from_secs(10)).await;
    assert!(reached, "subscriber never received the 720p layer; got {} packets", log.len());
    let settled = log.len() - 1;
    let mut commands = Vec::new();
    for (max_height, layer) in [(400u16, 1usize), (200, 0), (1080, 2)] {
        tokio::time::sleep(Duration::from_millis(700)).await; // let the current layer run
        let issued_at_frame = frame_counter.load(Ordering::Relaxed);
        worker.send(Command::SetConsumerMaxHeight { router: ROOM, consumer: CONSUMER, max_height }).unwrap();
        commands.push((layer, issued_at_frame));
        let switched = wait_for_layer(&mut received, &mut log, layer, Duration::from_secs(5)).await;
        assert!(switched, "no switch to layer {} within 5 s of max_height {max_height}", RIDS[layer]);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    sender.await.expect("publisher task");
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(r) = received.try_recv() {
        log.push(r);
    }
    subscriber.pc.close().await.ok();
    publisher.pc.close().await.ok();
    let foreign = reader.await.expect("reader task");
    let counters = pool.counters();
    let layers: Vec<&str> = log.windows(2).filter(|w| w[0].layer != w[1].layer).map(|w| RIDS[w[1].layer]).collect();
    println!(
        "subscriber received {} packets ({foreign} unparsable), started on {}, then switched to {layers:?} \
         (720p reached at packet {settled}); worker: layer switches {}, keyframe requests {}, forwarded {}",
        log.len(),
        RIDS[log[0].layer],
        counters.layer_switches,
        counters.keyframe_requests,
        counters.rtp_forwarded
    );
    assert_eq!(foreign, 0, "every forwarded payload is one the publisher wrote");
    check_stream(&log, settled, &commands);
}
