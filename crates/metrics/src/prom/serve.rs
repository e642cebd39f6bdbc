//! The `/metrics` HTTP listener (its own port, default `127.0.0.1:9464`).

use super::registry::PalaverMetrics;
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
