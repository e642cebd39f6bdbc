//! RTP latching against the real binary: SIPp (`call.xml` with `-mi 127.0.0.9`) calls a
//! number routed to a directory user; its SDP names 127.0.0.9 — the private address an SBC
//! behind NAT would write — while the phone's RTP comes from 127.0.0.1 (the trunk's
//! signaling address, as through a NAT). Without `rtp_latching` palaver sends to the SDP's
//! address and drops what the phone sends; with it the leg latches to the phone's source and
//! both sides hear each other.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::signaling::connect;
use crate::sip::{finished, server_rtp_port_logged_by, sipp_to, user_answers};
use crate::sip_media::{NUMBER, PHONE_HZ, USER, USER_HZ, phone_talks_on, start_trunk};
use crate::support::{assert_hears, tone_amplitude};

/// One call; returns the packets and the user's tone amplitude the phone got, and whether the
/// user heard the phone.
async fn call(latching: bool) -> (usize, f32, Vec<palaver_client::ReceivedRtp>) {
    let route = format!("user:8:orgid:{USER}");
    let trunk = format!("codecs = [\"PCMU\"]\nsrtp = \"off\"\nrtp_latching = {latching}");
    let prefix = format!("palaver-e2e-sipmedia-latch-{latching}");
    let (dir, server, sip) = start_trunk(&prefix, &trunk, NUMBER, &route, "").await;
    let token = server.directory_user_token(USER, "Nat Traversal").await;
    let mut ws = connect(&server, &token).await;
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = phone.local_addr().unwrap().port().to_string();
    let extra = ["-m", "1", "-trace_logs", "-mi", "127.0.0.9", "-set", "rtp_port", &rtp_port].map(String::from);
    let carrier = sipp_to(NUMBER, sip, "call.xml", "127.0.0.1", &extra, dir.path());
    let incoming = ws.recv_type("call.incoming").await;
    let call_id = incoming["callId"].as_str().unwrap().to_owned();
    let user = user_answers(&server, &token, &call_id, Duration::from_secs(3));
    let phone_side = async {
        let port = server_rtp_port_logged_by(dir.path(), "call_").await;
        phone_talks_on(&phone, SocketAddr::from(([127, 0, 0, 1], port)), None, Duration::from_secs(3)).await
    };
    let ((client, user_heard), heard) = tokio::join!(user, phone_side);
    let tail = &heard.pcm[heard.pcm.len() / 3..];
    let (user_tone, own) = (tone_amplitude(tail, USER_HZ), tone_amplitude(tail, PHONE_HZ));
    println!(
        "rtp_latching = {latching}: the phone (SDP 127.0.0.9, RTP from 127.0.0.1) got {} packets; the user's \
         {USER_HZ} Hz at {user_tone:.0}, own {PHONE_HZ} Hz {own:.0}; the user got {} packets",
        heard.good,
        user_heard.len()
    );
    finished(carrier, "a call whose SDP names another address").await;
    let ended = ws.recv_type("call.ended").await;
    assert_eq!(ended["callId"], call_id.as_str());
    client.close().await;
    (heard.good, user_tone, user_heard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_behind_nat_is_heard_both_ways_only_when_its_trunk_latches() {
    let (packets, _, _) = call(false).await;
    assert_eq!(packets, 0, "without latching palaver sends to the SDP's address");
    let (packets, user_tone, user_heard) = call(true).await;
    assert!(packets >= 100, "latched: the phone gets the mix ({packets} packets)");
    assert!(user_tone > 1000.0, "the phone hears the user ({user_tone:.0})");
    assert_hears("the directory user", &user_heard, PHONE_HZ, USER_HZ, 1000.0);
}
