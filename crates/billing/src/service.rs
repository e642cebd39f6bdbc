//! One-call wiring for the server binary: open the usage ledger (running crash recovery),
//! start the recorder, the export service and webhook delivery.
//!
//! ```text
//! let usage = UsageService::start(&cfg.usage, &cfg.server.data_dir, telemetry.clone())?;
//! let parts = AppParts { sessions: usage.observer(), .. };
//! let app = router(state).layer(axum::Extension(usage.export()));
//! ... on shutdown: state.gateway.shutdown().await; usage.shutdown();
//! ```

use crate::export::UsageExport;
use crate::ledger::{LedgerError, LedgerOptions, RecoveryReport, SpoolingLedger, SqliteLedger, UsageLedger};
use crate::pricing::{ChatPrice, MediaPrices, Price, PriceError};
use crate::recorder::{RecorderConfig, UsageRecorder, system_clock};
use crate::telemetry::UsageTelemetry;
use crate::webhook::{WebhookConfig, WebhookDelivery, spawn_webhook_delivery};
use palaver_core::{ChatUsageObserver, SessionObserver};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The `[usage]` configuration section. Every key is optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageConfig {
    /// Address of the Prometheus `/metrics` listener; `None` disables it. Not used by billing:
    /// the key stays in `[usage]` so existing configuration files keep working, and the binary
    /// serves `palaver-telemetry`'s registry there.
    pub metrics_listen: Option<SocketAddr>,
    /// Price of one billable participant-minute, in US dollars (decimal string).
    pub price_per_minute_usd: String,
    /// Price of one chat message sent by a billable user, in US dollars (ACS: 0.0008).
    pub chat_price_per_message_usd: String,
    /// Price of one minute of call recording (mixed audio), in US dollars (ACS: 0.002).
    pub recording_price_per_minute_usd: String,
    /// Price of one minute of Call Automation media streaming, in US dollars (ACS: 0.003).
    pub streaming_price_per_minute_usd: String,
    /// How often open sessions are checkpointed (a crash loses at most this much).
    pub checkpoint_interval_secs: u64,
    /// Ledger database file; default `<data_dir>/usage.db`.
    pub ledger_path: Option<PathBuf>,
    /// Webhook endpoints receiving CallStarted/CallEnded/CallParticipantAdded/Removed.
    pub webhooks: Vec<String>,
    /// `topic` of the call events.
    pub event_topic: String,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            price_per_minute_usd: "0.004".into(),
            chat_price_per_message_usd: "0.0008".into(),
            recording_price_per_minute_usd: "0.002".into(),
            streaming_price_per_minute_usd: "0.003".into(),
            checkpoint_interval_secs: 15,
            ledger_path: None,
            webhooks: Vec::new(),
            event_topic: "/palaver".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UsageStartError {
    #[error("usage.price_per_minute_usd: {0}")]
    Price(#[from] PriceError),
    #[error("usage.chat_price_per_message_usd: {0}")]
    ChatPrice(PriceError),
    #[error("usage.recording_price_per_minute_usd / streaming_price_per_minute_usd: {0}")]
    MediaPrice(PriceError),
    #[error("usage.checkpoint_interval_secs must be between 1 and 3600")]
    CheckpointInterval,
    #[error("usage.webhooks: `{0}` is not an http(s) URL")]
    WebhookUrl(String),
    #[error("usage ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("webhook client: {0}")]
    WebhookClient(#[from] reqwest::Error),
}

impl UsageConfig {
    pub fn validate(&self) -> Result<Price, UsageStartError> {
        let price = Price::parse_usd(&self.price_per_minute_usd)?;
        ChatPrice::parse_usd(&self.chat_price_per_message_usd).map_err(UsageStartError::ChatPrice)?;
        self.media_prices()?;
        if !(1..=3600).contains(&self.checkpoint_interval_secs) {
            return Err(UsageStartError::CheckpointInterval);
        }
        for url in &self.webhooks {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => return Err(UsageStartError::WebhookUrl(url.clone())),
            }
        }
        Ok(price)
    }

    /// The recording and streaming prices.
    pub fn media_prices(&self) -> Result<MediaPrices, UsageStartError> {
        Ok(MediaPrices {
            recording: Price::parse_usd(&self.recording_price_per_minute_usd).map_err(UsageStartError::MediaPrice)?,
            streaming: Price::parse_usd(&self.streaming_price_per_minute_usd).map_err(UsageStartError::MediaPrice)?,
        })
    }
}

/// The ledger spool's file in the data directory (cluster mode: the writer's batches while
/// PostgreSQL refuses writes).
pub const SPOOL_FILE: &str = "ledger-spool.jsonl";

/// Opens a handle on the ledger's storage (the recorder, the export and the webhook deliverer
/// each take one). `None` in [`UsageService::start_with`] means SQLite under the data
/// directory; cluster mode passes PostgreSQL's (`palaver-cluster`).
pub type LedgerOpener = Arc<dyn Fn(LedgerOptions) -> Result<Box<dyn UsageLedger>, LedgerError> + Send + Sync>;

/// The running usage stack.
pub struct UsageService {
    recorder: UsageRecorder,
    export: Arc<UsageExport>,
    webhooks: Option<WebhookDelivery>,
    /// What crash recovery closed at startup.
    pub recovery: RecoveryReport,
}

impl UsageService {
    /// Must run inside a tokio runtime when webhooks are configured (delivery is a task).
    /// `telemetry` receives billing's counts (the process's registry in the binary).
    pub fn start(
        config: &UsageConfig,
        data_dir: &Path,
        telemetry: Arc<dyn UsageTelemetry>,
    ) -> Result<Self, UsageStartError> {
        Self::start_with(config, data_dir, None, telemetry)
    }

    /// [`start`](Self::start) on the ledger `opener` opens (SQLite when `None`).
    pub fn start_with(
        config: &UsageConfig,
        data_dir: &Path,
        opener: Option<LedgerOpener>,
        telemetry: Arc<dyn UsageTelemetry>,
    ) -> Result<Self, UsageStartError> {
        let price = config.validate()?;
        let path = config.ledger_path.clone().unwrap_or_else(|| data_dir.join("usage.db"));
        let where_ = if opener.is_some() { "postgresql".to_string() } else { path.display().to_string() };
        let options = LedgerOptions {
            price,
            webhook_endpoints: config.webhooks.clone(),
            event_topic: config.event_topic.clone(),
        };
        let spooled = opener.is_some();
        let opener: LedgerOpener = opener.unwrap_or_else(|| {
            Arc::new(move |options| Ok(Box::new(SqliteLedger::open(&path, options)?) as Box<dyn UsageLedger>))
        });
        let mut writer = opener(options.clone())?;
        if spooled {
            // A server database can go away (PostgreSQL failover, outage): the recorder's writes
            // are spooled on local disk meanwhile and replayed when it returns (ledger::spool).
            writer = Box::new(SpoolingLedger::open(writer, &data_dir.join(SPOOL_FILE))?);
        }
        let recorder_config = RecorderConfig {
            checkpoint_interval: Duration::from_secs(config.checkpoint_interval_secs),
            price,
            chat_price: ChatPrice::parse_usd(&config.chat_price_per_message_usd).map_err(UsageStartError::ChatPrice)?,
            media_prices: config.media_prices()?,
            clock: system_clock(),
        };
        let (recorder, recovery) = UsageRecorder::start(writer, recorder_config, telemetry.clone())?;
        let export = Arc::new(UsageExport::new(opener(options.clone())?, price));
        let webhooks = if config.webhooks.is_empty() {
            None
        } else {
            let outbox = opener(options)?;
            Some(spawn_webhook_delivery(outbox, WebhookConfig::default(), telemetry, system_clock())?)
        };
        tracing::info!(ledger = %where_, price_usd = %config.price_per_minute_usd, "usage ledger ready");
        Ok(Self { recorder, export, webhooks, recovery })
    }

    /// The observer to hand to the signaling gateway.
    pub fn observer(&self) -> Arc<dyn SessionObserver> {
        Arc::new(self.recorder.observer())
    }

    /// The chat usage observer to hand to the chat service (one record per message sent).
    pub fn chat_observer(&self) -> Arc<dyn ChatUsageObserver> {
        Arc::new(self.recorder.observer())
    }

    /// The export service for the usage API (`axum::Extension<Arc<UsageExport>>`).
    pub fn export(&self) -> Arc<UsageExport> {
        self.export.clone()
    }

    /// Wait until every session event sent so far is written.
    pub fn flush(&self) {
        self.recorder.flush();
    }

    /// Close sessions still open (`ServerShutdown`), write, stop the background tasks.
    /// Call after the gateway has ended its sessions. Blocks briefly (joins a thread).
    pub fn shutdown(self) {
        self.recorder.shutdown();
        if let Some(w) = self.webhooks {
            w.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::recording::RecordingTelemetry;
    use palaver_core::{CallType, EndpointType, ParticipantType, SessionStarted};

    #[test]
    fn config_is_validated() {
        assert_eq!(UsageConfig::default().validate().unwrap(), Price::default());
        let bad_price = UsageConfig { price_per_minute_usd: "-1".into(), ..UsageConfig::default() };
        assert!(matches!(bad_price.validate(), Err(UsageStartError::Price(_))));
        let bad_interval = UsageConfig { checkpoint_interval_secs: 0, ..UsageConfig::default() };
        assert!(matches!(bad_interval.validate(), Err(UsageStartError::CheckpointInterval)));
        let bad_hook = UsageConfig { webhooks: vec!["ftp://x/y".into()], ..UsageConfig::default() };
        assert!(matches!(bad_hook.validate(), Err(UsageStartError::WebhookUrl(_))));
        let parsed: UsageConfig =
            serde_json::from_str(r#"{"price_per_minute_usd":"0.01","webhooks":["https://h.example/x"]}"#).unwrap();
        assert_eq!(parsed.validate().unwrap().micro_usd_per_minute, 10_000);
        assert!(serde_json::from_str::<UsageConfig>(r#"{"unknown":1}"#).is_err());
    }

    #[test]
    fn start_meter_report_and_restart_recovers() {
        let scratch = crate::testing::ScratchDb::new("palaver-usage-service", "unused");
        let dir = scratch.dir();
        let config = UsageConfig::default();
        let telemetry = Arc::new(RecordingTelemetry::default());
        let usage = UsageService::start(&config, dir, telemetry.clone()).unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        usage.observer().session_started(SessionStarted {
            session_id: "s".into(),
            conversation_id: "c".into(),
            call_type: CallType::Group,
            participant_raw_id: "8:acs:r_u".into(),
            participant_type: ParticipantType::Acs,
            endpoint_type: EndpointType::Voip,
            thread_id: None,
            at_ms: now,
            phone: None,
        });
        usage.flush();
        let reported = telemetry.reported();
        assert_eq!(reported.open_participants.get(&ParticipantType::Acs), Some(&1), "{reported:?}");
        // no shutdown: the session stays open in the ledger, as after a crash
        drop(usage);
        let again = UsageService::start(&config, dir, telemetry.clone()).unwrap();
        assert_eq!(again.recovery.sessions_closed, 1);
        assert_eq!(telemetry.reported().recovered_sessions, 1);
        again.shutdown();
    }
}
