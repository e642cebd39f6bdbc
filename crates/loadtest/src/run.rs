//! The scenario engine: set up identities and rooms, ramp participants up at the given rate,
//! hold the steady state for the duration while scraping the server's `/metrics` at both ends of
//! the window, stop everyone at the same time, and fold the outcomes into a [`Report`].

use crate::audio::{FRAME_MS, MarkerSchedule};
use crate::participant::{Clock, Live, RunShared, SeatConnect, SeatOutcome, run_seat};
use crate::report::{AudioResults, ParticipantCounts, Report, VideoResults};
use crate::scenario::{Scenario, Shard};
use crate::server_metrics::{ServerWindow, process_cpu_split, scrape};
use crate::setup::{self, Api, ConnectionString, SetupError, Trust};
use crate::stats::Samples;
use indicatif::{ProgressBar, ProgressStyle};
use palaver_client::ConnectOptions;
use palaver_client::webrtc::WebRtcOptions;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

/// Participants per client UDP socket (QUIC endpoints are shared to keep sockets few).
const PARTICIPANTS_PER_ENDPOINT: usize = 64;
/// Pause between the last join and the start of the measured window.
const SETTLE: Duration = Duration::from_secs(1);

/// How participants reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Native QUIC (palaver-client): signaling on a stream, RTP in datagrams.
    Quic,
    /// Native QUIC signaling, media as SRTP over UDP to the media worker (keys from the QUIC
    /// TLS exporter; `palaver_client::MediaCarrier::Srtp`). One UDP socket per participant.
    QuicSrtp,
    /// WebRTC (webrtc-rs) through the WebSocket signaling.
    Webrtc,
}

/// A validated run (see `cli`).
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub scenario: Scenario,
    pub shard: Shard,
    pub transport: Transport,
    /// `https://host:port`
    pub endpoint: String,
    pub connection: Option<ConnectionString>,
    pub tokens: Option<PathBuf>,
    pub trust: Trust,
    pub server_name: Option<String>,
    pub quic_addr: Option<SocketAddr>,
    pub run_id: String,
    pub metrics_url: Option<String>,
    /// pid of a server on this machine: its CPU is read from /proc (finer than /metrics).
    pub server_pid: Option<u32>,
    pub show_progress: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("setup: {0}")]
    Setup(#[from] SetupError),
    #[error("{0}")]
    Unsupported(String),
    #[error("client: {0}")]
    Client(String),
}

/// Run the scenario (this shard of it) and return the report (thresholds not yet applied).
pub async fn run(config: RunConfig) -> Result<Report, RunError> {
    let ca_pem = match &config.trust {
        Trust::Ca(pem) => pem.clone(),
        Trust::System | Trust::Insecure => {
            return Err(RunError::Unsupported(
                "the media transports verify the server against a CA file: pass --ca (e.g. the CA `make run` prints)"
                    .into(),
            ));
        }
    };
    let scenario = config.scenario.clone();
    let api = match &config.connection {
        Some(c) => Api::new(c.clone(), &config.trust)?,
        None => Api::anonymous(&config.endpoint, &config.trust)?,
    };
    let seats = config.shard.seats(&scenario);
    let bar = progress_bar(config.show_progress, seats.len() as u64);
    bar.set_message("creating identities");
    let tickets = match &config.tokens {
        Some(path) => setup::tickets_from_tokens(&setup::read_token_file(path)?, &seats, &config.run_id, path)?,
        None => {
            let count = |n: usize| bar.set_position(n as u64);
            setup::create_tickets(&api, &scenario, &seats, &config.run_id, &count).await?
        }
    };
    let (base_connect, endpoints) = match config.transport {
        Transport::Quic | Transport::QuicSrtp => {
            let quic_addr = match config.quic_addr {
                Some(a) => a,
                None => api.quic_address().await?,
            };
            let server_name = config.server_name.clone().unwrap_or_else(|| host_name(&config.endpoint));
            let endpoints = (0..seats.len().div_ceil(PARTICIPANTS_PER_ENDPOINT).max(1))
                .map(|_| {
                    let bind: SocketAddr =
                        if quic_addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().expect("literal");
                    palaver_client::client_endpoint(bind).map_err(|e| RunError::Client(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut options = ConnectOptions::new(quic_addr, server_name, ca_pem);
            if config.transport == Transport::QuicSrtp {
                options.media = palaver_client::MediaCarrier::Srtp;
            }
            (SeatConnect::Quic(options), endpoints)
        }
        Transport::Webrtc => (SeatConnect::WebRtc(WebRtcOptions::new(config.endpoint.clone(), ca_pem)), Vec::new()),
    };
    let start = Instant::now() + Duration::from_millis(200);
    let ramp = Duration::from_secs_f64(seats.len() as f64 / config.shard.ramp_per_sec(&scenario));
    let measure_from = start + ramp + SETTLE;
    let stop_at = measure_from + scenario.duration;
    let schedule = MarkerSchedule {
        interval_frames: scenario.marker_interval.as_millis() as u64 / FRAME_MS,
        turn_frames: scenario.turn_length.as_millis() as u64 / FRAME_MS,
        talkers: scenario.talkers_per_room,
        turn_taking: scenario.turn_taking,
    };
    let started_at = httpdate::fmt_http_date(SystemTime::now());
    let shared = Arc::new(RunShared {
        scenario: scenario.clone(),
        schedule,
        clock: Clock::now(),
        measure_from,
        stop_at,
        live: Live::default(),
    });

    // Server metrics at both ends of the steady-state window.
    let server_pid = config.server_pid;
    let run_participants = seats.len();
    let metrics = config.metrics_url.clone().map(|url| {
        let http = reqwest::Client::new();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            let t0 = Instant::now();
            let cpu0 = server_pid.and_then(process_cpu_split);
            let tester0 = process_cpu_split(std::process::id());
            let first = scrape(&http, &url).await?;
            tokio::time::sleep_until(stop_at.into()).await;
            let cpu1 = server_pid.and_then(process_cpu_split);
            let tester1 = process_cpu_split(std::process::id());
            let last = scrape(&http, &url).await?;
            let mut window = ServerWindow::between(&first, &last, t0.elapsed());
            window.set_run_participants(run_participants);
            if let Some((c0, c1)) = cpu0.zip(cpu1) {
                window.use_procfs(c0, c1, last.packets_sent - first.packets_sent);
            }
            if let Some((c0, c1)) = tester0.zip(tester1) {
                window.set_tester_cpu(c0, c1);
            }
            Ok::<_, crate::server_metrics::ScrapeError>(window)
        })
    });

    bar.set_position(0);
    bar.set_length(seats.len() as u64);
    let ticker = {
        let shared = shared.clone();
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut last_packets = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let l = &shared.live;
                let packets = l.audio_packets.load(Ordering::Relaxed);
                let phase = if Instant::now() < shared.measure_from { "ramping" } else { "measuring" };
                bar.set_position(l.joined.load(Ordering::Relaxed));
                bar.set_message(format!(
                    "{phase}: {} failed, audio in {} pps, {} markers heard",
                    l.failed.load(Ordering::Relaxed),
                    (packets - last_packets) * 2,
                    l.markers_heard.load(Ordering::Relaxed)
                ));
                last_packets = packets;
            }
        })
    };

    let mut tasks = tokio::task::JoinSet::new();
    let interval = Duration::from_secs_f64(1.0 / config.shard.ramp_per_sec(&scenario));
    for (i, ticket) in tickets.into_iter().enumerate() {
        tokio::time::sleep_until((start + interval * i as u32).into()).await;
        let mut connect = base_connect.clone();
        if let SeatConnect::Quic(options) = &mut connect {
            options.endpoint = endpoints.get(i / PARTICIPANTS_PER_ENDPOINT).cloned();
        }
        tasks.spawn(run_seat(shared.clone(), connect, ticket));
    }
    let mut outcomes = Vec::with_capacity(seats.len());
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(o) => outcomes.push(o),
            Err(e) => tracing::error!(error = %e, "participant task failed"),
        }
    }
    ticker.abort();
    bar.finish_and_clear();
    let (server, server_metrics_error) = match metrics {
        None => (None, None),
        Some(task) => match task.await {
            Ok(Ok(w)) => (Some(w), None),
            Ok(Err(e)) => (None, Some(e.to_string())),
            Err(e) => (None, Some(e.to_string())),
        },
    };
    for e in endpoints {
        let _ = tokio::time::timeout(Duration::from_secs(2), e.wait_idle()).await;
    }
    let transport = match config.transport {
        Transport::Quic => "quic",
        Transport::QuicSrtp => "quic-srtp",
        Transport::Webrtc => "webrtc",
    };
    Ok(fold(scenario, config.shard, transport, &config.endpoint, started_at, &outcomes, server, server_metrics_error))
}

/// The host of an `https://host:port` URL (for the TLS server name).
fn host_name(endpoint: &str) -> String {
    let authority = endpoint.trim_start_matches("https://").split('/').next().unwrap_or_default();
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_string();
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h).to_string()
}

fn progress_bar(show: bool, len: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:30}] {pos}/{len} joined  {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Fold participant outcomes into the report.
#[allow(clippy::too_many_arguments)]
pub fn fold(
    scenario: Scenario,
    shard: Shard,
    transport: &str,
    endpoint: &str,
    started_at: String,
    outcomes: &[SeatOutcome],
    server: Option<ServerWindow>,
    server_metrics_error: Option<String>,
) -> Report {
    let mut participants = ParticipantCounts { planned: outcomes.len() as u64, ..Default::default() };
    let (mut join, mut first_audio, mut latency, mut lateness) =
        (Samples::default(), Samples::default(), Samples::default(), Samples::default());
    let mut audio = AudioResults::default();
    let mut video = VideoResults::default();
    let mut jitters = Vec::new();
    for o in outcomes {
        if let Some(code) = &o.failure {
            participants.failed += 1;
            *participants.failures.entry(code.clone()).or_default() += 1;
            continue;
        }
        if !o.joined {
            continue;
        }
        participants.joined += 1;
        participants.ended_early += u64::from(o.ended_early);
        o.join_ms.into_iter().for_each(|v| join.push(v));
        o.first_audio_ms.into_iter().for_each(|v| first_audio.push(v));
        latency.extend(&o.latencies);
        lateness.extend(&o.lateness);
        if o.audio_expected > 0 {
            audio.add_stream(o.audio_expected, o.audio_lost);
        } else {
            audio.silent_participants += 1;
        }
        audio.packets_received += o.audio_received;
        audio.packets_expected += o.audio_expected;
        audio.packets_lost += o.audio_lost;
        jitters.extend(o.jitter_ms);
        audio.markers_sent += o.markers_sent;
        audio.unmatched_onsets += o.unmatched_onsets;
        audio.decode_errors += o.decode_errors;
        audio.frames_sent += o.frames_sent;
        audio.frames_dtx += o.frames_dtx;
        video.publishers += u64::from(o.video_packets > 0);
        video.packets_sent += o.video_packets;
        video.keyframes_sent += o.video_keyframes;
        video.keyframe_requests += o.video_keyframe_requests;
        video.packets_received += o.video_received;
        video.frames_received += o.video_frames_received;
        video.keyframes_received += o.video_keyframes_received;
    }
    audio.markers_heard = latency.summary().map_or(0, |s| s.count);
    audio.latency_ms = latency.summary();
    audio.send_lateness_ms = lateness.summary();
    if !jitters.is_empty() {
        audio.jitter_ms_mean = jitters.iter().sum::<f64>() / jitters.len() as f64;
        audio.jitter_ms_max = jitters.iter().copied().fold(0.0, f64::max);
    }
    audio.finish();
    Report {
        scenario,
        shard,
        transport: transport.to_string(),
        server_url: endpoint.to_string(),
        started_at,
        participants,
        join_ms: join.summary(),
        first_audio_ms: first_audio.summary(),
        audio,
        video,
        server,
        server_metrics_error,
        thresholds: Vec::new(),
        passed: false,
    }
}
