//! SIP over TLS to a trunk (`transport = "tls"`), end to end between two palaver servers:
//! server A's trunk is server B's `listen_tls` (B plays the carrier's SBC; its number routes
//! to a directory user). First A trusts the wrong CA (`ca_file` = A's own CA): the handshake
//! fails, nothing reaches B, the caller's call ends and A's log says which trunk's
//! certificate was refused and against which `ca_file`. Then A trusts B's CA and names the
//! trunk `tls_server_name = "localhost"` (B's certificate's name; A still connects to
//! 127.0.0.1): a QUIC user on A calls B's number, B's user answers over QUIC, each hears
//! the other's tone through both mixers (SDES-SRTP, the TLS trunk's default, both ways;
//! B challenges A's INVITE with SHA-256 digest only, RFC 8760, and A's answer passes),
//! and B's user hangs up: B's BYE comes back over TLS (on the connection A opened: rsipstack
//! keeps a dialog on the flow its INVITE came on, as SBCs expect) and A's caller sees the
//! call end. No SIPp here: Debian's SIPp is built without TLS.

use crate::signaling::connect;
use crate::sip::user_answers_with_tone;
use crate::support::{FRAME, ToneEncoder, assert_hears, collect, quic_address};
use palaver_client::{CallEvent, ConnectOptions, MediaTrack, QuicClient, ServerMessage};
use palaver_core::protocol::ClientMessage;
use palaver_e2e::{Server, ServerOptions, TempDir};
use std::path::Path;
use std::time::{Duration, Instant};

const CALLER: &str = "0b000000-0000-4000-8000-0000000007c1";
const CALLEE: &str = "0b000000-0000-4000-8000-0000000007c2";
/// The number B owns (routed to `CALLEE`).
const B_NUMBER: &str = "+14255550177";
const CALLER_HZ: f32 = 440.0;
const CALLEE_HZ: f32 = 1000.0;
const TALK: Duration = Duration::from_secs(4);
/// The digest credentials of the trunk between A and B (both sides' `[[sip.trunks]]`).
const CREDENTIALS: &str = "username = \"palaver-a\"\npassword = \"tls-s3cret\"\n";

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server's `[sip]` with `listen_tls` on `tls_port` (its own generated certificate, in
/// `dir`/tls; `more_sip` more `[sip]` keys) and one TLS trunk to `trunk_port` trusting
/// `ca_file`, plus `more` TOML.
fn config(
    dir: &Path,
    tls_port: u16,
    trunk_port: u16,
    ca_file: &Path,
    more_sip: &str,
    more_trunk: &str,
    more: &str,
) -> String {
    let tls = dir.join("tls");
    format!(
        r#"[signaling.calls]
ring_timeout_secs = 10
allow_phone_targets = true

[sip]
listen = "127.0.0.1:0"
options_interval_secs = 0
listen_tls = "127.0.0.1:{tls_port}"
tls_cert = "{cert}"
tls_key = "{key}"
{more_sip}

[[sip.trunks]]
name = "tls-sbc"
address = "127.0.0.1:{trunk_port}"
transport = "tls"
ca_file = "{ca}"
allow_from = ["127.0.0.1"]
codecs = ["PCMU"]
{more_trunk}
{more}"#,
        cert = tls.join("server.pem").display(),
        key = tls.join("server.key").display(),
        ca = ca_file.display(),
    )
}

async fn start(dir: &Path, config: String) -> Server {
    Server::start_in(dir, ServerOptions { config_toml: Some(config), ..Default::default() }).await
}

fn log_of(server: &Server) -> String {
    std::fs::read_to_string(server.data_dir().join("palaver.log")).unwrap_or_default()
}

/// Waits until `server`'s log holds `marker`.
async fn logged(server: &Server, marker: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = log_of(server);
        if log.contains(marker) {
            return log;
        }
        assert!(Instant::now() < deadline, "the server never logged `{marker}`");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn next_call_event(client: &mut QuicClient) -> CallEvent {
    tokio::time::timeout(Duration::from_secs(20), client.next_call_event())
        .await
        .expect("a call event within 20 s")
        .expect("the connection is open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palaver_calls_a_trunk_over_sip_tls_verifying_its_certificate_and_both_sides_hear_each_other() {
    let (a_dir, b_dir) = (TempDir::new("palaver-e2e-sip-tls-a"), TempDir::new("palaver-e2e-sip-tls-b"));
    let (a_tls, b_tls) = (free_tcp_port(), free_tcp_port());

    // A trusts only its own CA, which did not sign B's certificate.
    let own_ca = a_dir.path().join("tls").join("ca.pem");
    let mut a = start(a_dir.path(), config(a_dir.path(), a_tls, b_tls, &own_ca, "", "", "")).await;
    let number = format!("[[phone_numbers]]\nnumber = \"{B_NUMBER}\"\nroute = \"user:8:orgid:{CALLEE}\"\n");
    // B demands digest credentials of A, with SHA-256 only (RFC 8760).
    let b_trunk = format!("{CREDENTIALS}digest_algorithms = [\"SHA-256\"]\n");
    let b = start(b_dir.path(), config(b_dir.path(), b_tls, a_tls, a.ca_file(), "", &b_trunk, &number)).await;
    let caller_token = a.directory_user_token(CALLER, "Cara Caller").await;
    let mut ws = connect(&a, &caller_token).await;
    ws.send(serde_json::json!({"type":"call.place","targets":[format!("4:{B_NUMBER}")]})).await;
    let call_id = ws.recv_type("call.placed").await["callId"].as_str().unwrap().to_owned();
    let ended = ws.recv_type("call.ended").await;
    assert_eq!(ended["callId"], call_id.as_str(), "{ended}");
    let log = logged(&a, "the trunk's certificate was refused").await;
    let line = log.lines().find(|l| l.contains("the trunk's certificate was refused")).unwrap();
    println!("untrusted trunk certificate: call.ended reason {}; A logged: {line}", ended["reason"]);
    assert!(line.contains("tls-sbc") && line.contains(&own_ca.display().to_string()), "{line}");
    assert!(!log_of(&b).contains("INVITE sip:"), "nothing reached B over an untrusted connection");
    drop(ws);
    a.terminate();

    // A trusts B's CA and checks the name `localhost` (B's certificate's), still dialling 127.0.0.1.
    let a_trunk = format!("tls_server_name = \"localhost\"\n{CREDENTIALS}");
    let a = start(a_dir.path(), config(a_dir.path(), a_tls, b_tls, b.ca_file(), "", &a_trunk, "")).await;
    let caller_token = a.directory_user_token(CALLER, "Cara Caller").await;
    let callee_token = b.directory_user_token(CALLEE, "Cole Callee").await;
    let mut callee_ws = connect(&b, &callee_token).await;
    let ca_pem = std::fs::read_to_string(a.ca_file()).unwrap();
    let addr = quic_address(&a, &caller_token).await;
    let mut caller =
        QuicClient::connect(&ConnectOptions::new(addr, "localhost", ca_pem), &caller_token).await.expect("QUIC");
    let placed = caller.request(ClientMessage::CallPlace { targets: vec![format!("4:{B_NUMBER}")] }).await.unwrap();
    let ServerMessage::CallPlaced { call_id, .. } = placed else { panic!("call.place: {placed:?}") };
    let incoming = callee_ws.recv_type("call.incoming").await;
    let b_call = incoming["callId"].as_str().unwrap().to_owned();
    let callee = user_answers_with_tone(&b, &callee_token, &b_call, TALK, CALLEE_HZ);
    let caller_side = async {
        loop {
            match next_call_event(&mut caller).await {
                CallEvent::Connected { call_id: connected, .. } if connected == call_id => break,
                CallEvent::Ended { .. } => panic!("the TLS call ended before it connected"),
                _ => {}
            }
        }
        let ssrc = 0x07C1_0001;
        caller.attach_call_media(&call_id, vec![MediaTrack::opus(ssrc)]).await.expect("media.attach in the call");
        let mut rx = caller.take_rtp_receiver().expect("RTP queue");
        let mut tx = caller.rtp_sender(ssrc, 111);
        let until = Instant::now() + TALK;
        let talk = async move {
            let mut tone = ToneEncoder::new(CALLER_HZ, 6000.0);
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while Instant::now() < until {
                tick.tick().await;
                tx.send(&tone.next_frame(), FRAME as u32, Some(30)).expect("send Opus");
            }
        };
        let (_, heard) = tokio::join!(talk, collect(&mut rx, until + Duration::from_millis(200)));
        heard
    };
    let ((callee_client, callee_heard), caller_heard) = tokio::join!(callee, caller_side);
    assert_hears("the caller on A (through the TLS trunk)", &caller_heard, CALLEE_HZ, CALLER_HZ, 1000.0);
    assert_hears("the callee on B (through the TLS trunk)", &callee_heard, CALLER_HZ, CALLEE_HZ, 1000.0);

    // The signaling went over TLS with SDES keys in the SDP (rsipstack logs each message).
    let a_log = log_of(&a);
    assert!(a_log.contains("SIP/2.0/TLS"), "no SIP/TLS message in A's log");
    // The Via of A's requests over TLS names A's listen_tls (palaver's own acceptor's address).
    assert!(a_log.contains(&format!("SIP/2.0/TLS 127.0.0.1:{a_tls}")), "A's Via names its listen_tls");
    let uri = format!("invite sip:{B_NUMBER}@localhost:{b_tls};transport=tls");
    assert!(a_log.to_ascii_lowercase().contains(&uri), "the request URI names the trunk by its tls_server_name");
    assert!(a_log.contains("a=crypto:"), "the TLS trunk offers SDES-SRTP by default");
    // A answered B's SHA-256-only challenge in RFC 8760's spelling (rsipstack's own is SHA256).
    let answer = a_log.lines().find(|l| l.contains("stream send") && l.contains("Authorization: Digest"));
    let answer = answer.expect("A's INVITE with its digest answer");
    assert!(answer.contains("algorithm=SHA-256"), "{answer}");

    // B's user hangs up: its BYE goes back over TLS; A's caller sees the end.
    callee_ws.send(serde_json::json!({"type":"call.hangUp","callId":b_call})).await;
    loop {
        if let CallEvent::Ended { call_id: ended, .. } = next_call_event(&mut caller).await {
            assert_eq!(ended, call_id);
            break;
        }
    }
    println!("TLS trunk call: both sides heard each other; B's BYE reached A over TLS");
    callee_client.close().await;
    caller.close().await;
}

/// A log line without its ANSI colour codes.
fn without_colours(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            plain.push(c);
        }
    }
    plain
}

/// A TCP relay to `to` whose connections the test can cut (a dropped SBC connection).
struct Relay {
    port: u16,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    async fn start(to: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = links.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await else { continue };
                let link = tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                kept.lock().unwrap().push(link.abort_handle());
            }
        });
        Relay { port, links }
    }

    /// Closes every relayed connection (both ends see the TCP connection go).
    fn cut(&self) -> usize {
        let links = std::mem::take(&mut *self.links.lock().unwrap());
        links.iter().for_each(|l| l.abort());
        links.len()
    }
}

/// Mutual TLS both ways, and a redial that keeps the trunk's name. B (the SBC) requires a
/// client certificate from A's CA on its `listen_tls` (`[sip] tls_client_ca`); A reaches B
/// through a TCP relay (its trunk `address`), trusting B's CA under `tls_server_name =
/// "localhost"`. Without `client_cert_file`, A's call ends at once: A logs that the trunk
/// requires a client certificate, B that the handshake was refused, and no INVITE reaches B.
/// With A's certificate (`client_cert_file` = A's generated one, which allows client
/// authentication) the call connects, B logs the connection with SNI `localhost` and a
/// client certificate. The relay then drops the connection and A's caller hangs up: A's BYE
/// goes to B's Contact (`127.0.0.1:<B's listen_tls>`, an IP: the relay's trunk's sole IP),
/// on a new TLS connection that must again send SNI `localhost` and A's certificate (B logs
/// it), and B's user sees the call end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_both_ways_and_a_redial_after_a_dropped_connection_keeps_the_trunks_name() {
    let (a_dir, b_dir) = (TempDir::new("palaver-e2e-sip-mtls-a"), TempDir::new("palaver-e2e-sip-mtls-b"));
    let (a_tls, b_tls) = (free_tcp_port(), free_tcp_port());
    let relay = Relay::start(format!("127.0.0.1:{b_tls}").parse().unwrap()).await;
    // A first runs only to make its CA (B's `tls_client_ca`).
    let own_ca = a_dir.path().join("tls").join("ca.pem");
    let mut a = start(a_dir.path(), config(a_dir.path(), a_tls, relay.port, &own_ca, "", "", "")).await;
    let number = format!("[[phone_numbers]]\nnumber = \"{B_NUMBER}\"\nroute = \"user:8:orgid:{CALLEE}\"\n");
    let client_ca = format!("tls_client_ca = \"{}\"", a.ca_file().display());
    let b = start(b_dir.path(), config(b_dir.path(), b_tls, a_tls, a.ca_file(), &client_ca, "", &number)).await;
    a.terminate();

    // No client certificate: B refuses the handshake, A's call ends at once.
    let a_trunk = "tls_server_name = \"localhost\"\n";
    let mut a = start(a_dir.path(), config(a_dir.path(), a_tls, relay.port, b.ca_file(), "", a_trunk, "")).await;
    let caller_token = a.directory_user_token(CALLER, "Cara Caller").await;
    let mut ws = connect(&a, &caller_token).await;
    let placed_at = Instant::now();
    ws.send(serde_json::json!({"type":"call.place","targets":[format!("4:{B_NUMBER}")]})).await;
    ws.recv_type("call.placed").await;
    let ended = ws.recv_type("call.ended").await;
    let took = placed_at.elapsed();
    let log = logged(&a, "requires a client certificate").await;
    let line = log.lines().find(|l| l.contains("requires a client certificate")).unwrap();
    println!("no client certificate: call.ended {} after {took:?}; A logged: {line}", ended["reason"]);
    assert!(line.contains("tls-sbc") && line.contains("client_cert_file"), "{line}");
    assert!(took < Duration::from_secs(5), "the call failed at once, not on a timer: {took:?}");
    let b_log = logged(&b, "SIP/TLS handshake on listen_tls refused").await;
    let refusal = b_log.lines().find(|l| l.contains("handshake on listen_tls refused")).unwrap();
    println!("B logged: {refusal}");
    assert!(!b_log.contains("INVITE sip:"), "nothing reached B without a client certificate");
    drop(ws);
    a.terminate();

    // A presents its certificate: the call connects through the relay.
    let tls = a_dir.path().join("tls");
    let a_trunk = format!(
        "tls_server_name = \"localhost\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
        tls.join("server.pem").display(),
        tls.join("server.key").display()
    );
    let a = start(a_dir.path(), config(a_dir.path(), a_tls, relay.port, b.ca_file(), "", &a_trunk, "")).await;
    let caller_token = a.directory_user_token(CALLER, "Cara Caller").await;
    let callee_token = b.directory_user_token(CALLEE, "Cole Callee").await;
    let mut callee_ws = connect(&b, &callee_token).await;
    let mut ws = connect(&a, &caller_token).await;
    ws.send(serde_json::json!({"type":"call.place","targets":[format!("4:{B_NUMBER}")]})).await;
    let call_id = ws.recv_type("call.placed").await["callId"].as_str().unwrap().to_owned();
    let incoming = callee_ws.recv_type("call.incoming").await;
    let b_call = incoming["callId"].as_str().unwrap().to_owned();
    let (mut callee, _) =
        user_answers_with_tone(&b, &callee_token, &b_call, Duration::from_millis(500), CALLEE_HZ).await;
    ws.recv_type("call.connected").await;
    let accepted = |log: &str| {
        log.lines().filter(|l| l.contains("SIP/TLS connection accepted")).map(without_colours).collect::<Vec<_>>()
    };
    let first = accepted(&log_of(&b));
    println!("B accepted: {first:?}");
    assert_eq!(first.len(), 1, "the refused handshake is not accepted; A's one connection is: {first:?}");
    assert!(first[0].contains("localhost") && first[0].contains("client_certificate=true"), "{}", first[0]);

    // The connection drops; A's caller hangs up: A's BYE needs a new connection.
    assert!(relay.cut() >= 1, "the relay carried A's connection");
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws.send(serde_json::json!({"type":"call.hangUp","callId":call_id})).await;
    loop {
        if let CallEvent::Ended { call_id: ended, .. } = next_call_event(&mut callee).await {
            assert_eq!(ended, b_call);
            break;
        }
    }
    let after = accepted(&log_of(&b));
    println!("B accepted after the drop: {:?}", &after[first.len()..]);
    let redial = after.get(first.len()).expect("A redialled B for its BYE");
    assert!(redial.contains("localhost"), "the redial's SNI is the trunk's tls_server_name: {redial}");
    assert!(redial.contains("client_certificate=true"), "{redial}");
    // A dialled B's Contact itself (an IP), not the trunk's address (the relay).
    let a_dials: Vec<String> =
        log_of(&a).lines().filter(|l| l.contains("TLS connection to trunk")).map(without_colours).collect();
    println!("A dialled: {a_dials:?}");
    let to_contact = format!("addr=127.0.0.1:{b_tls}");
    assert!(a_dials.iter().any(|l| l.contains(&to_contact) && l.contains("sni=Some(\"localhost\")")), "{a_dials:?}");
    println!("mutual TLS both ways; the BYE after the drop redialled with SNI localhost and reached B");
    callee.close().await;
}
