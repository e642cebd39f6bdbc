//! Call lifecycle events (`CallStarted`, `CallParticipantAdded`, `CallParticipantRemoved`,
//! `CallEnded`) derived from the participant sessions signaling reports: a
//! [`SessionObserver`] that forwards every session to the real observer (billing) and feeds
//! its own copy of billing's pure [`Meter`], whose ledger changes billing's
//! `webhook::events::events_for` turns into the ACS event shapes (one definition of the data
//! shapes for both the usage webhook and Event Grid subscriptions). Publishing happens on a
//! task: an observer must not block the gateway's actors.

use crate::service::Events;
use palaver_billing::meter::{LedgerChange, Meter};
use palaver_billing::pricing::Price;
use palaver_billing::webhook::events::events_for;
use palaver_core::{CallType, DurableAck, SessionEnded, SessionObserver, SessionStarted, SystemEvent};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The observer the binary plugs into signaling in place of billing's own.
pub struct LifecycleEvents {
    inner: Arc<dyn SessionObserver>,
    meter: Mutex<Meter>,
    queue: mpsc::UnboundedSender<Vec<LedgerChange>>,
}

impl LifecycleEvents {
    /// Wrap `inner`; spawns the publishing task on the current tokio runtime.
    pub fn wrap(inner: Arc<dyn SessionObserver>, events: Events) -> Arc<dyn SessionObserver> {
        let (queue, mut rx) = mpsc::unbounded_channel::<Vec<LedgerChange>>();
        tokio::spawn(async move {
            while let Some(changes) = rx.recv().await {
                // The store call blocks (PostgreSQL may hang up to its query timeout): off the
                // runtime's workers, which carry every socket; awaited, so the order is kept.
                let events = events.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    let topic = events.topic();
                    for change in &changes {
                        for event in events_for(&topic, change) {
                            let published = events.publish_now(SystemEvent {
                                event_type: event.event_type,
                                subject: event.subject,
                                data: event.data,
                            });
                            if let Err(e) = published {
                                tracing::error!(error = %e, "cannot queue a call lifecycle event");
                            }
                        }
                    }
                })
                .await;
            }
        });
        Arc::new(Self { inner, meter: Mutex::new(Meter::new(Price::default())), queue })
    }

    /// Raises the lifecycle events of what billing's crash recovery closed at startup
    /// (`CallParticipantRemoved` for each session, `CallEnded` for each call): without them a
    /// crash would leave those calls open for the subscribers. Accepted into the durable
    /// outbox before it returns.
    pub fn publish_recovered(events: &Events, changes: &[LedgerChange]) -> usize {
        let topic = events.topic();
        let mut published = 0;
        for change in changes {
            for event in events_for(&topic, change) {
                let event = SystemEvent { event_type: event.event_type, subject: event.subject, data: event.data };
                match events.publish_now(event) {
                    Ok(()) => published += 1,
                    Err(e) => tracing::error!(error = %e, "cannot queue a recovered call lifecycle event"),
                }
            }
        }
        published
    }

    fn meter(&self) -> std::sync::MutexGuard<'_, Meter> {
        self.meter.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, changes: Vec<LedgerChange>) {
        if !changes.is_empty() {
            let _ = self.queue.send(changes);
        }
    }
}

impl SessionObserver for LifecycleEvents {
    fn session_started(&self, event: SessionStarted) {
        self.inner.session_started(event.clone());
        match self.meter().session_started(event) {
            Ok(changes) => self.send(changes),
            Err(e) => tracing::debug!(error = %e, "lifecycle events: session ignored"),
        }
    }

    /// Forwards the acknowledgment to the real observer: a join is acknowledged only once
    /// billing holds its start durably, whether or not events wrap the observer.
    fn session_started_durably(&self, event: SessionStarted, durable: DurableAck) {
        self.inner.session_started_durably(event.clone(), durable);
        match self.meter().session_started(event) {
            Ok(changes) => self.send(changes),
            Err(e) => tracing::debug!(error = %e, "lifecycle events: session ignored"),
        }
    }

    fn media_used(&self, usage: palaver_core::MediaUsed) {
        self.inner.media_used(usage);
    }

    fn session_ended(&self, event: SessionEnded) {
        self.inner.session_ended(event.clone());
        match self.meter().session_ended(event) {
            Ok(changes) => self.send(changes),
            Err(e) => tracing::debug!(error = %e, "lifecycle events: session end ignored"),
        }
    }

    fn call_type_changed(&self, conversation_id: &str, call_type: CallType) {
        self.inner.call_type_changed(conversation_id, call_type);
        let changes = self.meter().call_type_changed(conversation_id, call_type);
        self.send(changes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EventsConfig, SubscriptionConfig};
    use crate::service::EventsOptions;
    use palaver_core::{EndReason, EndpointType, ParticipantType};

    #[derive(Default)]
    struct Counting(Mutex<Vec<String>>);
    impl SessionObserver for Counting {
        fn session_started(&self, e: SessionStarted) {
            self.0.lock().unwrap().push(format!("start {}", e.session_id));
        }
        fn session_ended(&self, e: SessionEnded) {
            self.0.lock().unwrap().push(format!("end {}", e.session_id));
        }
    }

    #[tokio::test]
    async fn a_call_publishes_started_added_removed_ended_and_billing_still_sees_it() {
        let config = EventsConfig {
            subscriptions: vec![SubscriptionConfig {
                name: "all-events".into(),
                endpoint: "http://127.0.0.1:9/x".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let events = Events::open_in_memory(EventsOptions::new(config, "res")).unwrap();
        let billing = Arc::new(Counting::default());
        let observer = LifecycleEvents::wrap(billing.clone(), events.clone());
        let started = |id: &str| SessionStarted {
            session_id: id.into(),
            conversation_id: "conv-1".into(),
            call_type: CallType::Group,
            participant_raw_id: format!("8:acs:res_{id}"),
            participant_type: ParticipantType::Acs,
            endpoint_type: EndpointType::Voip,
            thread_id: None,
            at_ms: 1_000,
            phone: None,
        };
        let ended = |id: &str| SessionEnded {
            session_id: id.into(),
            conversation_id: "conv-1".into(),
            reason: EndReason::Left,
            at_ms: 5_000,
        };
        observer.session_started(started("a"));
        observer.session_started(started("b"));
        observer.session_ended(ended("a"));
        observer.session_ended(ended("b"));
        assert_eq!(billing.0.lock().unwrap().len(), 4);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let counts = events.subscription("all-events").unwrap().unwrap().deliveries;
            if counts.pending == 6 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{counts:?}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let store = events.store();
        let mut stmt = store_types(store.as_ref());
        stmt.sort();
        assert_eq!(
            stmt,
            [
                "Microsoft.Communication.CallEnded",
                "Microsoft.Communication.CallParticipantAdded",
                "Microsoft.Communication.CallParticipantAdded",
                "Microsoft.Communication.CallParticipantRemoved",
                "Microsoft.Communication.CallParticipantRemoved",
                "Microsoft.Communication.CallStarted",
            ]
        );
    }

    #[tokio::test]
    async fn sessions_closed_by_crash_recovery_raise_participant_removed_and_call_ended() {
        use palaver_billing::ledger::{LedgerOptions, SqliteLedger, UsageLedger};
        let path = std::env::temp_dir().join(format!("palaver-recovered-{}.db", uuid::Uuid::new_v4().simple()));
        {
            let mut ledger = SqliteLedger::open(&path, LedgerOptions::default()).unwrap();
            let mut meter = Meter::new(Price::default());
            let changes = meter
                .session_started(SessionStarted {
                    session_id: "a".into(),
                    conversation_id: "conv-1".into(),
                    call_type: CallType::Group,
                    participant_raw_id: "8:acs:res_a".into(),
                    participant_type: ParticipantType::Acs,
                    endpoint_type: EndpointType::Voip,
                    thread_id: None,
                    at_ms: 1_000,
                    phone: None,
                })
                .unwrap();
            ledger.apply(&changes).unwrap();
            ledger.checkpoint(16_000).unwrap();
            // the process dies here
        }
        let report = SqliteLedger::open(&path, LedgerOptions::default()).unwrap().recover().unwrap();
        let config = EventsConfig {
            subscriptions: vec![SubscriptionConfig {
                name: "all-events".into(),
                endpoint: "http://127.0.0.1:9/x".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let events = Events::open_in_memory(EventsOptions::new(config, "res")).unwrap();
        assert_eq!(LifecycleEvents::publish_recovered(&events, &report.changes), 2);
        let mut types = store_types(events.store().as_ref());
        types.sort();
        assert_eq!(types, ["Microsoft.Communication.CallEnded", "Microsoft.Communication.CallParticipantRemoved"]);
        let _ = std::fs::remove_file(&path);
    }

    /// Billing that keeps the durable acknowledgment until the test releases it.
    #[derive(Default)]
    struct HoldsAcks(Mutex<Vec<DurableAck>>);
    impl SessionObserver for HoldsAcks {
        fn session_started(&self, _e: SessionStarted) {}
        fn session_started_durably(&self, _e: SessionStarted, durable: DurableAck) {
            self.0.lock().unwrap().push(durable);
        }
        fn session_ended(&self, _e: SessionEnded) {}
    }

    #[tokio::test]
    async fn the_durable_acknowledgment_waits_for_billing_through_the_wrapper() {
        let events = Events::open_in_memory(EventsOptions::new(EventsConfig::default(), "res")).unwrap();
        let billing = Arc::new(HoldsAcks::default());
        let observer = LifecycleEvents::wrap(billing.clone(), events);
        let acknowledged = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = acknowledged.clone();
        let start = SessionStarted {
            session_id: "a".into(),
            conversation_id: "conv-1".into(),
            call_type: CallType::Group,
            participant_raw_id: "8:acs:res_a".into(),
            participant_type: ParticipantType::Acs,
            endpoint_type: EndpointType::Voip,
            thread_id: None,
            at_ms: 1_000,
            phone: None,
        };
        observer.session_started_durably(
            start,
            DurableAck::new(move || flag.store(true, std::sync::atomic::Ordering::SeqCst)),
        );
        assert!(!acknowledged.load(std::sync::atomic::Ordering::SeqCst), "acknowledged before billing had it");
        let held = billing.0.lock().unwrap().pop().expect("billing received the acknowledgment");
        held.acknowledge();
        assert!(acknowledged.load(std::sync::atomic::Ordering::SeqCst));
    }

    fn store_types(store: &dyn crate::store::EventStorage) -> Vec<String> {
        store.pending_event_types().unwrap()
    }
}
