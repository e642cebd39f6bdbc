//! Delivers the outbox to webhook endpoints: at least once, exponential backoff with
//! jitter, give up ("dead") after a maximum number of attempts.
//!
//! Each POST carries a JSON array with one Event Grid event (as Event Grid does) and the
//! headers `aeg-event-type: Notification` and `aeg-delivery-count`. Any 2xx is success.
//! The schedule ([`next_outcome`]) is pure; the task around it does the I/O.
//!
//! Several nodes may deliver one outbox (cluster mode: PostgreSQL's `due_deliveries` leases the
//! rows it returns to the asking node for [`OUTBOX_LEASE`], `FOR UPDATE SKIP LOCKED`, so two
//! nodes never hold one row at once). A pass therefore starts no send after its lease could
//! have run out under a slow receiver ([`WebhookConfig::lease`] minus one request timeout): the
//! rest of the batch waits for the lease to pass and is claimed again, never sent twice at once.

use crate::ledger::{DeliveryOutcome, OutboxItem, UsageLedger};
use crate::recorder::Clock;
use crate::telemetry::{DeliveryResult, UsageTelemetry};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// How often the outbox is polled for due deliveries.
    pub poll_interval: Duration,
    /// Delay after the first failure; doubles per failure.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts before a delivery is given up (dead-lettered in the outbox).
    pub max_attempts: u32,
    pub request_timeout: Duration,
    /// Deliveries fetched per poll.
    pub batch_size: usize,
    /// How long a fetched batch stays leased to this node (the ledger's lease, [`OUTBOX_LEASE`]).
    pub lease: Duration,
}

/// How long `due_deliveries` of a shared outbox leases its rows to the asking node: above
/// the request timeout, so a send in flight finishes inside its lease.
pub const OUTBOX_LEASE: Duration = Duration::from_secs(60);

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            max_attempts: 30,
            request_timeout: Duration::from_secs(10),
            batch_size: 100,
            lease: OUTBOX_LEASE,
        }
    }
}

/// Delay before retry number `failures` (1 = after the first failure), with up to 10%
/// jitter derived from the event id so retries of many events spread out.
pub fn backoff_ms(config: &WebhookConfig, failures: u32, event_id: &str) -> i64 {
    let base = config.base_backoff.as_millis() as i64;
    let max = config.max_backoff.as_millis() as i64;
    let exp = failures.saturating_sub(1).min(30);
    let delay = base.saturating_mul(1_i64 << exp).min(max).max(1);
    let hash =
        event_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    delay + (hash % (delay as u64 / 10 + 1)) as i64
}

/// What to record after one attempt: `Ok(status)` is an HTTP answer, `Err` a transport
/// failure.
pub fn next_outcome(
    config: &WebhookConfig,
    item: &OutboxItem,
    result: Result<u16, String>,
    now_ms: i64,
) -> DeliveryOutcome {
    let attempts = item.attempts + 1;
    match result {
        Ok(status) if (200..300).contains(&status) => DeliveryOutcome::Delivered {
            event_id: item.event_id.clone(),
            endpoint: item.endpoint.clone(),
            at_ms: now_ms,
        },
        other => {
            let error = match other {
                Ok(status) => format!("HTTP {status}"),
                Err(e) => e,
            };
            DeliveryOutcome::Failed {
                event_id: item.event_id.clone(),
                endpoint: item.endpoint.clone(),
                attempts,
                next_attempt_ms: now_ms + backoff_ms(config, attempts, &item.event_id),
                error,
                dead: attempts >= config.max_attempts,
            }
        }
    }
}

/// The running delivery task.
pub struct WebhookDelivery {
    pub task: JoinHandle<()>,
}

impl WebhookDelivery {
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Start delivering the outbox of `ledger` (its own connection) on a tokio task.
pub fn spawn_webhook_delivery(
    ledger: Box<dyn UsageLedger>,
    config: WebhookConfig,
    telemetry: Arc<dyn UsageTelemetry>,
    clock: Clock,
) -> Result<WebhookDelivery, reqwest::Error> {
    let client = reqwest::Client::builder().timeout(config.request_timeout).build()?;
    let ledger = Arc::new(Mutex::new(ledger));
    let task = tokio::spawn(async move {
        loop {
            let delivered_any = deliver_due(&ledger, &client, &config, telemetry.as_ref(), &clock).await;
            if !delivered_any {
                tokio::time::sleep(config.poll_interval).await;
            }
        }
    });
    Ok(WebhookDelivery { task })
}

fn lock(ledger: &Mutex<Box<dyn UsageLedger>>) -> std::sync::MutexGuard<'_, Box<dyn UsageLedger>> {
    ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One pass over due deliveries; returns whether anything was attempted.
async fn deliver_due(
    ledger: &Mutex<Box<dyn UsageLedger>>,
    client: &reqwest::Client,
    config: &WebhookConfig,
    telemetry: &dyn UsageTelemetry,
    clock: &Clock,
) -> bool {
    let claimed_ms = clock();
    // The last instant a send may start and still end (timeout) inside the lease.
    let last_start_ms = claimed_ms + config.lease.saturating_sub(config.request_timeout).as_millis() as i64 - 1_000;
    let due = lock(ledger).due_deliveries(claimed_ms, config.batch_size);
    let due = match due {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the webhook outbox");
            return false;
        }
    };
    for (sent, item) in due.iter().enumerate() {
        if clock() > last_start_ms {
            // Left to the lease: another pass (on any node) claims these again once it passes.
            tracing::warn!(
                left = due.len() - sent,
                "webhook pass ran to the end of its outbox lease; the rest waits for it"
            );
            break;
        }
        let body = format!("[{}]", item.payload);
        let sent = client
            .post(&item.endpoint)
            .header("content-type", "application/json")
            .header("aeg-event-type", "Notification")
            .header("aeg-delivery-count", item.attempts.to_string())
            .body(body)
            .send()
            .await;
        let result = sent.map(|r| r.status().as_u16()).map_err(|e| e.to_string());
        let outcome = next_outcome(config, item, result, clock());
        let result = match &outcome {
            DeliveryOutcome::Delivered { .. } => DeliveryResult::Delivered,
            DeliveryOutcome::Failed { dead: true, .. } => DeliveryResult::Dead,
            DeliveryOutcome::Failed { .. } => DeliveryResult::Failed,
        };
        if let DeliveryOutcome::Failed { error, attempts, dead, .. } = &outcome {
            tracing::warn!(event_id = %item.event_id, endpoint = %item.endpoint, attempts, dead, error = %error, "webhook delivery failed");
        }
        telemetry.webhook_delivery(result);
        if let Err(e) = lock(ledger).record_delivery(&outcome) {
            // Not recorded: the item stays due and is sent again (at-least-once).
            tracing::error!(error = %e, "cannot record a webhook delivery");
        }
    }
    if let Ok(n) = lock(ledger).outbox_backlog() {
        telemetry.webhook_backlog(n);
        telemetry.billing_outbox_pending(n);
    }
    !due.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{LedgerOptions, SqliteLedger};
    use crate::meter::Meter;
    use crate::pricing::Price;
    use crate::recorder::system_clock;
    use crate::telemetry::recording::RecordingTelemetry;
    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use palaver_core::{CallType, EndReason, ParticipantType, SessionEnded, SessionStarted};
    use std::collections::HashMap;

    #[test]
    fn backoff_doubles_caps_and_gives_up() {
        let config = WebhookConfig {
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_attempts: 3,
            ..Default::default()
        };
        let within = |failures, lo: i64| {
            let d = backoff_ms(&config, failures, "evt");
            assert!((lo..=lo + lo / 10).contains(&d), "{failures}: {d}");
        };
        within(1, 1_000);
        within(2, 2_000);
        within(3, 4_000);
        within(20, 60_000);
        within(u32::MAX, 60_000);
        let item = OutboxItem {
            event_id: "e".into(),
            endpoint: "http://x".into(),
            payload: "{}".into(),
            attempts: 2,
            next_attempt_ms: 0,
        };
        assert!(matches!(
            next_outcome(&config, &item, Ok(503), 0),
            DeliveryOutcome::Failed { dead: true, attempts: 3, .. }
        ));
        assert!(matches!(next_outcome(&config, &item, Ok(204), 7), DeliveryOutcome::Delivered { at_ms: 7, .. }));
        let first = OutboxItem { attempts: 0, ..item };
        match next_outcome(&config, &first, Err("connection refused".into()), 100) {
            DeliveryOutcome::Failed { attempts: 1, next_attempt_ms, dead: false, error, .. } => {
                assert!(next_attempt_ms >= 1_100);
                assert_eq!(error, "connection refused");
            }
            other => panic!("{other:?}"),
        }
    }

    /// A receiver that fails the first two attempts of every event with 500.
    #[derive(Clone, Default)]
    struct Receiver {
        attempts: Arc<Mutex<HashMap<String, u32>>>,
        accepted: Arc<Mutex<Vec<(String, String)>>>,
    }

    async fn receive(State(rx): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
        let events: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        let id = events[0]["id"].as_str().unwrap().to_string();
        assert_eq!(headers["aeg-event-type"], "Notification");
        let n = {
            let mut attempts = rx.attempts.lock().unwrap();
            let n = attempts.entry(id.clone()).or_default();
            *n += 1;
            *n
        };
        if n <= 2 {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        rx.accepted.lock().unwrap().push((id, events[0]["eventType"].as_str().unwrap().to_string()));
        StatusCode::OK
    }

    #[tokio::test]
    async fn events_reach_a_flaky_receiver_after_retries() {
        let receiver = Receiver::default();
        let app = Router::new().route("/hook", post(receive)).with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let options =
            LedgerOptions { webhook_endpoints: vec![format!("http://{addr}/hook")], ..LedgerOptions::default() };
        let mut ledger = SqliteLedger::open_in_memory(options).unwrap();
        let mut meter = Meter::new(Price::default());
        let now = chrono::Utc::now().timestamp_millis();
        let mut changes = meter
            .session_started(SessionStarted {
                call_type: CallType::P2P,
                ..crate::testing::session_started("s", "c", "8:acs:r_u", ParticipantType::Acs, now)
            })
            .unwrap();
        let ended = SessionEnded {
            session_id: "s".into(),
            conversation_id: "c".into(),
            reason: EndReason::Left,
            at_ms: now + 1000,
        };
        changes.extend(meter.session_ended(ended).unwrap());
        crate::ledger::UsageLedger::apply(&mut ledger, &changes).unwrap();

        let telemetry = Arc::new(RecordingTelemetry::default());
        let config = WebhookConfig {
            poll_interval: Duration::from_millis(20),
            base_backoff: Duration::from_millis(30),
            ..WebhookConfig::default()
        };
        let delivery = spawn_webhook_delivery(Box::new(ledger), config, telemetry.clone(), system_clock()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while receiver.accepted.lock().unwrap().len() < 4 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut accepted: Vec<String> = receiver.accepted.lock().unwrap().iter().map(|(_, t)| t.clone()).collect();
        accepted.sort();
        assert_eq!(
            accepted,
            vec![
                "Microsoft.Communication.CallEnded",
                "Microsoft.Communication.CallParticipantAdded",
                "Microsoft.Communication.CallParticipantRemoved",
                "Microsoft.Communication.CallStarted"
            ]
        );
        assert!(receiver.attempts.lock().unwrap().values().all(|n| *n == 3), "two failures, then success");
        // give the task a moment to record the last outcome and refresh the backlog gauge
        tokio::time::sleep(Duration::from_millis(100)).await;
        let reported = telemetry.reported();
        assert_eq!(reported.deliveries.get(&DeliveryResult::Delivered), Some(&4), "{reported:?}");
        assert_eq!(reported.deliveries.get(&DeliveryResult::Failed), Some(&8));
        assert_eq!(reported.webhook_backlog, Some(0));
        assert_eq!(reported.billing_outbox_pending, Some(0));
        delivery.stop();
        server.abort();
    }

    #[tokio::test]
    async fn a_pass_starts_no_send_once_its_outbox_lease_could_run_out() {
        // Nothing listens on the endpoint: every send that starts fails and is counted.
        let options =
            LedgerOptions { webhook_endpoints: vec!["http://127.0.0.1:9/hook".into()], ..LedgerOptions::default() };
        let mut ledger = SqliteLedger::open_in_memory(options).unwrap();
        let mut meter = Meter::new(Price::default());
        let changes = meter
            .session_started(crate::testing::session_started("s", "c", "8:acs:r_u", ParticipantType::Acs, 1_000))
            .unwrap();
        crate::ledger::UsageLedger::apply(&mut ledger, &changes).unwrap();
        let ledger: Mutex<Box<dyn UsageLedger>> = Mutex::new(Box::new(ledger));
        let client = reqwest::Client::new();
        let clock: Clock = Arc::new(|| 2_000);
        // A lease no longer than one request timeout leaves no time to start a send.
        let short = WebhookConfig { lease: Duration::from_secs(10), ..WebhookConfig::default() };
        let telemetry = RecordingTelemetry::default();
        assert!(deliver_due(&ledger, &client, &short, &telemetry, &clock).await, "the batch was claimed");
        assert!(telemetry.reported().deliveries.is_empty(), "nothing was sent");
        assert_eq!(lock(&ledger).outbox_backlog().unwrap(), 2);
        // With the default lease the same batch is sent (and fails: nobody listens).
        let telemetry = RecordingTelemetry::default();
        deliver_due(&ledger, &client, &WebhookConfig::default(), &telemetry, &clock).await;
        assert_eq!(telemetry.reported().deliveries.get(&DeliveryResult::Failed), Some(&2));
    }
}
