//! The native QUIC transport against the real binary: two QUIC participants (palaver-client)
//! join one meeting, attach Opus media and each send a different tone; each decodes what the
//! server sends it and must hear the other's tone and not its own. Bad input: a wrong ALPN,
//! a bad token, no `auth` frame, garbage and oversized frames, an absurd frame length, and
//! garbage datagrams get errors, closes or counted drops — and the server keeps serving.

use crate::support::{FRAME, Meeting, ToneEncoder, assert_hears, collect, meeting, quic_address, quic_info};
use bytes::Bytes;
use palaver_client::{ClientError, ConnectOptions, JoinTarget, MediaTrack, QuicClient};
use palaver_core::ErrorCode;
use palaver_core::stream_frame::{FrameDecoder, frame_bytes};
use palaver_e2e::{Server, ServerOptions, TempDir};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TONE_A_HZ: f32 = 600.0;
const TONE_B_HZ: f32 = 1500.0;
/// Peak amplitude of both tones.
const TONE_AMPLITUDE: f32 = 6000.0;
/// The least amplitude of the other's tone a participant must hear.
const MIN_HEARD: f32 = 1000.0;
const TALK: Duration = Duration::from_secs(4);

/// A raw quinn connection with the given ALPN (for the bad-input cases).
async fn raw_connection(
    addr: SocketAddr,
    ca_pem: &str,
    alpn: &[u8],
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA cert");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![alpn.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).expect("QUIC TLS config");
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("client endpoint");
    endpoint.connect_with(quinn::ClientConfig::new(Arc::new(quic)), addr, "localhost").expect("connect").await
}

/// One raw signaling stream: write frames, read frames as JSON.
struct RawStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
}

impl RawStream {
    async fn open(connection: &quinn::Connection) -> Self {
        let (send, recv) = connection.open_bi().await.expect("open stream");
        Self { send, recv, decoder: FrameDecoder::new() }
    }

    async fn write(&mut self, payload: &[u8]) {
        self.send.write_all(&frame_bytes(payload)).await.expect("write frame");
    }

    /// The next frame as JSON, `None` when the stream ends or breaks.
    async fn read(&mut self) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(palaver_core::stream_frame::Decoded::Frame(f)) = self.decoder.next_frame().ok()? {
                return Some(serde_json::from_slice(&f).expect("server frames are JSON"));
            }
            let chunk = tokio::time::timeout_at(deadline.into(), self.recv.read_chunk(65_536, true)).await.ok()?;
            self.decoder.push(&chunk.ok()??.bytes);
        }
    }

    /// Reads until a frame of `ty` arrives (skipping e.g. roster deltas).
    async fn expect(&mut self, ty: &str) -> Value {
        loop {
            let frame = self.read().await.unwrap_or_else(|| panic!("stream ended while waiting for `{ty}`"));
            if frame["type"] == ty {
                return frame;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_quic_participants_hear_each_others_tone() {
    let users =
        [("0a000000-0000-4000-8000-0000000000a1", "Alice Quic"), ("0a000000-0000-4000-8000-0000000000b2", "Bob Quic")];
    let Meeting { dir: _dir, server, ca_pem, tokens: [alice, bob], join_url } =
        meeting("palaver-e2e-quic", users).await;
    let addr = quic_address(&server, &alice).await;

    let options = ConnectOptions::new(addr, "localhost", ca_pem.clone());
    let mut a = QuicClient::connect(&options, &alice).await.expect("Alice connects");
    let mut b = QuicClient::connect(&options, &bob).await.expect("Bob connects");
    assert!(a.welcome().heartbeat_interval_ms > 0);
    let joined_a = a.join(JoinTarget::MeetingLink { join_url: join_url.clone() }, None).await.expect("Alice joins");
    let joined_b = b.join(JoinTarget::MeetingLink { join_url }, None).await.expect("Bob joins");
    assert_eq!(joined_a.conversation_id, joined_b.conversation_id);

    // Datagrams before media.attach are counted and dropped by the QUIC shell.
    a.send_datagram(Bytes::from_static(b"not attached yet")).expect("datagram");
    let (ssrc_a, ssrc_b) = (0x0A0A_0001, 0x0B0B_0002);
    let to_a = a.attach_media(vec![MediaTrack::opus(ssrc_a)]).await.expect("Alice attaches");
    let to_b = b.attach_media(vec![MediaTrack::opus(ssrc_b)]).await.expect("Bob attaches");
    assert_eq!(to_a.len(), 1, "{to_a:?}");
    assert_eq!((to_a[0].kind, to_a[0].payload_type), (palaver_client::MediaKind::Audio, 111));
    assert_ne!(to_a[0].ssrc, to_b[0].ssrc);
    // Bad media.attach input is refused, the connection stays usable.
    let dup = a.attach_media(vec![MediaTrack::opus(5), MediaTrack::opus(5)]).await.unwrap_err();
    assert!(dup.is_refusal(ErrorCode::InvalidParameter), "{dup}");

    let mut rx_a = a.take_rtp_receiver().expect("RTP queue");
    let mut rx_b = b.take_rtp_receiver().expect("RTP queue");
    let (mut tx_a, mut tx_b) = (a.rtp_sender(ssrc_a, 111), b.rtp_sender(ssrc_b, 111));
    let garbage = a.connection().clone();
    let until = Instant::now() + TALK;
    let talk = async move {
        let (mut tone_a, mut tone_b) =
            (ToneEncoder::new(TONE_A_HZ, TONE_AMPLITUDE), ToneEncoder::new(TONE_B_HZ, TONE_AMPLITUDE));
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut n = 0u32;
        while Instant::now() < until {
            tick.tick().await;
            tx_a.send(&tone_a.next_frame(), FRAME as u32, Some(30)).expect("Alice sends");
            tx_b.send(&tone_b.next_frame(), FRAME as u32, Some(30)).expect("Bob sends");
            // Garbage datagrams in between (not RTP, truncated RTP, unknown SSRC): dropped, never fatal.
            n += 1;
            let junk: &[u8] = match n % 3 {
                0 => b"\xff\xfe garbage",
                1 => &[0x80, 111, 0, 1, 0, 0],
                _ => &[0x80, 111, 0, 1, 0, 0, 0, 9, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3],
            };
            garbage.send_datagram(Bytes::copy_from_slice(junk)).expect("garbage datagram");
        }
    };
    let end = until + Duration::from_millis(300);
    let (_, heard_a, heard_b) = tokio::join!(talk, collect(&mut rx_a, end), collect(&mut rx_b, end));
    println!("Alice stats {:?}; Bob stats {:?}", a.stats(), b.stats());
    assert_hears("Alice", &heard_a, TONE_B_HZ, TONE_A_HZ, MIN_HEARD);
    assert_hears("Bob", &heard_b, TONE_A_HZ, TONE_B_HZ, MIN_HEARD);
    assert!(heard_a.iter().all(|p| p.ssrc == to_a[0].ssrc), "Alice hears on the announced SSRC");

    let info = quic_info(&server, &alice).await;
    println!("GET /quic: {info}");
    // Alice is attached, so her garbage reaches the media worker (counted there), not `unattached`.
    assert_eq!(info["datagramsDropped"]["ingressFull"], 0, "{info}");
    assert_eq!(info["connections"], 2);

    // Leaving ends the session (session.ended arrives as an event).
    b.leave().await.expect("leave");
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = b.next_event().await {
            if let palaver_client::ServerMessage::SessionEnded { .. } = event {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ended, Ok(true), "Bob gets session.ended after leave");
    a.close().await;
    b.close().await;
}

/// The SRTP media carrier (`docs/quic.md`): Alice's media goes as SRTP over UDP straight to the
/// media worker (keys from the QUIC TLS exporter, after a STUN binding), Bob's as datagrams;
/// each hears the other's tone, so both carriers meet in one mix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_participant_on_the_srtp_carrier_hears_and_is_heard() {
    let users =
        [("0a000000-0000-4000-8000-0000000000c3", "Alice Srtp"), ("0a000000-0000-4000-8000-0000000000d4", "Bob Quic")];
    let Meeting { dir: _dir, server, ca_pem, tokens: [alice, bob], join_url } =
        meeting("palaver-e2e-quic-srtp", users).await;
    let addr = quic_address(&server, &alice).await;
    let mut srtp_options = ConnectOptions::new(addr, "localhost", ca_pem.clone());
    srtp_options.media = palaver_client::MediaCarrier::Srtp;
    let mut a = QuicClient::connect(&srtp_options, &alice).await.expect("Alice connects");
    let mut b = QuicClient::connect(&ConnectOptions::new(addr, "localhost", ca_pem), &bob).await.expect("Bob connects");
    assert_eq!(a.media_carrier(), palaver_client::MediaCarrier::Srtp);
    a.join(JoinTarget::MeetingLink { join_url: join_url.clone() }, None).await.expect("Alice joins");
    b.join(JoinTarget::MeetingLink { join_url }, None).await.expect("Bob joins");
    let (ssrc_a, ssrc_b) = (0x0C0C_0003, 0x0D0D_0004);
    let to_a = a.attach_media(vec![MediaTrack::opus(ssrc_a)]).await.expect("Alice attaches and binds");
    b.attach_media(vec![MediaTrack::opus(ssrc_b)]).await.expect("Bob attaches");
    let mut rx_a = a.take_rtp_receiver().expect("RTP queue");
    let mut rx_b = b.take_rtp_receiver().expect("RTP queue");
    let (mut tx_a, mut tx_b) = (a.rtp_sender(ssrc_a, 111), b.rtp_sender(ssrc_b, 111));
    let until = Instant::now() + TALK;
    let talk = async move {
        let (mut tone_a, mut tone_b) =
            (ToneEncoder::new(TONE_A_HZ, TONE_AMPLITUDE), ToneEncoder::new(TONE_B_HZ, TONE_AMPLITUDE));
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        while Instant::now() < until {
            tick.tick().await;
            tx_a.send(&tone_a.next_frame(), FRAME as u32, Some(30)).expect("Alice sends SRTP");
            tx_b.send(&tone_b.next_frame(), FRAME as u32, Some(30)).expect("Bob sends");
        }
    };
    let end = until + Duration::from_millis(300);
    let (_, heard_a, heard_b) = tokio::join!(talk, collect(&mut rx_a, end), collect(&mut rx_b, end));
    println!("Alice (SRTP) stats {:?}; Bob stats {:?}", a.stats(), b.stats());
    assert_hears("Alice", &heard_a, TONE_B_HZ, TONE_A_HZ, MIN_HEARD);
    assert_hears("Bob", &heard_b, TONE_A_HZ, TONE_B_HZ, MIN_HEARD);
    assert!(heard_a.iter().all(|p| p.ssrc == to_a[0].ssrc), "Alice hears on the announced SSRC");
    assert_eq!(a.stats().invalid_datagrams, 0, "every SRTP packet from the worker authenticates");
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_quic_input_gets_errors_and_the_server_keeps_serving() {
    let dir = TempDir::new("palaver-e2e-quic-bad");
    let server = Server::start_in(dir.path(), ServerOptions::default()).await;
    let ca_pem = std::fs::read_to_string(server.ca_file()).expect("CA file");
    let user = server.directory_user_token("0a000000-0000-4000-8000-0000000000d4", "Dana Quic").await;
    let addr = quic_address(&server, &user).await;
    let options = ConnectOptions::new(addr, "localhost", ca_pem.clone());

    // A wrong ALPN fails the TLS handshake.
    let wrong_alpn = raw_connection(addr, &ca_pem, b"h3").await;
    assert!(wrong_alpn.is_err(), "a connection with ALPN h3 must be refused");

    // A bad token: an error frame, then the connection closes (code 2).
    match QuicClient::connect(&options, "not-a-token").await {
        Err(ClientError::Refused { code, message }) => println!("bad token refused: {code}: {message}"),
        other => panic!("a bad token must be refused, got {other:?}"),
    }
    let conn = raw_connection(addr, &ca_pem, b"palaver/1").await.expect("handshake");
    let mut stream = RawStream::open(&conn).await;
    stream.write(br#"{"type":"join","target":{"kind":"groupCall","groupId":"x"}}"#).await;
    let refusal = stream.read().await.expect("an error frame");
    assert_eq!((refusal["type"].as_str(), refusal["code"].as_str()), (Some("error"), Some("MissingAuthentication")));
    match tokio::time::timeout(Duration::from_secs(5), conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => assert_eq!(close.error_code, 2u32.into()),
        other => panic!("expected an application close with code 2, got {other:?}"),
    }

    // Authenticated, then garbage frames: each answered with an error frame, the stream stays usable.
    let conn = raw_connection(addr, &ca_pem, b"palaver/1").await.expect("handshake");
    let mut stream = RawStream::open(&conn).await;
    stream.write(json!({"type":"auth","token":user}).to_string().as_bytes()).await;
    assert_eq!(stream.read().await.expect("welcome")["type"], "welcome");
    let cases: [(&[u8], &str); 4] = [
        (b"{nope", "InvalidJson"),
        (b"\xff\xfe\x00binary", "InvalidJson"),
        (br#"{"type":"teleport"}"#, "UnknownMessageType"),
        (br#"{"type":"media.attach","tracks":[]}"#, "InvalidState"),
    ];
    for (payload, code) in cases {
        stream.write(payload).await;
        let answer = stream.expect("error").await;
        assert_eq!(answer["code"], code, "{}: {answer}", String::from_utf8_lossy(payload));
    }
    let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(100_000));
    stream.write(big.as_bytes()).await;
    assert_eq!(stream.expect("error").await["code"], "PayloadTooLarge");
    stream.write(br#"{"type":"ping","nonce":7}"#).await;
    assert_eq!(stream.expect("pong").await["nonce"], 7);
    // Garbage datagrams on an unattached connection are dropped, not fatal.
    for _ in 0..20 {
        conn.send_datagram(Bytes::from_static(b"\x00\x01garbage")).expect("datagram");
    }
    stream.write(br#"{"type":"ping","nonce":8}"#).await;
    assert_eq!(stream.expect("pong").await["nonce"], 8);
    // An absurd frame length is a protocol violation: close code 1.
    stream.send.write_all(&u32::MAX.to_be_bytes()).await.expect("write");
    match tokio::time::timeout(Duration::from_secs(5), conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => assert_eq!(close.error_code, 1u32.into()),
        other => panic!("expected an application close with code 1, got {other:?}"),
    }

    // No stream at all within the auth timeout is not needed to prove liveness: a fresh client still works.
    let client = QuicClient::connect(&options, &user).await.expect("the server still accepts QUIC participants");
    let group = uuid::Uuid::new_v4().to_string();
    let joined = client.join(JoinTarget::GroupCall { group_id: group }, None).await.expect("join a group call");
    assert!(!joined.participant_id.is_empty());
    let info = quic_info(&server, &user).await;
    assert!(info["datagramsDropped"]["unattached"].as_u64().unwrap() >= 20, "{info}");
    client.close().await;
}
