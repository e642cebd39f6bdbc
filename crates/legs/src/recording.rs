//! A leg's one recording in progress: mixed (the [`Recorder`] fed with the mix the leg hears)
//! or unmixed (the [`UnmixedRecorder`] fed from the conversation's per-source tap, which the
//! leg drains every tick and whose sources it names through its transport).

use std::collections::HashMap;

use palaver_sfu::router::TransportId;
use palaver_signaling::gateway::legs::RecordingFile;

use crate::leg::LegTransport;
use crate::player::FRAME;
use crate::recorder::{RecordError, Recorder};
use crate::tap_hub::TapConsumer;
use crate::unmixed::UnmixedRecorder;

/// See the module docs.
pub enum Recording {
    Mixed(Recorder),
    Unmixed { recorder: UnmixedRecorder, tap: TapConsumer, names: HashMap<TransportId, Option<String>> },
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording").field("id", &self.id()).finish_non_exhaustive()
    }
}

impl Recording {
    pub fn id(&self) -> &str {
        match self {
            Recording::Mixed(r) => r.id(),
            Recording::Unmixed { recorder, .. } => recorder.id(),
        }
    }

    pub fn is_paused(&self) -> bool {
        match self {
            Recording::Mixed(r) => r.is_paused(),
            Recording::Unmixed { recorder, .. } => recorder.is_paused(),
        }
    }

    pub fn set_paused(&mut self, paused: bool) {
        match self {
            Recording::Mixed(r) => r.set_paused(paused),
            Recording::Unmixed { recorder, .. } => recorder.set_paused(paused),
        }
    }

    /// One frame of the mix the leg hears (only a mixed recording takes it).
    pub fn push_mix(&mut self, frame: &[i16; FRAME]) -> Result<(), RecordError> {
        match self {
            Recording::Mixed(r) => r.push(frame),
            Recording::Unmixed { .. } => Ok(()),
        }
    }

    /// Takes what the per-source tap queued (an unmixed recording); `raw_id` turns a media
    /// participant name into the raw id the channel is named by.
    pub fn drain_tap(
        &mut self,
        transport: &dyn LegTransport,
        raw_id: impl Fn(&str) -> String,
    ) -> Result<(), RecordError> {
        let Recording::Unmixed { recorder, tap, names } = self else { return Ok(()) };
        while let Some(frame) = tap.pop() {
            let name = names.entry(frame.source).or_insert_with(|| transport.source_name(frame.source));
            let Some(name) = name.as_deref() else { continue };
            recorder.push(&raw_id(name), frame.tick, &frame.samples)?;
        }
        Ok(())
    }

    /// Writes the file durably (an unmixed recording takes what its tap still queued first,
    /// then leaves the tap).
    pub fn finish(
        mut self,
        transport: &dyn LegTransport,
        raw_id: impl Fn(&str) -> String,
    ) -> Result<RecordingFile, RecordError> {
        self.drain_tap(transport, raw_id)?;
        match self {
            Recording::Mixed(r) => r.finish(vec!["mixed".into()]),
            // Dropping the consumer leaves the tap (the last consumer stops it).
            Recording::Unmixed { recorder, .. } => recorder.finish(),
        }
    }
}
