//! The billing webhook outbox delivered from several nodes at once: leases keep each event to
//! one sender at a time, with the real delivery task of every node against one receiver.

use super::*;
use palaver_billing::telemetry::NoUsageTelemetry;
use palaver_billing::webhook::{OUTBOX_LEASE, WebhookConfig, spawn_webhook_delivery};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Events of one call of `n` participants who all joined and left: CallStarted, n added,
/// n removed, CallEnded.
fn call_of(n: usize) -> Vec<LedgerChange> {
    let mut meter = Meter::new(Price::default());
    let mut changes = Vec::new();
    for i in 0..n {
        let s = started(&format!("p{i}"), T0 + i as i64);
        changes.extend(meter.session_started(SessionStarted { conversation_id: "call".into(), ..s }).unwrap());
    }
    for i in 0..n {
        changes.extend(
            meter
                .session_ended(SessionEnded {
                    session_id: format!("p{i}"),
                    conversation_id: "call".into(),
                    reason: EndReason::Left,
                    at_ms: T0 + MIN,
                })
                .unwrap(),
        );
    }
    changes
}

/// A webhook receiver counting deliveries per event id. Hand-rolled over tokio's TCP (one
/// request per connection, `connection: close`) because this crate has no HTTP server
/// dependency; it answers 200 after a short pause, so deliveries from several nodes overlap.
async fn receiver(counts: Arc<Mutex<HashMap<String, u32>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/usage-hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let counts = counts.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 8192];
                let body = loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break request[end + 4..end + 4 + length].to_vec();
                        }
                    }
                };
                let events: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
                let id = events[0]["id"].as_str().unwrap().to_string();
                tokio::time::sleep(Duration::from_millis(3)).await;
                *counts.lock().unwrap().entry(id).or_default() += 1;
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_delivering_one_outbox_send_every_event_exactly_once() {
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let url = receiver(counts.clone()).await;
    let options = LedgerOptions { webhook_endpoints: vec![url], ..LedgerOptions::default() };
    let db = fresh_database();
    let changes = call_of(12);
    let expected = {
        let db = db.clone();
        let options = options.clone();
        tokio::task::spawn_blocking(move || {
            let mut writer = PgLedger::open(&db, "node-a", options).unwrap();
            writer.apply(&changes).unwrap();
            writer.outbox_backlog().unwrap()
        })
        .await
        .unwrap()
    };
    assert_eq!(expected, 26, "CallStarted, 12 added, 12 removed, CallEnded");

    // Small batches and a fast poll: the three nodes keep claiming from one outbox at once.
    let config = WebhookConfig { poll_interval: Duration::from_millis(2), batch_size: 3, ..WebhookConfig::default() };
    let tasks: Vec<_> = ["node-a", "node-b", "node-c"]
        .into_iter()
        .map(|node| {
            let ledger = PgLedger::open(&db, node, options.clone()).unwrap();
            spawn_webhook_delivery(
                Box::new(ledger),
                config.clone(),
                Arc::new(NoUsageTelemetry),
                palaver_billing::recorder::system_clock(),
            )
            .unwrap()
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let delivered = counts.lock().unwrap().len() as u64;
        let backlog = {
            let db = db.clone();
            let options = options.clone();
            tokio::task::spawn_blocking(move || {
                PgLedger::open(&db, "probe", options).unwrap().outbox_backlog().unwrap()
            })
            .await
            .unwrap()
        };
        if delivered == expected && backlog == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{delivered} of {expected} delivered, backlog {backlog}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let any pass still in flight finish before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for task in tasks {
        task.stop();
    }
    let counts = counts.lock().unwrap();
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "events delivered more than once: {twice:?}");
    assert_eq!(counts.len() as u64, expected);
}

#[test]
fn a_lease_keeps_rows_from_other_nodes_until_it_runs_out_and_a_late_failure_changes_nothing() {
    let db = fresh_database();
    let options =
        LedgerOptions { webhook_endpoints: vec!["https://hooks.example/usage".into()], ..LedgerOptions::default() };
    let mut a = PgLedger::open(&db, "node-a", options.clone()).unwrap();
    let mut b = PgLedger::open(&db, "node-b", options).unwrap();
    a.apply(&call_of(1)).unwrap();
    let now = T0 + 2 * MIN;
    let lease = OUTBOX_LEASE.as_millis() as i64;
    let claimed = a.due_deliveries(now, 10).unwrap();
    assert_eq!(claimed.len(), 4);
    assert!(a.due_deliveries(now, 10).unwrap().is_empty(), "leased rows are not handed out again, not even to a");
    assert!(b.due_deliveries(now + lease - 1, 10).unwrap().is_empty(), "b waits for a's lease");
    assert_eq!(a.outbox_backlog().unwrap(), 4, "leased rows are still pending");

    // a stalls; its lease runs out and b takes the rows over.
    let taken = b.due_deliveries(now + lease, 10).unwrap();
    assert_eq!(
        taken.iter().map(|i| &i.event_id).collect::<Vec<_>>(),
        claimed.iter().map(|i| &i.event_id).collect::<Vec<_>>()
    );
    b.record_delivery(&DeliveryOutcome::Delivered {
        event_id: taken[0].event_id.clone(),
        endpoint: taken[0].endpoint.clone(),
        at_ms: now + lease,
    })
    .unwrap();
    // a wakes up with verdicts for rows it no longer holds: neither undoes b's delivery nor
    // reschedules b's lease.
    for item in &claimed[..2] {
        a.record_delivery(&DeliveryOutcome::Failed {
            event_id: item.event_id.clone(),
            endpoint: item.endpoint.clone(),
            attempts: 1,
            next_attempt_ms: now + 1,
            error: "HTTP 503".into(),
            dead: true,
        })
        .unwrap();
    }
    assert_eq!(a.outbox_backlog().unwrap(), 3, "the delivered row stays delivered, the other is not dead");
    assert!(b.due_deliveries(now + lease + 1, 10).unwrap().is_empty(), "b's lease still holds the other three");
    // b's own failure verdict ends its lease and schedules the retry, due to anyone.
    b.record_delivery(&DeliveryOutcome::Failed {
        event_id: taken[1].event_id.clone(),
        endpoint: taken[1].endpoint.clone(),
        attempts: 1,
        next_attempt_ms: now + lease + 5,
        error: "HTTP 500".into(),
        dead: false,
    })
    .unwrap();
    let retry = a.due_deliveries(now + lease + 5, 10).unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!((retry[0].event_id.as_str(), retry[0].attempts), (taken[1].event_id.as_str(), 1));
}
