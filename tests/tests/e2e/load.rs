//! `palaver-load` against the real server: a short (≤ 20 s) low-load scenario — two 3-party
//! group calls over QUIC with turn-taking talkers — whose report must be sane: everyone
//! joins, audio flows through the mixer without loss on loopback, marker latencies are
//! measured, and the server window from `/metrics` is there.

use palaver_e2e::{Server, ServerOptions, TempDir};
use palaver_load::run::{RunConfig, Transport};
use palaver_load::scenario::{Preset, Shard};
use palaver_load::setup::Trust;
use palaver_load::{Thresholds, run};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_scenario_over_quic_reports_sane_figures() {
    let dir = TempDir::new("palaver-e2e-load");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config_toml = format!("[usage]\nmetrics_listen = \"127.0.0.1:{port}\"\n");
    let server =
        Server::start_in(dir.path(), ServerOptions { config_toml: Some(config_toml), ..Default::default() }).await;

    let mut scenario = Preset::Smoke.scenario();
    scenario.duration = Duration::from_secs(8);
    let config = RunConfig {
        scenario,
        shard: Shard::default(),
        transport: Transport::Quic,
        endpoint: server.base_url().to_string(),
        connection: Some(server.connection_string().parse().expect("connection string")),
        tokens: None,
        trust: Trust::Ca(std::fs::read_to_string(server.ca_file()).expect("CA file")),
        server_name: Some("localhost".into()),
        quic_addr: None,
        run_id: uuid::Uuid::new_v4().simple().to_string(),
        metrics_url: Some(format!("http://127.0.0.1:{port}/metrics")),
        server_pid: Some(server.pid()),
        show_progress: false,
    };
    let mut report = tokio::time::timeout(Duration::from_secs(60), run(config)).await.expect("bounded").expect("run");
    let table = report.table();
    println!("{table}");

    let p = &report.participants;
    assert_eq!((p.planned, p.joined, p.failed, p.ended_early), (6, 6, 0, 0), "{table}");
    let join = report.join_ms.expect("join times");
    assert!(join.count == 6 && join.p99 > 0.0 && join.p99 < 5_000.0, "{table}");
    assert!(report.first_audio_ms.is_some_and(|s| s.count >= 1), "{table}");

    let audio = &report.audio;
    assert!(audio.frames_sent > 100 && audio.frames_dtx > 0, "talkers sent speech with DTX pauses: {table}");
    assert!(audio.packets_received > 100 && audio.streams >= 4, "{table}");
    assert!(audio.loss_percent < 1.0, "no loss on loopback at low load: {table}");
    let latency = audio.latency_ms.expect("marker latencies measured");
    // Onsets are matched to markers sent at most half a marker interval (1 s) earlier; the median
    // must be far below that on loopback.
    assert!(latency.count >= 2 && latency.p50 > 0.0 && latency.p50 < 250.0, "{table}");
    assert!(audio.quality.is_some_and(|q| q.mos > 3.5), "{table}");

    let server_window = report.server.expect("server /metrics window");
    assert!(server_window.pps_in > 0.0 && server_window.pps_out > 0.0, "{table}");
    assert!(server_window.cpu_us_per_forwarded_packet.is_some(), "{table}");

    let thresholds = Thresholds { max_loss_percent: Some(1.0), min_mos: Some(3.5), ..Default::default() };
    assert!(report.apply(&thresholds), "{}", report.table());
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["audio"]["latencyMs"]["p50"].is_number() && json["server"]["ppsIn"].is_number());
}
