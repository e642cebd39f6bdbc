//! Command line: flags → a validated [`RunConfig`]; run it; print the table (and JSON); exit
//! code 0 = passed, 1 = a threshold failed, 2 = the run could not be done (bad flags, setup).

use crate::report::Thresholds;
use crate::run::{RunConfig, Transport};
use crate::scenario::{Preset, RoomKind, Scenario, Shard};
use crate::setup::{ConnectionString, Trust};
use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Exit codes.
pub const EXIT_PASSED: i32 = 0;
pub const EXIT_THRESHOLD_FAILED: i32 = 1;
pub const EXIT_ERROR: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "palaver-load",
    version,
    about = "Load tester for a palaver server: real Opus audio, measured end to end."
)]
pub struct Args {
    /// Connection string of the server: `endpoint=https://host:port/;accesskey=<base64>`.
    /// Identities, tokens and meetings are created with it.
    #[arg(long, env = "PALAVER_CONNECTION_STRING", required_unless_present = "tokens")]
    pub connection_string: Option<String>,
    /// Instead of creating identities: a file with one access token per line (seat i uses
    /// line i; rooms are group calls). Needs `--endpoint`.
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// Server URL when `--tokens` is used (`https://host:port`).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// CA certificate (PEM) to trust, e.g. the CA file `make run` prints.
    #[arg(long, env = "PALAVER_CA_FILE")]
    pub ca: Option<PathBuf>,
    /// Do not verify the server certificate (development only; the report says so).
    #[arg(long)]
    pub insecure: bool,
    /// TLS server name for QUIC (default: the endpoint's host; `localhost` for the self-signed
    /// certificate on 127.0.0.1 works too).
    #[arg(long)]
    pub server_name: Option<String>,
    /// QUIC address (default: discovered with `GET /quic`).
    #[arg(long)]
    pub quic_addr: Option<std::net::SocketAddr>,

    /// Preset scenario; the flags below override its values.
    #[arg(long, value_enum, default_value = "contact-center")]
    pub preset: Preset,
    #[arg(long)]
    pub rooms: Option<u32>,
    /// Participants per room.
    #[arg(long)]
    pub participants: Option<u32>,
    /// Talkers per room (the first participants of each room).
    #[arg(long)]
    pub talkers: Option<u32>,
    /// Talkers take turns (one at a time) instead of talking with their own spurts.
    #[arg(long)]
    pub turn_taking: Option<bool>,
    /// Simulcast video publishers per room.
    #[arg(long)]
    pub video_publishers: Option<u32>,
    /// Participants per room (after the publishers) that watch one remote camera without
    /// publishing.
    #[arg(long)]
    pub video_viewers: Option<u32>,
    /// Listeners per room that decode the mix and measure latency.
    #[arg(long)]
    pub decoding_listeners: Option<u32>,
    #[arg(long, value_enum)]
    pub room_kind: Option<RoomKind>,
    /// Joins per second (all shards together).
    #[arg(long)]
    pub ramp: Option<f64>,
    /// Measured seconds after everyone joined.
    #[arg(long)]
    pub duration: Option<f64>,
    /// DTX like a browser with it on (`true`), or every participant sending 50 pps with
    /// listeners and pauses as low-level noise (`false`).
    #[arg(long)]
    pub dtx: Option<bool>,
    #[arg(long, value_enum, default_value = "quic")]
    pub transport: Transport,
    /// Run part of the scenario: `i/n` (participants with index ≡ i mod n).
    #[arg(long, default_value = "0/1")]
    pub shard: Shard,
    /// Identifies the run across shards (group call ids derive from it). Default: random.
    #[arg(long)]
    pub run_id: Option<String>,

    /// Prometheus endpoint of the server (`[usage] metrics_listen`). `none` to skip.
    #[arg(long, default_value = "http://127.0.0.1:9464/metrics")]
    pub metrics_url: String,
    /// pid of the server when it runs on this machine: its CPU time is then read from
    /// /proc/<pid>/stat (10 ms resolution) instead of `process_cpu_seconds_total` (whole seconds).
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// Fail (exit 1) if audio loss exceeds this percentage.
    #[arg(long)]
    pub max_loss: Option<f64>,
    /// Fail if the p99 end-to-end audio latency exceeds this many ms (or none was measured).
    #[arg(long)]
    pub max_p99_latency: Option<f64>,
    /// Fail if the E-model MOS estimate is below this.
    #[arg(long)]
    pub min_mos: Option<f64>,
    /// Fail if the p99 join time exceeds this many ms.
    #[arg(long)]
    pub max_p99_join: Option<f64>,
    /// Fail if more joins than this failed.
    #[arg(long)]
    pub max_failed_joins: Option<u64>,
    /// Fail if server CPU per forwarded packet exceeds this many µs.
    #[arg(long)]
    pub max_cpu_us_per_packet: Option<f64>,

    /// Write the JSON report to this file (`-` = stdout, instead of the table).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No live progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

impl Args {
    /// The scenario: the preset with the overrides applied, validated.
    pub fn scenario(&self) -> Result<Scenario, String> {
        let mut s = self.preset.scenario();
        if let Some(v) = self.rooms {
            s.rooms = v;
        }
        if let Some(v) = self.participants {
            s.participants_per_room = v;
            s.talkers_per_room = s.talkers_per_room.min(v);
            s.video_publishers_per_room = s.video_publishers_per_room.min(v);
        }
        if let Some(v) = self.talkers {
            s.talkers_per_room = v;
        }
        if let Some(v) = self.turn_taking {
            s.turn_taking = v;
        }
        if let Some(v) = self.video_publishers {
            s.video_publishers_per_room = v;
        }
        if let Some(v) = self.video_viewers {
            s.video_viewers_per_room = v;
        }
        if let Some(v) = self.decoding_listeners {
            s.decoding_listeners_per_room = v;
        }
        if let Some(v) = self.room_kind {
            s.room_kind = v;
        }
        if let Some(v) = self.dtx {
            s.dtx = v;
        }
        if let Some(v) = self.ramp {
            s.ramp_per_sec = v;
        }
        if let Some(v) = self.duration {
            if !(v.is_finite() && v > 0.0 && v <= 3_600.0) {
                return Err("--duration must be in (0, 3600] seconds".into());
            }
            s.duration = Duration::from_secs_f64(v);
        }
        s.validate().map_err(|e| e.to_string())?;
        Ok(s)
    }

    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            max_loss_percent: self.max_loss,
            max_p99_latency_ms: self.max_p99_latency,
            min_mos: self.min_mos,
            max_p99_join_ms: self.max_p99_join,
            max_failed_joins: self.max_failed_joins,
            max_cpu_us_per_packet: self.max_cpu_us_per_packet,
        }
    }

    /// Everything checked before anything is sent to the server.
    pub fn run_config(&self) -> Result<RunConfig, String> {
        let scenario = self.scenario()?;
        let connection = match &self.connection_string {
            Some(cs) => Some(cs.parse::<ConnectionString>().map_err(|e| e.to_string())?),
            None => None,
        };
        let endpoint = match (&connection, &self.endpoint) {
            (Some(c), None) => c.endpoint.clone(),
            (_, Some(e)) if e.starts_with("https://") => e.trim_end_matches('/').to_string(),
            (_, Some(_)) => return Err("--endpoint must be an https:// URL".into()),
            (None, None) => return Err("--tokens needs --endpoint".into()),
        };
        if self.tokens.is_some() && scenario.room_kind == RoomKind::Meeting {
            return Err(
                "--tokens runs group calls (meetings need a directory organizer): add --room-kind group-call".into()
            );
        }
        if connection.is_some()
            && self.tokens.is_none()
            && scenario.room_kind == RoomKind::Meeting
            && self.shard.count > 1
        {
            return Err("meetings are created per process: with --shard use --room-kind group-call".into());
        }
        let trust = match (&self.ca, self.insecure) {
            (Some(_), true) => return Err("--ca and --insecure exclude each other".into()),
            (Some(path), false) => Trust::Ca(
                std::fs::read_to_string(path).map_err(|e| format!("reading CA file {}: {e}", path.display()))?,
            ),
            (None, true) => Trust::Insecure,
            (None, false) => Trust::System,
        };
        let metrics_url = (self.metrics_url != "none").then(|| self.metrics_url.clone());
        if let Some(url) = &metrics_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err("--metrics-url must be an http(s) URL or `none`".into());
        }
        Ok(RunConfig {
            scenario,
            shard: self.shard,
            transport: self.transport,
            endpoint,
            connection,
            tokens: self.tokens.clone(),
            trust,
            server_name: self.server_name.clone(),
            quic_addr: self.quic_addr,
            run_id: self.run_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
            metrics_url,
            server_pid: self.server_pid,
            show_progress: !self.no_progress && self.json.as_deref() != Some(std::path::Path::new("-")),
        })
    }
}

/// Parse, run, print; returns the exit code.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_ERROR } else { EXIT_PASSED };
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PALAVER_LOAD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rtc_dtls=error")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let config = match args.run_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("palaver-load: {e}");
            return EXIT_ERROR;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("palaver-load: tokio runtime: {e}");
            return EXIT_ERROR;
        }
    };
    let mut report = match runtime.block_on(crate::run::run(config)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("palaver-load: {e}");
            return EXIT_ERROR;
        }
    };
    let passed = report.apply(&args.thresholds());
    let json = serde_json::to_string_pretty(&report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    match args.json.as_deref() {
        Some(p) if p == std::path::Path::new("-") => println!("{json}"),
        Some(p) => {
            print!("{}", report.table());
            if let Err(e) = std::fs::write(p, json) {
                eprintln!("palaver-load: writing {}: {e}", p.display());
                return EXIT_ERROR;
            }
        }
        None => print!("{}", report.table()),
    }
    if passed { EXIT_PASSED } else { EXIT_THRESHOLD_FAILED }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Args {
        let mut argv = vec!["palaver-load", "--connection-string", "endpoint=https://127.0.0.1:1/;accesskey=c2VjcmV0"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    #[test]
    fn overrides_apply_to_the_preset() {
        let a = parse(&["--preset", "town-hall", "--participants", "100", "--duration", "5", "--ramp", "50"]);
        let s = a.scenario().unwrap();
        assert_eq!((s.participants_per_room, s.talkers_per_room, s.duration.as_secs()), (100, 3, 5));
        assert_eq!(s.room_kind, RoomKind::Meeting);
        let c = a.run_config().unwrap();
        assert_eq!(c.endpoint, "https://127.0.0.1:1");
        assert!(matches!(c.trust, Trust::System));
    }

    #[test]
    fn bad_combinations_are_refused_before_anything_runs() {
        assert!(parse(&["--duration", "0"]).run_config().is_err());
        assert!(parse(&["--participants", "2000"]).run_config().is_err());
        assert!(parse(&["--insecure", "--ca", "/nonexistent"]).run_config().is_err());
        assert!(parse(&["--ca", "/nonexistent/ca.pem"]).run_config().is_err());
        assert!(parse(&["--preset", "town-hall", "--shard", "0/2"]).run_config().is_err());
        assert!(parse(&["--metrics-url", "ftp://x"]).run_config().is_err());
        assert!(Args::try_parse_from(["palaver-load", "--shard", "2/2", "--connection-string", "x"]).is_err());
        assert!(Args::try_parse_from(["palaver-load"]).is_err(), "a server is required");
        let t = Args::try_parse_from(["palaver-load", "--tokens", "/tmp/t", "--preset", "smoke"]).unwrap();
        assert_eq!(t.run_config().unwrap_err(), "--tokens needs --endpoint");
    }

    #[test]
    fn thresholds_come_from_flags() {
        let a = parse(&["--max-loss", "0.5", "--min-mos", "4", "--metrics-url", "none", "--insecure"]);
        let t = a.thresholds();
        assert_eq!((t.max_loss_percent, t.min_mos, t.max_p99_latency_ms), (Some(0.5), Some(4.0), None));
        let c = a.run_config().unwrap();
        assert_eq!(c.metrics_url, None);
        assert!(matches!(c.trust, Trust::Insecure));
    }

    #[test]
    fn exit_code_for_bad_flags_is_2() {
        assert_eq!(main_with_args(["palaver-load", "--bogus"].map(OsString::from)), EXIT_ERROR);
        let code = main_with_args(
            ["palaver-load", "--connection-string", "endpoint=http://x;accesskey=c2VjcmV0"].map(OsString::from),
        );
        assert_eq!(code, EXIT_ERROR);
    }
}
