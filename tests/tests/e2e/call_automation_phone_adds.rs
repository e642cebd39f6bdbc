//! Phone numbers dialled into a group call by Call Automation, with a real trunk leg: SIPp is
//! the carrier answering palaver's INVITE (`tests/sipp/uas_answer_rtp*.xml`) and this test's
//! UDP socket is the phone's RTP; an agent (a QUIC participant) and the application are in
//! the group call. Each case checks the callbacks, that the agent and the phone hear each
//! other's tones, that removing the phone ends with palaver's BYE, and the `PSTN` usage
//! records of the phone's minutes.
//!
//! - `add_participant` with one media worker: the leg answered in the ring's conference is
//!   re-seated in the group call's in place (SIPp's scenario fails on any re-INVITE);
//! - the same with two workers: the ring's media is placed on the group call's worker, so
//!   palaver's INVITE already offers that socket and nothing is re-INVITEd;
//! - `createCall` to the number (a 1:1 call), then `move_participants` of that dialled-out
//!   phone into the group call: no BYE and no re-INVITE, and two `PSTN` records (the 1:1 call,
//!   then the group call); with two workers the moved phone is re-INVITEd to the group call's
//!   socket, and a trunk refusing that re-INVITE gets palaver's BYE.

use crate::call_automation::{Backend, Talker, connect_to_group_call, heard_at, post, talker};
use crate::sip::{PHONE_HZ, finished, free_udp_port, logged_after, phone_talks, require_sipp, scenario, uas_from};
use crate::support::tone_amplitude;
use axum::http::StatusCode;
use palaver_e2e::{Server, ServerOptions, TempDir};
use reqwest::Method;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

pub(crate) const OWNED: &str = "+14255550100";
pub(crate) const PHONE: &str = "4:+14255550123";
pub(crate) const AGENT_HZ: f32 = 440.0;

pub(crate) fn phone_id() -> Value {
    json!({"rawId": PHONE, "phoneNumber": {"value": "+14255550123"}})
}

/// palaver with `workers` media workers, phone targets allowed, one trunk to `carrier_port`.
pub(crate) async fn start(prefix: &str, workers: usize, backend: &Backend, carrier_port: u16) -> (TempDir, Server) {
    require_sipp();
    let dir = TempDir::new(prefix);
    let config = format!(
        r#"{events}
[signaling.calls]
allow_phone_targets = true
ring_timeout_secs = 20

[media]
workers = {workers}

[sip]
listen = "127.0.0.1:0"
options_interval_secs = 0

[[sip.trunks]]
name = "carrier"
address = "127.0.0.1:{carrier_port}"
allow_from = ["127.0.0.1"]
codecs = ["PCMU"]

[[phone_numbers]]
number = "{OWNED}"
route = "call-automation"
"#,
        events = backend.incoming_call_config()
    );
    let server = Server::start_in(dir.path(), ServerOptions { config_toml: Some(config), ..Default::default() }).await;
    (dir, server)
}

/// The phone talks to palaver's `port` while the agent listens: (agent hears the phone, phone
/// hears the agent, phone hears itself).
async fn both_ways(agent: &mut Talker, socket: UdpSocket, port: u16) -> (f32, f32, f32) {
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let phone_side = tokio::spawn(async move { phone_talks(&socket, to, Duration::from_millis(2000)).await });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let agent_hears_phone = heard_at(agent, PHONE_HZ).await;
    let (heard, packets) = phone_side.await.unwrap();
    let tail = &heard[heard.len() / 3..];
    let (phone_hears_agent, itself) = (tone_amplitude(tail, AGENT_HZ), tone_amplitude(tail, PHONE_HZ));
    println!(
        "the agent hears the phone's {PHONE_HZ} Hz at {agent_hears_phone:.0}; the phone ({packets} µ-law packets) \
         hears the agent's {AGENT_HZ} Hz at {phone_hears_agent:.0} (itself {itself:.0})"
    );
    assert!(agent_hears_phone > 300.0, "the agent does not hear the phone ({agent_hears_phone:.0})");
    assert!(phone_hears_agent > 300.0, "the phone does not hear the agent ({phone_hears_agent:.0})");
    assert!(itself < phone_hears_agent / 5.0, "the phone hears itself");
    (agent_hears_phone, phone_hears_agent, itself)
}

/// The `PSTN` usage records of the phone (waits until there are `n`).
pub(crate) async fn pstn_records(server: &Server, n: usize) -> Vec<Value> {
    let day = |d: i64| (chrono::Utc::now() + chrono::Duration::days(d)).format("%Y-%m-%d").to_string();
    let path = format!("/usage?from={}&to={}", day(-1), day(2));
    for _ in 0..100 {
        let (status, body) = server.signed(Method::GET, &path, "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let rows: Vec<Value> = body["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["UsageType"] == "PSTN" && r["UserIdA"] == PHONE)
            .cloned()
            .collect();
        if rows.len() >= n {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {n} PSTN records for {PHONE}");
}

fn assert_outbound_on_the_trunk(row: &Value) {
    assert_eq!(
        (&row["Direction"], &row["Trunk"], &row["PhoneNumber"]),
        (&json!("outbound"), &json!("carrier"), &json!(OWNED)),
        "{row}"
    );
    assert!(row["DurationMs"].as_i64().unwrap_or_default() > 0, "{row}");
}

/// `add_participant` of the number into the agent's group call with `workers` media workers;
/// SIPp answers with `scenario_file`, which logs `port_marker` with the port the phone's RTP
/// goes to in the group call.
async fn add_phone(workers: usize, scenario_file: &str, port_marker: &str) {
    let backend = Backend::start().await;
    let carrier_port = free_udp_port();
    let (dir, server) = start(&format!("palaver-e2e-ca-phone-add-{workers}"), workers, &backend, carrier_port).await;
    let (_, agent_token) = server.create_user_token(&["voip"]).await;
    let group = uuid::Uuid::new_v4().to_string();
    let mut agent = talker(&server, &agent_token, &group, AGENT_HZ, 0x0A6E_0002).await;
    let gc = connect_to_group_call(&server, &backend, &group, "gc").await;

    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = socket.local_addr().unwrap().port().to_string();
    let extra = ["-trace_logs", "-set", "rtp_port", &rtp_port];
    let carrier = uas_from(dir.path(), carrier_port, &scenario(scenario_file), &extra);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let add = json!({"participantToAdd": phone_id(), "operationContext": "dial",
        "sourceCallerIdNumber": {"value": OWNED}});
    let added =
        post(&server, &format!("/calling/callConnections/{gc}/participants:add"), &add, StatusCode::ACCEPTED).await;
    let invitation = added["invitationId"].as_str().unwrap().to_owned();
    let done = backend.wait("cb/gc", "AddParticipantSucceeded", |e| e["data"]["participant"]["rawId"] == PHONE).await;
    assert_eq!(
        (&done["data"]["operationContext"], &done["data"]["invitationId"]),
        (&json!("dial"), &json!(invitation))
    );
    let roster = backend
        .wait("cb/gc", "ParticipantsUpdated", |e| {
            e["data"]["participants"].as_array().is_some_and(|ps| ps.iter().any(|p| p["identifier"]["rawId"] == PHONE))
        })
        .await;
    println!("group call roster with the dialled phone: {}", roster["data"]["participants"]);
    let prefix = scenario_file.trim_end_matches(".xml");
    let port: u16 =
        logged_after(dir.path(), prefix, port_marker).await.split_whitespace().next().unwrap().parse().unwrap();
    println!("{workers} worker(s): the phone's RTP goes to palaver's port {port} ({port_marker})");
    both_ways(&mut agent, socket, port).await;

    let remove = json!({"participantToRemove": phone_id(), "operationContext": "bye"});
    post(&server, &format!("/calling/callConnections/{gc}/participants:remove"), &remove, StatusCode::ACCEPTED).await;
    backend.wait("cb/gc", "RemoveParticipantSucceeded", |e| e["data"]["operationContext"] == "bye").await;
    finished(carrier, "a phone dialled into a group call, hung up by palaver").await;
    let rows = pstn_records(&server, 1).await;
    assert_eq!(rows.len(), 1, "one PSTN record: {rows:?}");
    assert_outbound_on_the_trunk(&rows[0]);
    agent.client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_number_added_to_a_group_call_answers_and_talks_with_the_agent() {
    add_phone(1, "uas_answer_rtp.xml", "SERVER_RTP_PORT ").await;
}

/// Two workers: the ring's media is placed on the group call's worker (`colocate`), so the
/// INVITE already offers that socket and the answered leg moves in place (no re-INVITE:
/// `uas_answer_rtp.xml` fails on one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_number_added_to_a_group_call_with_two_workers_is_offered_its_socket_and_not_re_invited() {
    add_phone(2, "uas_answer_rtp.xml", "SERVER_RTP_PORT ").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialled_out_phone_is_moved_into_a_group_call_and_billed_in_both_calls() {
    let backend = Backend::start().await;
    let carrier_port = free_udp_port();
    let (dir, server) = start("palaver-e2e-ca-phone-dialled-move", 1, &backend, carrier_port).await;
    let (_, agent_token) = server.create_user_token(&["voip"]).await;
    let group = uuid::Uuid::new_v4().to_string();
    let mut agent = talker(&server, &agent_token, &group, AGENT_HZ, 0x0A6E_0003).await;
    let gc = connect_to_group_call(&server, &backend, &group, "gc").await;

    // The application calls the number 1:1 (createCall through the trunk).
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_port = socket.local_addr().unwrap().port().to_string();
    let extra = ["-trace_logs", "-set", "rtp_port", &rtp_port];
    let carrier = uas_from(dir.path(), carrier_port, &scenario("uas_answer_rtp.xml"), &extra);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let create = json!({"targets": [phone_id()], "callbackUri": format!("{}/cb/one", backend.base),
        "sourceCallerIdNumber": {"value": OWNED}, "operationContext": "out"});
    let created = post(&server, "/calling/callConnections", &create, StatusCode::CREATED).await;
    let one = created["callConnectionId"].as_str().unwrap().to_owned();
    backend.wait("cb/one", "CallConnected", |e| e["data"]["operationContext"] == "out").await;
    let port: u16 = logged_after(dir.path(), "uas_answer_rtp", "SERVER_RTP_PORT ")
        .await
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();

    // Moved into the agent's group call: the trunk's dialog goes on (no BYE, no re-INVITE).
    let body = json!({"targetParticipants": [phone_id()], "fromCall": one, "operationContext": "to-agent"});
    post(&server, &format!("/calling/callConnections/{gc}/participants:moveHere"), &body, StatusCode::ACCEPTED).await;
    let done = backend.wait("cb/gc", "MoveParticipantSucceeded", |e| e["data"]["participant"]["rawId"] == PHONE).await;
    assert_eq!(done["data"]["fromCall"], json!(one));
    backend.wait("cb/one", "CallDisconnected", |_| true).await;
    both_ways(&mut agent, socket, port).await;

    let remove = json!({"participantToRemove": phone_id(), "operationContext": "bye"});
    post(&server, &format!("/calling/callConnections/{gc}/participants:remove"), &remove, StatusCode::ACCEPTED).await;
    backend.wait("cb/gc", "RemoveParticipantSucceeded", |e| e["data"]["operationContext"] == "bye").await;
    finished(carrier, "a dialled-out phone moved into a group call, hung up by palaver").await;
    // Two PSTN records: the 1:1 call (ended at the move) and the group call.
    let rows = pstn_records(&server, 2).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        assert_outbound_on_the_trunk(row);
    }
    assert_ne!(rows[0]["CorrelationId"], rows[1]["CorrelationId"], "one record per call: {rows:?}");
    agent.client.close().await;
}

/// A move whose re-INVITE the trunk refuses (488): a phone dialled 1:1 (`createCall`, its
/// call on the idle worker) and moved into the group call on the other worker cannot follow
/// there, so palaver hangs it up (BYE after the refused re-INVITE) and it leaves the group
/// call it had joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_whose_re_invite_is_refused_is_hung_up_and_leaves_the_group_call() {
    let backend = Backend::start().await;
    let carrier_port = free_udp_port();
    let (dir, server) = start("palaver-e2e-ca-phone-reinvite-refused", 2, &backend, carrier_port).await;
    let (_, agent_token) = server.create_user_token(&["voip"]).await;
    let group = uuid::Uuid::new_v4().to_string();
    let agent = talker(&server, &agent_token, &group, AGENT_HZ, 0x0A6E_0004).await;
    let gc = connect_to_group_call(&server, &backend, &group, "gc").await;
    let rtp_port = free_udp_port().to_string();
    let extra = ["-trace_logs", "-set", "rtp_port", &rtp_port];
    let carrier = uas_from(dir.path(), carrier_port, &scenario("uas_answer_rtp_reinvite_refused.xml"), &extra);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Dialled 1:1 (its conference on the idle worker), then moved into the group call.
    let create = json!({"targets": [phone_id()], "callbackUri": format!("{}/cb/one", backend.base),
        "operationContext": "out"});
    let created = post(&server, "/calling/callConnections", &create, StatusCode::CREATED).await;
    let one = created["callConnectionId"].as_str().unwrap().to_owned();
    backend.wait("cb/one", "CallConnected", |e| e["data"]["operationContext"] == "out").await;
    let body = json!({"targetParticipants": [phone_id()], "fromCall": one, "operationContext": "to-agent"});
    post(&server, &format!("/calling/callConnections/{gc}/participants:moveHere"), &body, StatusCode::ACCEPTED).await;
    logged_after(dir.path(), "uas_answer_rtp_reinvite_refused", "REINVITE_REFUSED ").await;
    finished(carrier, "a phone whose re-INVITE was refused, hung up by palaver").await;
    let listed = |e: &Value| {
        e["data"]["participants"].as_array().is_some_and(|ps| ps.iter().any(|p| p["identifier"]["rawId"] == PHONE))
    };
    backend.wait("cb/gc", "ParticipantsUpdated", listed).await;
    // The last roster no longer has the phone.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let path = format!("/calling/callConnections/{gc}/participants?api-version=2025-06-15");
        let (_, list) = server.signed(Method::GET, &path, "").await;
        if !list["value"].as_array().unwrap().iter().any(|p| p["identifier"]["rawId"] == PHONE) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the hung-up phone is still listed: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.client.close().await;
}
