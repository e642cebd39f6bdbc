//! The server-side leg port (interface 3 of Call Automation): a participant with no network
//! peer that the media plane seats in a conversation like any other (it is heard in the mix
//! and hears the mix, `TransportKind::Direct` in the media plane). The control plane asks for
//! one with [`MediaPlane::attach_leg`](super::MediaPlane::attach_leg) and drives its media
//! operations through [`ServerLeg`]: play, cancel, recognize DTMF, continuous DTMF, send DTMF,
//! hold music, record, stream to a voice bot, detach. Every operation answers at once whether
//! it was accepted; how it ends arrives later as a [`LegEvent`] carrying the [`OperationTag`]
//! the request gave, so the caller can turn it into a callback (`operationContext`,
//! `operationCallbackUri`).
//!
//! The types are plain data in ACS terms (participant raw ids, DTMF tone names, result
//! codes of the Call Automation tables) so the signaling crate needs nothing of the media
//! crates.

use tokio::sync::mpsc;

/// What a callback of an operation needs echoed: ACS `operationContext` and the
/// operation's `operationCallbackUri` (else the call connection's callback uri is used).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperationTag {
    pub operation_context: Option<String>,
    pub operation_callback_uri: Option<String>,
}

/// An audio source of a play, a prompt or music on hold (ACS `PlaySource`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaySource {
    /// A WAV (PCM 8/16/24/48 kHz) or Ogg Opus file at an http(s) uri; `cache_id` is ACS
    /// `playSourceCacheId` (the fetched audio is kept under it).
    File { uri: String, cache_id: Option<String> },
    /// Text to speak (`voice_name`/`locale` are hints the engine may ignore).
    Text { text: String, voice_name: Option<String>, locale: Option<String>, cache_id: Option<String> },
    /// SSML to speak.
    Ssml { ssml: String, cache_id: Option<String> },
}

/// `play`: sources in order, to everyone (`play_to` empty) or to the listed participant raw
/// ids only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayRequest {
    pub sources: Vec<PlaySource>,
    pub play_to: Vec<String>,
    pub looped: bool,
    /// ACS `interruptCallMediaOperation`: cancel what plays now instead of queueing behind it.
    pub interrupt: bool,
    pub tag: OperationTag,
}

/// ACS `DtmfTone` (wire names `zero`..`nine`, `a`..`d`, `pound`, `asterisk`); the value is
/// the RFC 4733 event code (0–9 digits, 10 `*`, 11 `#`, 12–15 A–D).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DtmfTone(pub u8);

impl DtmfTone {
    const NAMES: [&'static str; 16] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "asterisk", "pound", "a", "b",
        "c", "d",
    ];

    /// The tone of an ACS wire name (case-insensitive), if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)).map(|i| Self(i as u8))
    }

    /// The ACS wire name; `None` for event codes above 15 (not DTMF).
    pub fn name(self) -> Option<&'static str> {
        Self::NAMES.get(usize::from(self.0)).copied()
    }
}

/// A `choices` entry recognized by tone (speech phrases are not recognized here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtmfChoice {
    pub label: String,
    pub tone: DtmfTone,
}

/// `recognize` with DTMF input (`dtmf`, or `choices` matched by tone), already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecognizeRequest {
    /// Whose tones count (a participant raw id).
    pub target: String,
    /// Prompts played (to the target) before and while collecting.
    pub prompts: Vec<PlaySource>,
    /// The first tone stops the prompt.
    pub interrupt_prompt: bool,
    /// ACS `interruptCallMediaOperation`.
    pub interrupt_media: bool,
    pub initial_silence_timeout_ms: u32,
    pub inter_tone_timeout_ms: u32,
    pub max_tones: u32,
    pub stop_tones: Vec<DtmfTone>,
    /// Non-empty for `choices`: the first tone picks the choice.
    pub choices: Vec<DtmfChoice>,
    pub tag: OperationTag,
}

/// `startRecording` options the leg carries out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRequest {
    /// The recording id the API gave out (names the files).
    pub recording_id: String,
    pub format: RecordingFormat,
    /// One channel per participant (in this order first, then by arrival) instead of the mix.
    pub unmixed: bool,
    pub channel_order: Vec<String>,
    /// `channelAffinity`: (channel 0–4, participant raw id) pinned (unmixed only).
    pub channel_affinity: Vec<(u8, String)>,
    pub pause_on_start: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingFormat {
    Wav,
    OggOpus,
}

/// Pause, resume or stop a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingAction {
    Pause,
    Resume,
    Stop,
}

/// A finished recording's file, durable on disk when reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingFile {
    pub recording_id: String,
    pub path: std::path::PathBuf,
    pub content_type: &'static str,
    pub duration_ms: u64,
    pub bytes: u64,
    /// Participant raw id of each channel (one entry for a mixed file).
    pub channels: Vec<String>,
}

/// `mediaStreamingOptions` (websocket transport).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    pub transport_url: String,
    pub unmixed: bool,
    /// 16000 or 24000.
    pub sample_rate: u32,
    pub bidirectional: bool,
    pub dtmf: bool,
    pub tag: OperationTag,
}

/// An ACS `resultInformation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultInfo {
    pub code: u16,
    pub sub_code: u32,
    pub message: String,
}

impl ResultInfo {
    pub fn new(code: u16, sub_code: u32, message: impl Into<String>) -> Self {
        Self { code, sub_code, message: message.into() }
    }
    /// 200/0 "Action completed successfully."
    pub fn success() -> Self {
        Self::new(200, 0, "Action completed successfully.")
    }
    /// 400/8508 "Action failed, the operation was canceled."
    pub fn canceled() -> Self {
        Self::new(400, 8508, "Action failed, the operation was canceled.")
    }
}

/// How an operation of a leg went (each maps to one ACS callback event type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEventKind {
    PlayStarted,
    PlayCompleted(ResultInfo),
    PlayFailed {
        result: ResultInfo,
        failed_source_index: Option<u32>,
    },
    PlayCanceled(ResultInfo),
    RecognizeCompleted {
        result: ResultInfo,
        tones: Vec<DtmfTone>,
        choice: Option<String>,
    },
    RecognizeFailed {
        result: ResultInfo,
        failed_source_index: Option<u32>,
    },
    RecognizeCanceled(ResultInfo),
    ContinuousDtmfToneReceived {
        participant: String,
        tone: DtmfTone,
        sequence_id: u32,
    },
    ContinuousDtmfStopped(ResultInfo),
    SendDtmfTonesCompleted(ResultInfo),
    SendDtmfTonesFailed(ResultInfo),
    HoldFailed(ResultInfo),
    RecordingStateChanged {
        recording_id: String,
        active: bool,
    },
    RecordingFileReady(RecordingFile),
    RecordingFailed {
        recording_id: String,
        result: ResultInfo,
    },
    MediaStreamingStarted,
    MediaStreamingStopped,
    /// `details` is ACS's `mediaStreamingStatusDetails` (`initialWebSocketConnectionFailed`,
    /// `streamConnectionInterrupted`, ...).
    MediaStreamingFailed {
        result: ResultInfo,
        details: &'static str,
    },
}

/// One event of a leg, with the tag of the operation that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegEvent {
    pub tag: OperationTag,
    pub kind: LegEventKind,
}

/// A leg operation that was not accepted (the API answers it synchronously).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}/{sub_code}: {message}")]
pub struct LegRefusal {
    /// HTTP status (400, 404, 412, 500...).
    pub status: u16,
    /// ACS subcode (8500 media operation already active, 8523 invalid argument, ...).
    pub sub_code: u32,
    pub message: String,
}

impl LegRefusal {
    pub fn new(status: u16, sub_code: u32, message: impl Into<String>) -> Self {
        Self { status, sub_code, message: message.into() }
    }
}

pub type LegFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, LegRefusal>> + Send>>;

/// One server-side participant's media operations (see the module docs). Methods return at
/// once with acceptance; outcomes come as [`LegEvent`]s from [`ServerLeg::take_events`].
pub trait ServerLeg: Send + Sync + 'static {
    /// The conversation and the participant id it is seated under.
    fn session(&self) -> &super::MediaSession;
    /// Plays (or queues, unless `interrupt`) the sources.
    fn play(&self, request: PlayRequest) -> LegFuture<()>;
    /// `cancelAllMediaOperations`: stops plays (PlayCanceled) and recognitions
    /// (RecognizeCanceled).
    fn cancel_all(&self, tag: OperationTag) -> LegFuture<()>;
    /// Collects tones (after the prompts); one RecognizeCompleted/Failed/Canceled.
    fn recognize(&self, request: RecognizeRequest) -> LegFuture<()>;
    /// Starts or stops reporting every tone of `target` (ContinuousDtmfToneReceived).
    fn continuous_dtmf(&self, target: String, on: bool, tag: OperationTag) -> LegFuture<()>;
    /// Sends RFC 4733 tones into the call toward `target` (SendDtmfTonesCompleted).
    fn send_dtmf(&self, target: String, tones: Vec<DtmfTone>, tag: OperationTag) -> LegFuture<()>;
    /// Holds `target` (it hears `music`, looped, and the others no longer hear it) or, with
    /// `on == false`, unholds it.
    fn hold(&self, target: String, on: bool, music: Option<PlaySource>, tag: OperationTag) -> LegFuture<()>;
    /// Call Automation mute (`muted`) or unmute of `target` (a raw id) in the conversation's
    /// mix: nobody hears it while muted.
    fn mute(&self, target: String, muted: bool) -> LegFuture<()> {
        let _ = (target, muted);
        Box::pin(async { Err(LegRefusal::new(400, 8523, "this call connection's media cannot mute participants")) })
    }
    /// Starts recording what this leg hears (RecordingStateChanged active unless paused).
    fn start_recording(&self, request: RecordRequest, tag: OperationTag) -> LegFuture<()>;
    /// Pauses, resumes or stops the recording (stop writes the file: RecordingFileReady).
    fn recording(&self, recording_id: String, action: RecordingAction, tag: OperationTag) -> LegFuture<()>;
    /// Starts streaming to a voice bot (MediaStreamingStarted).
    fn start_streaming(&self, request: StreamRequest) -> LegFuture<()>;
    /// Stops streaming (MediaStreamingStopped).
    fn stop_streaming(&self, tag: OperationTag) -> LegFuture<()>;
    /// Records a participant's raw id for a media-plane participant id (when they differ),
    /// so targets given as raw ids match.
    fn alias(&self, _participant_id: String, _raw_id: String) {}
    /// Leaves the conversation: running operations end (a recording is finished and
    /// reported), then the event stream ends.
    fn detach(&self);
    /// The event stream; `Some` once (the first caller owns it).
    fn take_events(&self) -> Option<mpsc::UnboundedReceiver<LegEvent>>;
}

#[cfg(test)]
mod tests {
    use super::DtmfTone;

    #[test]
    fn tone_names_map_to_rfc4733_event_codes() {
        assert_eq!(DtmfTone::from_name("pound"), Some(DtmfTone(11)));
        assert_eq!(DtmfTone::from_name("ASTERISK"), Some(DtmfTone(10)));
        assert_eq!(DtmfTone::from_name("d"), Some(DtmfTone(15)));
        assert_eq!(DtmfTone(9).name(), Some("nine"));
        assert_eq!(DtmfTone(16).name(), None);
        assert_eq!(DtmfTone::from_name("ten"), None);
    }
}
