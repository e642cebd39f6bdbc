//! The delivery worker: a tokio task that wakes on a new event, a finished attempt or the
//! poll interval; runs due validation handshakes and due deliveries concurrently (one in
//! flight per outbox row, so a callback stream has at most one, its oldest); and records
//! each result in the outbox ([`crate::schedule::outcome`]) before the next row of that
//! stream can be picked. A subscription with output batching (`max_events_per_batch` > 1)
//! gets its due events in batches ([`batches`]): one POST of a JSON array (Event Grid
//! schema: `application/json`; CloudEvents: `application/cloudevents-batch+json`), whose
//! outcome is recorded for every event in it (Event Grid: all or none). Events are never
//! held back to fill a batch.

use crate::config::EventSchema;
use crate::envelope;
use crate::schedule::{backoff_ms, deadline_ms, outcome};
use crate::service::{Events, WEBHOOK_REQUEST_ORIGIN};
use crate::store::{ItemKind, OutboxItem, Outcome, StoredSubscription};
use crate::telemetry::{AttemptResult, DeliveryKind};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Delivered rows are kept this long (for counts), then pruned.
const KEEP_DELIVERED_MS: i64 = 24 * 3600 * 1000;

/// The running worker.
pub struct DeliveryTask {
    task: JoinHandle<()>,
}

impl DeliveryTask {
    pub fn stop(self) {
        self.task.abort();
    }
}

/// HTTP clients: one per CA file (none: the system roots). No redirects are followed.
#[derive(Default)]
struct Clients {
    by_ca: Mutex<HashMap<Option<String>, reqwest::Client>>,
}

impl Clients {
    fn get(&self, ca_file: Option<&str>, timeout: std::time::Duration) -> Result<reqwest::Client, String> {
        let key = ca_file.map(str::to_string);
        let mut map = self.by_ca.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let mut builder = reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none());
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("ca_file {path}: {e}"))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("ca_file {path}: {e}"))? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| format!("http client: {e}"))?;
        map.insert(key, client.clone());
        Ok(client)
    }
}

enum Done {
    Item(i64),
    Validation(String),
}

/// Start delivering on the current tokio runtime.
pub fn spawn_delivery(events: Events) -> DeliveryTask {
    let task = tokio::spawn(run(events));
    DeliveryTask { task }
}

async fn run(events: Events) {
    let clients = Arc::new(Clients::default());
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut in_flight: HashSet<i64> = HashSet::new();
    let mut validating: HashSet<String> = HashSet::new();
    let mut last_prune: Option<i64> = None;
    let config = events.0.config.delivery.clone();
    loop {
        let now = events.now();
        let limit = config.batch_size.max(1) + in_flight.len();
        let prune = last_prune.is_none_or(|at| now.saturating_sub(at) > 3_600_000);
        if prune {
            last_prune = Some(now);
        }
        // The store blocks (a hung PostgreSQL up to its query timeout): off the async workers.
        let reader = events.clone();
        let Ok((validations, due, depth)) = tokio::task::spawn_blocking(move || {
            let mut store = reader.store();
            if prune && let Err(e) = store.prune_delivered(now - KEEP_DELIVERED_MS) {
                tracing::warn!(error = %e, "cannot prune delivered events");
            }
            (store.due_validations(now), store.due(now, limit), store.pending_count())
        })
        .await
        else {
            return;
        };
        match validations {
            Ok(list) => {
                for s in list {
                    if validating.insert(s.config.name.clone()) {
                        let (events, clients, done) = (events.clone(), clients.clone(), done_tx.clone());
                        tokio::spawn(async move {
                            let name = s.config.name.clone();
                            validate(&events, &clients, s).await;
                            let _ = done.send(Done::Validation(name));
                        });
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read due validations"),
        }
        match due {
            Ok(items) => {
                let idle: Vec<OutboxItem> = items.into_iter().filter(|i| !in_flight.contains(&i.seq)).collect();
                for group in batches(idle) {
                    if in_flight.len() >= config.batch_size.max(1) {
                        break;
                    }
                    let seqs: Vec<i64> = group.iter().map(|i| i.seq).collect();
                    in_flight.extend(seqs.iter().copied());
                    let (events, clients, done) = (events.clone(), clients.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        deliver(&events, &clients, group).await;
                        for seq in seqs {
                            let _ = done.send(Done::Item(seq));
                        }
                    });
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the events outbox"),
        }
        if let Ok(depth) = depth {
            events.0.telemetry.outbox_depth(depth);
        }
        let finished = |d: Done, in_flight: &mut HashSet<i64>, validating: &mut HashSet<String>| match d {
            Done::Item(seq) => {
                in_flight.remove(&seq);
            }
            Done::Validation(name) => {
                validating.remove(&name);
            }
        };
        tokio::select! {
            _ = events.0.wake.notified() => {}
            Some(d) = done_rx.recv() => finished(d, &mut in_flight, &mut validating),
            _ = tokio::time::sleep(config.poll_interval()) => {}
        }
        while let Ok(d) = done_rx.try_recv() {
            finished(d, &mut in_flight, &mut validating);
        }
    }
}

/// Due items in delivery groups, in order: an item of a batching subscription joins the open
/// batch of its subscription while that has fewer than its `max_events_per_batch` events and
/// stays within its preferred size (a first event always fits); every other item goes alone.
pub(crate) fn batches(items: Vec<OutboxItem>) -> Vec<Vec<OutboxItem>> {
    let mut groups: Vec<Vec<OutboxItem>> = Vec::new();
    // subscription -> (index of its open group, bytes in it)
    let mut open: HashMap<String, (usize, usize)> = HashMap::new();
    for item in items {
        let (max_events, max_bytes) = item.batching;
        let batching = item.kind == ItemKind::System && max_events > 1;
        let Some(name) = item.subscription.clone().filter(|_| batching) else {
            groups.push(vec![item]);
            continue;
        };
        let size = item.payload.len();
        match open.get_mut(&name) {
            Some((at, bytes)) if groups[*at].len() < max_events as usize && *bytes + size <= max_bytes => {
                *bytes += size;
                groups[*at].push(item);
            }
            _ => {
                open.insert(name, (groups.len(), size));
                groups.push(vec![item]);
            }
        }
    }
    groups
}

/// The body and content type of one POST of `items` (one item of a subscription without
/// batching: its own; a batch: one JSON array of the events).
fn batch_body(items: &[OutboxItem]) -> (String, String) {
    let first = &items[0];
    if items.len() == 1 && first.batching.0 <= 1 {
        return (first.payload.clone(), first.content_type.clone());
    }
    if first.content_type.starts_with("application/cloudevents") {
        let body = format!("[{}]", items.iter().map(|i| i.payload.as_str()).collect::<Vec<_>>().join(","));
        return (body, "application/cloudevents-batch+json; charset=utf-8".to_owned());
    }
    // Event Grid schema: each row holds a one-event array.
    let inner: Vec<&str> = items
        .iter()
        .map(|i| i.payload.trim().strip_prefix('[').and_then(|p| p.strip_suffix(']')).unwrap_or(&i.payload))
        .collect();
    (format!("[{}]", inner.join(",")), first.content_type.clone())
}

/// One delivery attempt of a group (one item, or a batch), recorded for each item.
async fn deliver(events: &Events, clients: &Clients, items: Vec<OutboxItem>) {
    let config = &events.0.config.delivery;
    // Past its deadline (e.g. it waited for the subscription's handshake): not sent at all.
    let (late, items): (Vec<_>, Vec<_>) = items
        .into_iter()
        .partition(|item| deadline_ms(config, &item.event_type, item.created_ms).is_some_and(|d| events.now() > d));
    for item in late {
        record(events, item, Err("not sent".to_owned()));
    }
    let Some(first) = items.first() else { return };
    let (payload, content_type) = batch_body(&items);
    let attempts = items.iter().map(|i| i.attempts).max().unwrap_or(0);
    let request = OutboxItem { payload, content_type, attempts, ..first.clone() };
    let result = send(events, clients, &request).await;
    if items.len() > 1 {
        tracing::debug!(events = items.len(), endpoint = %first.endpoint, "batch delivery");
    }
    for item in items {
        record(events, item, result.clone());
    }
}

/// Records one item's attempt.
fn record(events: &Events, item: OutboxItem, result: Result<u16, String>) {
    let config = &events.0.config.delivery;
    let deadline = deadline_ms(config, &item.event_type, item.created_ms);
    let now = events.now();
    let recorded = outcome(config, item.attempts, &item.event_id, result, now, deadline);
    let kind = match item.kind {
        ItemKind::System => DeliveryKind::System,
        ItemKind::Callback => DeliveryKind::Callback,
    };
    let result = match &recorded {
        Outcome::Delivered { .. } => {
            tracing::debug!(event_id = %item.event_id, endpoint = %item.endpoint, kind = kind.as_str(), "event delivered");
            AttemptResult::Delivered
        }
        Outcome::Retry { attempts, error, next_attempt_ms } => {
            tracing::info!(event_id = %item.event_id, endpoint = %item.endpoint, kind = kind.as_str(), attempts,
                retry_in_ms = next_attempt_ms - now, error = %error, "event delivery failed; will retry");
            AttemptResult::Retried
        }
        Outcome::Dead { attempts, error } => {
            tracing::warn!(event_id = %item.event_id, event_type = %item.event_type, endpoint = %item.endpoint,
                kind = kind.as_str(), attempts, error = %error, "event dead-lettered after its last attempt");
            AttemptResult::DeadLettered
        }
    };
    events.0.telemetry.attempt(kind, result);
    if let Err(e) = events.store().record(item.seq, &recorded) {
        // Not recorded: the row stays due and is sent again (at least once).
        tracing::error!(error = %e, seq = item.seq, "cannot record a delivery");
    }
}

async fn send(events: &Events, clients: &Clients, item: &OutboxItem) -> Result<u16, String> {
    let config = &events.0.config.delivery;
    let ca_file = match item.kind {
        ItemKind::System => item.ca_file.as_deref(),
        ItemKind::Callback => events.0.config.callback_ca_file.as_deref(),
    };
    let client = clients.get(ca_file, config.request_timeout())?;
    let mut request = client.post(&item.endpoint).header("content-type", &item.content_type).body(item.payload.clone());
    request = match item.kind {
        ItemKind::System => request
            .header("aeg-event-type", "Notification")
            .header("aeg-subscription-name", item.subscription.as_deref().unwrap_or_default().to_ascii_uppercase())
            .header("aeg-delivery-count", item.attempts.to_string())
            .header("aeg-data-version", envelope::DATA_VERSION)
            .header("aeg-metadata-version", envelope::METADATA_VERSION),
        ItemKind::Callback => {
            let token = events.0.signer.token(&events.audience(), &events.issuer(), events.now() / 1000);
            request.header("authorization", format!("Bearer {token}"))
        }
    };
    let response = request.send().await.map_err(|e| error_chain(&e))?;
    Ok(response.status().as_u16())
}

/// One validation handshake, recorded.
async fn validate(events: &Events, clients: &Clients, s: StoredSubscription) {
    let name = s.config.name.clone();
    let result = handshake(events, clients, &s).await;
    let now = events.now();
    let recorded = match result {
        Ok(()) => {
            tracing::info!(subscription = %name, endpoint = %s.config.endpoint, "event subscription validated");
            events.0.telemetry.attempt(DeliveryKind::Validation, AttemptResult::Delivered);
            Ok(now)
        }
        Err(error) => {
            let config = &events.0.config.delivery;
            let next = now + backoff_ms(config, s.validation_attempts + 1, &name);
            tracing::warn!(subscription = %name, endpoint = %s.config.endpoint, error = %error,
                retry_in_ms = next - now, "event subscription validation failed; nothing is delivered until it passes");
            events.0.telemetry.attempt(DeliveryKind::Validation, AttemptResult::Retried);
            Err((error, next))
        }
    };
    if let Err(e) = events.store().record_validation(&name, &s.validation_code, recorded) {
        tracing::error!(error = %e, subscription = %name, "cannot record a validation");
    }
    events.0.wake.notify_one();
}

async fn handshake(events: &Events, clients: &Clients, s: &StoredSubscription) -> Result<(), String> {
    let config = &events.0.config.delivery;
    let ca_file = (!s.config.ca_file.is_empty()).then_some(s.config.ca_file.as_str());
    let client = clients.get(ca_file, config.request_timeout())?;
    match s.config.schema {
        EventSchema::EventGridSchema => {
            let url = events.validation_url(&s.config.name, &s.validation_code);
            let body = envelope::validation_event(&events.topic(), &s.validation_code, &url, events.now());
            let response = client
                .post(&s.config.endpoint)
                .header("content-type", "application/json")
                .header("aeg-event-type", "SubscriptionValidation")
                .header("aeg-subscription-name", s.config.name.to_ascii_uppercase())
                .header("aeg-delivery-count", "0")
                .header("aeg-data-version", "1")
                .header("aeg-metadata-version", envelope::METADATA_VERSION)
                .body(body.to_string())
                .send()
                .await
                .map_err(|e| error_chain(&e))?;
            let status = response.status().as_u16();
            if !(200..300).contains(&status) {
                return Err(format!("validation answered HTTP {status}"));
            }
            let answer: serde_json::Value = response.json().await.map_err(|e| format!("validation answer: {e}"))?;
            match answer.get("validationResponse").and_then(|v| v.as_str()) {
                Some(code) if code.eq_ignore_ascii_case(&s.validation_code) => Ok(()),
                Some(_) => Err("validationResponse does not echo the validationCode".into()),
                None => Err("no validationResponse in the answer (visit the validationUrl to validate by hand)".into()),
            }
        }
        EventSchema::CloudEventSchemaV10 => {
            let response = client
                .request(reqwest::Method::OPTIONS, &s.config.endpoint)
                .header("WebHook-Request-Origin", WEBHOOK_REQUEST_ORIGIN)
                .header("WebHook-Request-Rate", "120")
                .send()
                .await
                .map_err(|e| error_chain(&e))?;
            let status = response.status().as_u16();
            if status != 200 {
                return Err(format!("abuse-protection handshake answered HTTP {status}"));
            }
            let allowed = response.headers().get("WebHook-Allowed-Origin").and_then(|v| v.to_str().ok());
            match allowed {
                Some(o) if o == "*" || o.eq_ignore_ascii_case(WEBHOOK_REQUEST_ORIGIN) => Ok(()),
                Some(o) => Err(format!("WebHook-Allowed-Origin `{o}` does not allow {WEBHOOK_REQUEST_ORIGIN}")),
                None => Err("no WebHook-Allowed-Origin header in the handshake answer".into()),
            }
        }
    }
}

/// An error with its causes (reqwest's own message hides the useful part).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
