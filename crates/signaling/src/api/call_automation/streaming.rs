//! Media streaming of call connections, the parts beside the leg's WebSocket client
//! (`palaver-legs`' `streaming.rs`): metering each stream for billing.

use crate::domain::call_automation::CallConnectionView;
use crate::gateway::legs::LegEventKind;

/// Times a call connection's media streams for billing: one [`palaver_core::MediaUsed`] per
/// stream, from `MediaStreamingStarted` to its `Stopped`/`Failed`.
#[derive(Debug, Default)]
pub(crate) struct StreamMeter {
    started_ms: Option<i64>,
    streams: u32,
}

impl StreamMeter {
    pub(crate) fn on_event(
        &mut self,
        view: &CallConnectionView,
        kind: &LegEventKind,
        now_ms: i64,
    ) -> Option<palaver_core::MediaUsed> {
        match kind {
            LegEventKind::MediaStreamingStarted => {
                self.started_ms = Some(now_ms);
                self.streams += 1;
                None
            }
            LegEventKind::MediaStreamingStopped | LegEventKind::MediaStreamingFailed { .. } => {
                let started = self.started_ms.take()?;
                Some(palaver_core::MediaUsed {
                    kind: palaver_core::MediaUsageKind::Streaming,
                    id: format!("{}/{}", view.call_connection_id, self.streams),
                    correlation_id: view.server_call_id.clone(),
                    user_raw_id: view.source_raw_id.clone(),
                    end_ms: now_ms,
                    metered_ms: (now_ms - started).max(0),
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::call_automation::CallConnectionState;
    use crate::gateway::legs::ResultInfo;

    fn view() -> CallConnectionView {
        CallConnectionView {
            call_connection_id: "cc1".into(),
            server_call_id: "call1".into(),
            correlation_id: "corr".into(),
            conversation_id: "conv".into(),
            leg_participant_id: "leg".into(),
            callback_uri: "http://127.0.0.1/cb".into(),
            state: CallConnectionState::Connected,
            source_raw_id: "8:acs:r_bot".into(),
        }
    }

    #[test]
    fn each_stream_is_metered_from_started_to_stopped_or_failed() {
        let (view, mut meter) = (view(), StreamMeter::default());
        assert_eq!(meter.on_event(&view, &LegEventKind::MediaStreamingStopped, 500), None, "never started");
        assert_eq!(meter.on_event(&view, &LegEventKind::MediaStreamingStarted, 1_000), None);
        let first = meter.on_event(&view, &LegEventKind::MediaStreamingStopped, 61_000).expect("metered");
        assert_eq!((first.id.as_str(), first.metered_ms, first.end_ms), ("cc1/1", 60_000, 61_000));
        assert_eq!((first.correlation_id.as_str(), first.user_raw_id.as_str()), ("call1", "8:acs:r_bot"));
        assert_eq!(first.kind, palaver_core::MediaUsageKind::Streaming);
        meter.on_event(&view, &LegEventKind::MediaStreamingStarted, 70_000);
        let failed = LegEventKind::MediaStreamingFailed {
            result: ResultInfo::new(500, 8581, "gone"),
            details: "streamConnectionInterrupted",
        };
        let second = meter.on_event(&view, &failed, 70_400).expect("a failed stream is metered too");
        assert_eq!((second.id.as_str(), second.metered_ms), ("cc1/2", 400));
        assert_eq!(meter.on_event(&view, &LegEventKind::MediaStreamingStopped, 80_000), None, "once");
    }
}
