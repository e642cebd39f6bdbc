//! The `/metrics` HTTP listener (its own port, default `127.0.0.1:9464`).

use crate::registry::PalaverMetrics;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Where `/metrics` listens unless configured otherwise.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";

/// A running metrics listener.
pub struct MetricsServer {
    /// The bound address (useful with port 0).
    pub local_addr: SocketAddr,
    pub task: JoinHandle<()>,
}

async fn scrape(State(metrics): State<Arc<PalaverMetrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], metrics.render())
}

/// The router (for embedding in another listener, or tests).
pub fn metrics_router(metrics: Arc<PalaverMetrics>) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state(metrics)
}

/// What to do when the listener's port is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfTaken {
    /// Refuse to start (a configured address).
    Fail,
    /// Log a warning and run without `/metrics` (the built-in default address, so a second
    /// server on one host — development, parallel tests — still starts).
    Skip,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot bind the metrics listener {addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Start `/metrics` on `addr` (`None`: disabled); see [`IfTaken`] for a taken port.
pub async fn start_metrics_listener(
    addr: Option<SocketAddr>,
    metrics: Arc<PalaverMetrics>,
    if_taken: IfTaken,
) -> Result<Option<MetricsServer>, ListenError> {
    let Some(addr) = addr else { return Ok(None) };
    match serve_metrics(addr, metrics).await {
        Ok(server) => Ok(Some(server)),
        Err(source) if if_taken == IfTaken::Skip => {
            tracing::warn!(%addr, error = %source, "default metrics port unavailable; /metrics is off (set usage.metrics_listen)");
            Ok(None)
        }
        Err(source) => Err(ListenError { addr, source }),
    }
}

/// Bind `addr` and serve `GET /metrics` on a background task.
pub async fn serve_metrics(addr: SocketAddr, metrics: Arc<PalaverMetrics>) -> std::io::Result<MetricsServer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let app = metrics_router(metrics);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    });
    tracing::info!(addr = %local_addr, "serving /metrics");
    Ok(MetricsServer { local_addr, task })
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_core::ParticipantType;
    use std::io::Write;
    use std::process::{Command, Stdio};

    async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
        let resp = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    #[tokio::test]
    async fn a_taken_port_is_fatal_only_when_configured() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = Some(taken.local_addr().unwrap());
        let metrics = PalaverMetrics::new().unwrap();
        let refused = start_metrics_listener(addr, metrics.clone(), IfTaken::Fail).await;
        assert!(matches!(refused, Err(ListenError { .. })));
        assert!(start_metrics_listener(addr, metrics.clone(), IfTaken::Skip).await.unwrap().is_none());
        assert!(start_metrics_listener(None, metrics, IfTaken::Fail).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn live_scrape_passes_promtool_when_available() {
        let metrics = PalaverMetrics::new().unwrap();
        metrics.billing.add_participant_ms(ParticipantType::Acs, 90_000, 4_000);
        metrics.signaling.record_join(std::time::Duration::from_millis(12));
        let server = serve_metrics("127.0.0.1:0".parse().unwrap(), metrics).await.unwrap();
        let (status, body) = http_get(server.local_addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("palaver_billed_participant_seconds_total 90"));
        assert!(body.contains("process_cpu_seconds_total"), "process metrics present");
        assert_eq!(http_get(server.local_addr, "/other").await.0, 404);
        // `promtool check metrics` lints the exposition (names, units, _total, help).
        let Ok(mut child) = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            eprintln!("promtool not installed: skipping the lint (make test installs it)");
            return;
        };
        child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}");
        server.task.abort();
    }
}
