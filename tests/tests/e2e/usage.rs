//! Billing through the real binary: participants join a meeting over WSS (an external user,
//! a directory user through palaver's client path, a directory user on the native client),
//! the server is killed with SIGKILL, restarted, and the usage export shows every
//! participant's record exactly once, closed at the last checkpoint (`ServerFailure`), within
//! one checkpoint interval of the truth. Also: bad export input gets specific 4xx errors.

use crate::signaling::try_connect;
use palaver_e2e::{Server, ServerOptions, TempDir};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// 1 s checkpoints keep the test short; `/metrics` on a free port (9464 may be taken).
const CONFIG: &str = "[usage]\nmetrics_listen = \"127.0.0.1:0\"\ncheckpoint_interval_secs = 1\n";
const CHECKPOINT_MS: i64 = 1_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Every usage record in `[from, to)`, following `nextLink` pages of `page` records.
async fn export_all(server: &Server, from_ms: i64, to_ms: i64, page: usize) -> Vec<Value> {
    let mut path = format!("/usage?from={}&to={}&maxPageSize={page}", rfc3339(from_ms), rfc3339(to_ms));
    let mut rows = Vec::new();
    loop {
        let (status, body) = server.signed(Method::GET, &path, "").await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        rows.extend(body["value"].as_array().unwrap().iter().cloned());
        match body["nextLink"].as_str() {
            Some(next) => path = next.to_string(),
            None => return rows,
        }
    }
}

/// A config with `/metrics` on a port that was free a moment ago (the harness does not
/// report the metrics URL, so the test picks it).
fn config_with_metrics_port() -> (String, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    (format!("[usage]\nmetrics_listen = \"127.0.0.1:{port}\"\ncheckpoint_interval_secs = 1\n"), port)
}

/// `promtool check metrics` on a live scrape, when promtool is installed.
fn promtool_lint(scrape: &str) {
    use std::io::Write;
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not installed: live scrape not linted (make test installs it)");
        return;
    };
    child.stdin.take().unwrap().write_all(scrape.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}");
}

#[tokio::test]
async fn sigkill_and_restart_keep_every_participant_record_exactly_once() {
    let dir = TempDir::new("palaver-e2e-usage");
    let (config, metrics_port) = config_with_metrics_port();
    let options = ServerOptions { config_toml: Some(config), ..ServerOptions::default() };
    let mut server = Server::start_in(dir.path(), options.clone()).await;

    let org_token = server.directory_user_token("0b000000-0000-4000-8000-0000000000a1", "Olivia Organizer").await;
    let (_, ext_token) = server.create_user_token(&["voip"]).await;
    let native = server.dev_idp_token("0b000000-0000-4000-8000-0000000000a2", "Nate Native", json!({})).await;
    let native_token = native["token"].as_str().unwrap().to_string();
    let (status, meeting) =
        server.bearer(Method::POST, "/meetings", &org_token, Some(&json!({"policy":{"lobbyBypass":"everyone"}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{meeting}");
    let join = json!({"type":"join","target":{"kind":"meetingLink","joinUrl":meeting["joinUrl"]}});

    let before_join = now_ms();
    let mut sockets = Vec::new();
    let mut joined_at: HashMap<String, i64> = HashMap::new();
    for (who, path) in [
        ("organizer", format!("/signaling/v1?access_token={org_token}")),
        ("external", format!("/signaling/v1?access_token={ext_token}")),
        ("native", format!("/signaling/v1/native?idp_token={native_token}")),
    ] {
        let mut ws = try_connect(&server, &path).await.unwrap_or_else(|e| panic!("{who} socket: {e}"));
        let sent = now_ms();
        ws.send(join.clone()).await;
        let joined = ws.recv_type("joined").await;
        joined_at.insert(joined["snapshot"]["participantId"].as_str().unwrap().to_string(), sent);
        sockets.push((who, ws));
    }
    // Let a few checkpoints pass; the live scrape shows the meeting.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let scrape = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics")).await.unwrap().text().await.unwrap();
    for line in [
        "palaver_signaling_joins_total 3",
        "palaver_active_calls 1",
        r#"palaver_participants{participant_type="directory_native"} 1"#,
        r#"palaver_participants{participant_type="external_in_meeting"} 1"#,
        r#"palaver_participants{participant_type="directory_via_api"} 1"#,
    ] {
        assert!(scrape.lines().any(|l| l == line), "missing `{line}` in:\n{scrape}");
    }
    let billed_seconds: f64 = scrape
        .lines()
        .find_map(|l| l.strip_prefix("palaver_billed_participant_seconds_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(billed_seconds > 2.0, "two billable participants for ~3 s: {billed_seconds}");
    promtool_lint(&scrape);
    server.kill();
    let killed = now_ms();
    drop(sockets);

    let server = Server::start_in(dir.path(), options).await;
    let rows = export_all(&server, before_join - 3_600_000, killed + 3_600_000, 1).await;
    assert_eq!(rows.len(), 3, "{rows:#?}");
    let mut by_type: Vec<&str> = rows.iter().map(|r| r["ParticipantType"].as_str().unwrap()).collect();
    by_type.sort();
    assert_eq!(by_type, vec!["ACS as Microsoft 365 user", "ACS as Teams external user", "Teams"]);
    for r in &rows {
        let pid = r["ParticipantId"].as_str().unwrap();
        let start = joined_at.get(pid).copied().unwrap_or(before_join);
        let truth = killed - start;
        let recorded = r["DurationMs"].as_i64().unwrap();
        println!("{pid} ({}): truth ~{truth} ms, recorded {recorded} ms", r["ParticipantType"]);
        // closed at the last checkpoint: not after the crash, at most one interval short
        // (+ slack for join timing and a loaded machine)
        assert!(recorded <= truth + 500 && recorded >= truth - CHECKPOINT_MS - 1_500, "{r}");
        assert_eq!(r["Billable"], json!(r["ParticipantType"] != "Teams"));
    }
    let native_row = rows.iter().find(|r| r["ParticipantType"] == "Teams").unwrap();
    assert_eq!(native_row["CostUsd"], "0.000000");

    // The per-call summary says why they ended.
    let correlation = rows[0]["CorrelationId"].as_str().unwrap();
    let (status, summary) = server.signed(Method::GET, &format!("/usage/calls/{correlation}"), "").await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    let summary = summary["value"].as_array().unwrap();
    assert_eq!(summary.len(), 3);
    assert!(summary.iter().all(|s| s["ParticipantEndReason"] == "ServerFailure"), "{summary:#?}");

    // Totals per participant type agree with the rows.
    let (status, totals) = server
        .signed(
            Method::GET,
            &format!("/usage/totals?from={}&to={}", rfc3339(before_join - 3_600_000), rfc3339(killed + 3_600_000)),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{totals}");
    let billed: i64 = rows.iter().filter(|r| r["Billable"] == true).map(|r| r["DurationMs"].as_i64().unwrap()).sum();
    let billed_minutes: f64 = totals["total"]["billedMinutes"].as_str().unwrap().parse().unwrap();
    assert!((billed_minutes - billed as f64 / 60_000.0).abs() < 1e-5, "{totals}");
}

#[tokio::test]
async fn sigterm_closes_open_sessions_as_server_shutdown_at_the_real_time() {
    let dir = TempDir::new("palaver-e2e-usage-term");
    let options = ServerOptions { config_toml: Some(CONFIG.into()), ..ServerOptions::default() };
    let mut server = Server::start_in(dir.path(), options.clone()).await;
    let org_token = server.directory_user_token("0b000000-0000-4000-8000-0000000000b1", "Olivia").await;
    let (status, meeting) =
        server.bearer(Method::POST, "/meetings", &org_token, Some(&json!({"policy":{"lobbyBypass":"everyone"}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{meeting}");
    let mut ws = try_connect(&server, &format!("/signaling/v1?access_token={org_token}")).await.expect("socket");
    let joined_ms = now_ms();
    ws.send(json!({"type":"join","target":{"kind":"meetingLink","joinUrl":meeting["joinUrl"]}})).await;
    ws.recv_type("joined").await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let stopping = now_ms();
    let status = server.terminate();
    let stopped = now_ms();
    assert!(status.success(), "{status:?}");
    drop(ws);

    let server = Server::start_in(dir.path(), options).await;
    let rows = export_all(&server, joined_ms - 3_600_000, stopped + 3_600_000, 100).await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let recorded = rows[0]["DurationMs"].as_i64().unwrap();
    println!("clean stop: truth {}..{} ms, recorded {recorded} ms", stopping - joined_ms, stopped - joined_ms);
    // closed at the shutdown itself, not at a checkpoint
    assert!(recorded >= stopping - joined_ms - 200 && recorded <= stopped - joined_ms + 200, "{}", rows[0]);
    let correlation = rows[0]["CorrelationId"].as_str().unwrap();
    let (_, summary) = server.signed(Method::GET, &format!("/usage/calls/{correlation}"), "").await;
    assert_eq!(summary["value"][0]["ParticipantEndReason"], "ServerShutdown", "{summary}");
}

#[tokio::test]
async fn bad_export_input_gets_clear_4xx_errors() {
    let dir = TempDir::new("palaver-e2e-usage-bad");
    let server =
        Server::start_in(dir.path(), ServerOptions { config_toml: Some(CONFIG.into()), ..ServerOptions::default() })
            .await;
    for (path, status, code) in [
        ("/usage?from=not-a-date&to=2026-11-22", StatusCode::BAD_REQUEST, "InvalidTimeRange"),
        ("/usage?from=2026-11-22&to=2026-11-21", StatusCode::BAD_REQUEST, "InvalidTimeRange"),
        ("/usage?from=2020-01-01&to=2026-01-01", StatusCode::BAD_REQUEST, "InvalidTimeRange"),
        ("/usage?from=2026-11-21&to=2026-11-22&pageToken=bm90LWEtdG9rZW4", StatusCode::BAD_REQUEST, "InvalidPageToken"),
        ("/usage?from=2026-11-21&to=2026-11-22&maxPageSize=100000", StatusCode::BAD_REQUEST, "InvalidParameter"),
        ("/usage/calls/no-such-call", StatusCode::NOT_FOUND, "CallNotFound"),
    ] {
        let (got, body) = server.signed(Method::GET, path, "").await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
    }
    let unsigned =
        server.http().get(format!("{}/usage?from=2026-11-21&to=2026-11-22", server.base_url())).send().await.unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
}
