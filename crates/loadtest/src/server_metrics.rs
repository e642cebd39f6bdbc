//! The server side of a run, read from its Prometheus `/metrics`: CPU, memory and media packet
//! counters at the start and end of the measured window, and what their deltas mean (pps in and
//! out, server CPU per forwarded packet).

use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

/// Metric names read from the server (see docs/metrics.md).
pub const CPU_SECONDS: &str = "process_cpu_seconds_total";
pub const RESIDENT_BYTES: &str = "process_resident_memory_bytes";
pub const PACKETS_RECEIVED: &str = "palaver_media_packets_received_total";
pub const PACKETS_SENT: &str = "palaver_media_packets_sent_total";
pub const PACKETS_DROPPED: &str = "palaver_media_packets_dropped_total";
pub const MIXER_OVERRUNS: &str = "palaver_mixer_overruns_total";
/// Connected participants (a gauge, by participant type; summed).
pub const PARTICIPANTS: &str = "palaver_participants";
/// Datagrams the kernel dropped on the server's UDP sockets for a full receive buffer.
pub const UDP_RECEIVE_DROPS: &str = "palaver_udp_receive_drops_total";

#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("metrics request to {url} failed: {source}")]
    Request { url: String, source: reqwest::Error },
    #[error("metrics endpoint {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("metrics from {url} lack {metric}")]
    Missing { url: String, metric: &'static str },
}

/// Sum of every sample of each metric name (labels summed away) in a Prometheus text body.
/// Comment lines, malformed lines and non-finite values are skipped.
pub fn parse_sums(body: &str) -> HashMap<String, f64> {
    let mut sums = HashMap::new();
    for line in body.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => continue,
        };
        let rest = match rest.strip_prefix('{') {
            // Label values may hold spaces or braces inside quotes: find the closing brace
            // outside quotes.
            Some(labels) => match closing_brace(labels) {
                Some(end) => &labels[end + 1..],
                None => continue,
            },
            None => rest,
        };
        let Some(value) = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        if value.is_finite() {
            *sums.entry(name.to_string()).or_insert(0.0) += value;
        }
    }
    sums
}

fn closing_brace(labels: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

/// One scrape's values that a load run uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ServerSample {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub packets_received: f64,
    pub packets_sent: f64,
    pub packets_dropped: f64,
    pub mixer_overruns: f64,
    pub participants: f64,
    pub udp_receive_drops: f64,
}

impl ServerSample {
    /// From a `/metrics` body; CPU and packet counters must be present.
    pub fn from_body(url: &str, body: &str) -> Result<Self, ScrapeError> {
        let sums = parse_sums(body);
        let need = |metric: &'static str| {
            sums.get(metric).copied().ok_or_else(|| ScrapeError::Missing { url: url.to_string(), metric })
        };
        Ok(Self {
            cpu_seconds: need(CPU_SECONDS)?,
            resident_bytes: sums.get(RESIDENT_BYTES).copied().unwrap_or(0.0),
            packets_received: need(PACKETS_RECEIVED)?,
            packets_sent: need(PACKETS_SENT)?,
            packets_dropped: sums.get(PACKETS_DROPPED).copied().unwrap_or(0.0),
            mixer_overruns: sums.get(MIXER_OVERRUNS).copied().unwrap_or(0.0),
            participants: sums.get(PARTICIPANTS).copied().unwrap_or(0.0),
            udp_receive_drops: sums.get(UDP_RECEIVE_DROPS).copied().unwrap_or(0.0),
        })
    }
}

/// Fetch and read `/metrics` (plain HTTP; the metrics listener is not TLS).
pub async fn scrape(http: &reqwest::Client, url: &str) -> Result<ServerSample, ScrapeError> {
    let resp = http
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|source| ScrapeError::Request { url: url.to_string(), source })?;
    if !resp.status().is_success() {
        return Err(ScrapeError::Status { url: url.to_string(), status: resp.status().as_u16() });
    }
    let body = resp.text().await.map_err(|source| ScrapeError::Request { url: url.to_string(), source })?;
    ServerSample::from_body(url, &body)
}

/// CPU seconds (user + system) of a process on this machine, from `/proc/<pid>/stat`, at
/// clock-tick resolution (10 ms). The Prometheus process collector of the server reports whole
/// seconds only, too coarse for short windows, so a local server's pid (`--server-pid`) is read
/// directly.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    process_cpu_split(pid).map(|t| t.user + t.kernel)
}

/// A process's CPU time so far, split into user space and kernel (system) time, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuSplit {
    pub user: f64,
    pub kernel: f64,
}

/// [`CpuSplit`] of a local process from `/proc/<pid>/stat`.
pub fn process_cpu_split(pid: u32) -> Option<CpuSplit> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_split_from_stat(&stat, clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in seconds.
pub fn cpu_seconds_from_stat(stat: &str, ticks_per_second: f64) -> Option<f64> {
    cpu_split_from_stat(stat, ticks_per_second).map(|t| t.user + t.kernel)
}

/// utime and stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in seconds. The command
/// name (field 2) is in parentheses and may hold spaces, so fields are counted after the last `)`.
pub fn cpu_split_from_stat(stat: &str, ticks_per_second: f64) -> Option<CpuSplit> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(CpuSplit { user: utime / ticks_per_second, kernel: stime / ticks_per_second })
}

/// What the server did during the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerWindow {
    /// Where the CPU figures come from: `procfs` (local pid, 10 ms ticks) or `metrics`
    /// (`process_cpu_seconds_total`, whole seconds).
    pub cpu_source: &'static str,
    pub window_secs: f64,
    /// Mean CPU use over the window, in cores (1.0 = one core busy).
    pub cpu_cores: f64,
    pub resident_mb_end: f64,
    pub pps_in: f64,
    pub pps_out: f64,
    pub packets_dropped: f64,
    pub mixer_overruns: f64,
    /// Server CPU time per packet sent (forwarded or mixed) in µs; `None` when nothing was sent.
    pub cpu_us_per_forwarded_packet: Option<f64>,
    /// Server CPU time per packet handled (received + sent) in µs.
    pub cpu_us_per_packet_handled: Option<f64>,
    /// The kernel's (system time's) part of `cpu_us_per_forwarded_packet`, in µs: the UDP send
    /// path, and on loopback also the receiver's delivery. Only from procfs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_us_per_forwarded_packet: Option<f64>,
    /// Kernel receive-buffer drops on the server's UDP sockets during the window.
    pub udp_receive_drops: f64,
    /// Participants connected at the end of the window (`palaver_participants`). It can
    /// include another run's participants still in their reconnect grace period.
    pub participants: f64,
    /// Participants this run drove (its seats); the divisor of the per-participant-second
    /// figures when set, so leftovers of an earlier run do not dilute them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_participants: Option<f64>,
    /// Server CPU per participant-second (µs of CPU per participant per second of the window).
    pub cpu_us_per_participant_second: Option<f64>,
    /// Its kernel (system time) part. Only from procfs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_us_per_participant_second: Option<f64>,
    /// The kernel part of `cpu_us_per_packet_handled`. Only from procfs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_us_per_packet_handled: Option<f64>,
    /// The tester's own CPU over the same window, in cores (user + kernel), and its kernel
    /// part: a tester near its core count makes the server figures unreliable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tester_cpu_cores: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tester_kernel_cores: Option<f64>,
}

impl ServerWindow {
    pub fn between(start: &ServerSample, end: &ServerSample, window: Duration) -> Self {
        let secs = window.as_secs_f64().max(1e-9);
        let cpu = (end.cpu_seconds - start.cpu_seconds).max(0.0);
        let received = (end.packets_received - start.packets_received).max(0.0);
        let sent = (end.packets_sent - start.packets_sent).max(0.0);
        let per = |n: f64| (n > 0.0).then(|| cpu * 1e6 / n);
        Self {
            cpu_source: "metrics",
            window_secs: secs,
            cpu_cores: cpu / secs,
            resident_mb_end: end.resident_bytes / (1024.0 * 1024.0),
            pps_in: received / secs,
            pps_out: sent / secs,
            packets_dropped: (end.packets_dropped - start.packets_dropped).max(0.0),
            mixer_overruns: (end.mixer_overruns - start.mixer_overruns).max(0.0),
            cpu_us_per_forwarded_packet: per(sent),
            cpu_us_per_packet_handled: per(received + sent),
            kernel_us_per_forwarded_packet: None,
            udp_receive_drops: (end.udp_receive_drops - start.udp_receive_drops).max(0.0),
            participants: end.participants,
            run_participants: None,
            cpu_us_per_participant_second: (end.participants > 0.0).then(|| cpu * 1e6 / (end.participants * secs)),
            kernel_us_per_participant_second: None,
            kernel_us_per_packet_handled: None,
            tester_cpu_cores: None,
            tester_kernel_cores: None,
        }
    }

    /// The tester's own CPU at both ends of the window.
    pub fn set_tester_cpu(&mut self, start: CpuSplit, end: CpuSplit) {
        let user = (end.user - start.user).max(0.0);
        let kernel = (end.kernel - start.kernel).max(0.0);
        self.tester_cpu_cores = Some((user + kernel) / self.window_secs);
        self.tester_kernel_cores = Some(kernel / self.window_secs);
    }

    /// Replaces the CPU figures with a local process's procfs readings at both ends.
    pub fn use_procfs(&mut self, start: CpuSplit, end: CpuSplit, sent: f64) {
        let user = (end.user - start.user).max(0.0);
        let kernel = (end.kernel - start.kernel).max(0.0);
        self.cpu_source = "procfs";
        self.cpu_cores = (user + kernel) / self.window_secs;
        let per = |cpu: f64| (sent > 0.0).then(|| cpu * 1e6 / sent);
        self.cpu_us_per_forwarded_packet = per(user + kernel);
        self.kernel_us_per_forwarded_packet = per(kernel);
        let received = self.pps_in * self.window_secs;
        let handled = |cpu: f64| (sent + received > 0.0).then(|| cpu * 1e6 / (sent + received));
        self.cpu_us_per_packet_handled = handled(user + kernel);
        self.kernel_us_per_packet_handled = handled(kernel);
        self.cpu_us_per_participant_second = self.per_participant_second(user + kernel);
        self.kernel_us_per_participant_second = self.per_participant_second(kernel);
    }

    /// Divides the per-participant-second figures by the participants this run drove instead
    /// of the server's gauge (which may still count an earlier run's participants). Call it
    /// before [`Self::use_procfs`], which divides by the same count.
    pub fn set_run_participants(&mut self, participants: usize) {
        self.run_participants = (participants > 0).then_some(participants as f64);
        self.cpu_us_per_participant_second = self.per_participant_second(self.cpu_cores * self.window_secs);
    }

    fn divisor(&self) -> f64 {
        self.run_participants.unwrap_or(self.participants)
    }

    /// µs of `cpu_seconds` per participant per second of the window.
    fn per_participant_second(&self, cpu_seconds: f64) -> Option<f64> {
        let n = self.divisor();
        (n > 0.0).then(|| cpu_seconds * 1e6 / (n * self.window_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
process_resident_memory_bytes 1.048576e8
palaver_media_packets_received_total 1000
palaver_media_packets_sent_total 3000
palaver_media_packets_dropped_total{reason="malformed_rtp"} 2
palaver_media_packets_dropped_total{reason="egress_queue_full"} 3
palaver_signaling_errors_total{code="a } b \" c"} 7
garbage line without value
palaver_media_jitter_seconds NaN
"#;

    #[test]
    fn sums_over_labels_and_skips_noise() {
        let sums = parse_sums(BODY);
        assert_eq!(sums[PACKETS_DROPPED], 5.0);
        assert_eq!(sums[CPU_SECONDS], 12.5);
        assert_eq!(sums["palaver_signaling_errors_total"], 7.0);
        assert!(!sums.contains_key("palaver_media_jitter_seconds"));
        assert!(!sums.contains_key("garbage"));
    }

    #[test]
    fn sample_needs_cpu_and_packets() {
        let s = ServerSample::from_body("u", BODY).unwrap();
        assert_eq!((s.packets_received, s.packets_sent, s.resident_bytes), (1000.0, 3000.0, 104_857_600.0));
        let err = ServerSample::from_body("u", "process_cpu_seconds_total 1\n").unwrap_err();
        assert!(matches!(err, ScrapeError::Missing { metric: PACKETS_RECEIVED, .. }), "{err}");
    }

    #[test]
    fn window_derives_rates_and_cpu_per_packet() {
        let a = ServerSample::from_body("u", BODY).unwrap();
        let b = ServerSample { cpu_seconds: 13.5, packets_received: 51_000.0, packets_sent: 403_000.0, ..a };
        let w = ServerWindow::between(&a, &b, Duration::from_secs(10));
        assert_eq!((w.pps_in, w.pps_out, w.cpu_cores), (5_000.0, 40_000.0, 0.1));
        assert!((w.cpu_us_per_forwarded_packet.unwrap() - 2.5).abs() < 1e-9);
        assert!((w.cpu_us_per_packet_handled.unwrap() - 1e6 / 450_000.0).abs() < 1e-9);
        assert_eq!(ServerWindow::between(&a, &a, Duration::from_secs(1)).cpu_us_per_forwarded_packet, None);
        assert_eq!(w.kernel_us_per_forwarded_packet, None, "the metrics give no split");
        // procfs: 0.4 s user + 1.6 s kernel over the 10 s window, 400,000 packets sent.
        let mut local = w;
        local.use_procfs(CpuSplit { user: 5.0, kernel: 7.0 }, CpuSplit { user: 5.4, kernel: 8.6 }, 400_000.0);
        assert_eq!(local.cpu_source, "procfs");
        assert!((local.cpu_cores - 0.2).abs() < 1e-9);
        assert!((local.cpu_us_per_forwarded_packet.unwrap() - 5.0).abs() < 1e-9);
        assert!((local.kernel_us_per_forwarded_packet.unwrap() - 4.0).abs() < 1e-9);
        assert!((local.cpu_us_per_packet_handled.unwrap() - 2e6 / 450_000.0).abs() < 1e-9);
    }

    #[test]
    fn per_participant_second_divides_by_the_runs_own_participants() {
        // The server still counts 100 participants of an earlier run in their grace period.
        let a = ServerSample { participants: 200.0, ..ServerSample::from_body("u", BODY).unwrap() };
        let b = ServerSample { cpu_seconds: 14.5, ..a };
        let mut w = ServerWindow::between(&a, &b, Duration::from_secs(10));
        assert!((w.cpu_us_per_participant_second.unwrap() - 1_000.0).abs() < 1e-9, "2 s / 200 / 10 s");
        w.set_run_participants(100);
        assert!((w.cpu_us_per_participant_second.unwrap() - 2_000.0).abs() < 1e-9, "2 s / 100 / 10 s");
        // procfs: 1.5 s user + 0.5 s kernel, still over this run's 100.
        w.use_procfs(CpuSplit { user: 1.0, kernel: 1.0 }, CpuSplit { user: 2.5, kernel: 1.5 }, 1_000.0);
        assert!((w.cpu_us_per_participant_second.unwrap() - 2_000.0).abs() < 1e-9);
        assert!((w.kernel_us_per_participant_second.unwrap() - 500.0).abs() < 1e-9);
        assert_eq!((w.participants, w.run_participants), (200.0, Some(100.0)));
    }

    #[test]
    fn proc_stat_cpu_counts_after_the_command_name() {
        let stat = "1234 (pal aver) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_seconds_from_stat(stat, 100.0), Some(3.0));
        assert_eq!(cpu_split_from_stat(stat, 100.0), Some(CpuSplit { user: 2.5, kernel: 0.5 }));
        assert_eq!(cpu_seconds_from_stat("garbage", 100.0), None);
        assert_eq!(cpu_seconds_from_stat("1 (x) S 1", 100.0), None);
        let own = process_cpu_seconds(std::process::id()).expect("own /proc entry");
        assert!(own >= 0.0);
        assert_eq!(process_cpu_seconds(u32::MAX), None);
    }
}
