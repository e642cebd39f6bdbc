//! The leg runtime: one tokio task per server-side leg, the thin I/O shell around the
//! sans-IO machines ([`Player`], [`Recognizer`], [`DtmfSender`], [`Recorder`]). It wakes when
//! the worker queues mix packets on the leg's link (decoded to 48 kHz for the recorder and the
//! voice-bot stream) and every 20 ms to send what it plays (Opus, RTP into the worker's
//! ingress) and its RFC 4733 tones, and to run the timers. [`LegHandle`] is the
//! [`ServerLeg`] the control plane holds: each method asks the task and returns its answer.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::tap_hub::TapConsumer;
use bytes::Bytes;
use palaver_sfu::control::leg::LegStreams;
use palaver_sfu::router::TransportId;
use palaver_sfu::rtp::telephone_event::write_packet;
use palaver_signaling::gateway::MediaSession;
use palaver_signaling::gateway::legs::{
    DtmfTone, LegEvent, LegEventKind, LegFuture, LegRefusal, OperationTag, PlayRequest, PlaySource, RecognizeRequest,
    RecordRequest, RecordingAction, ResultInfo, ServerLeg, StreamRequest,
};
use tokio::sync::{mpsc, oneshot};

use crate::addressed::AddressedStreams;
use crate::dtmf_sender::DtmfSender;
use crate::player::{FRAME, Play, Player};
use crate::recognizer::{Recognizer, Step};
use crate::recorder::Recorder;
use crate::recording::Recording;
use crate::streaming::{self, Outgoing, Stream};
use crate::unmixed::UnmixedRecorder;

mod media_stream;

pub use crate::transport::{LegConfig, LegTransport};

type Reply = oneshot::Sender<Result<(), LegRefusal>>;

enum Cmd {
    Play(PlayRequest, Reply),
    PlayReady(Result<Play, (OperationTag, ResultInfo, u32)>, bool),
    CancelAll(OperationTag, Reply),
    Recognize(RecognizeRequest, Reply),
    PromptReady(u64, Result<Vec<Arc<[i16]>>, (ResultInfo, u32)>),
    Continuous(String, bool, OperationTag, Reply),
    SendDtmf(String, Vec<DtmfTone>, OperationTag, Reply),
    Hold(String, bool, Option<PlaySource>, OperationTag, Reply),
    HoldMusicReady(String, Vec<Arc<[i16]>>),
    Mute(String, bool, Reply),
    StartRecording(RecordRequest, OperationTag, Reply),
    Recording(String, RecordingAction, OperationTag, Reply),
    StartStreaming(StreamRequest, Reply),
    StreamReady(Result<Stream, ResultInfo>, OperationTag),
    StopStreaming(OperationTag, Reply),
    Tone(String, u8),
    Alias(String, String),
    Detach,
}

/// The control plane's handle on a leg (see the module docs).
pub struct LegHandle {
    session: MediaSession,
    commands: mpsc::UnboundedSender<Cmd>,
    events: Mutex<Option<mpsc::UnboundedReceiver<LegEvent>>>,
}

impl std::fmt::Debug for LegHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegHandle").field("session", &self.session).finish_non_exhaustive()
    }
}

fn gone() -> LegRefusal {
    LegRefusal::new(400, 8501, "the call's media leg has ended")
}

impl LegHandle {
    /// Starts the leg's task.
    pub fn spawn(
        session: MediaSession,
        streams: LegStreams,
        transport: Arc<dyn LegTransport>,
        config: LegConfig,
    ) -> Arc<Self> {
        let (commands, rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let runtime = Runtime::new(session.clone(), streams, transport, config, events_tx, commands.downgrade());
        tokio::spawn(runtime.run(rx));
        Arc::new(Self { session, commands, events: Mutex::new(Some(events)) })
    }

    /// A DTMF tone (RFC 4733 event) a participant of the conversation sent.
    pub fn on_tone(&self, participant: &str, event: u8) {
        let _ = self.commands.send(Cmd::Tone(participant.to_owned(), event));
    }

    fn ask(&self, make: impl FnOnce(Reply) -> Cmd) -> LegFuture<()> {
        let (reply, rx) = oneshot::channel();
        let sent = self.commands.send(make(reply)).is_ok();
        Box::pin(async move {
            if !sent {
                return Err(gone());
            }
            rx.await.unwrap_or_else(|_| Err(gone()))
        })
    }
}

impl ServerLeg for LegHandle {
    fn session(&self) -> &MediaSession {
        &self.session
    }
    fn play(&self, request: PlayRequest) -> LegFuture<()> {
        self.ask(|r| Cmd::Play(request, r))
    }
    fn cancel_all(&self, tag: OperationTag) -> LegFuture<()> {
        self.ask(|r| Cmd::CancelAll(tag, r))
    }
    fn recognize(&self, request: RecognizeRequest) -> LegFuture<()> {
        self.ask(|r| Cmd::Recognize(request, r))
    }
    fn continuous_dtmf(&self, target: String, on: bool, tag: OperationTag) -> LegFuture<()> {
        self.ask(|r| Cmd::Continuous(target, on, tag, r))
    }
    fn send_dtmf(&self, target: String, tones: Vec<DtmfTone>, tag: OperationTag) -> LegFuture<()> {
        self.ask(|r| Cmd::SendDtmf(target, tones, tag, r))
    }
    fn hold(&self, target: String, on: bool, music: Option<PlaySource>, tag: OperationTag) -> LegFuture<()> {
        self.ask(|r| Cmd::Hold(target, on, music, tag, r))
    }
    fn mute(&self, target: String, muted: bool) -> LegFuture<()> {
        self.ask(|r| Cmd::Mute(target, muted, r))
    }
    fn start_recording(&self, request: RecordRequest, tag: OperationTag) -> LegFuture<()> {
        self.ask(|r| Cmd::StartRecording(request, tag, r))
    }
    fn recording(&self, recording_id: String, action: RecordingAction, tag: OperationTag) -> LegFuture<()> {
        self.ask(|r| Cmd::Recording(recording_id, action, tag, r))
    }
    fn start_streaming(&self, request: StreamRequest) -> LegFuture<()> {
        self.ask(|r| Cmd::StartStreaming(request, r))
    }
    fn stop_streaming(&self, tag: OperationTag) -> LegFuture<()> {
        self.ask(|r| Cmd::StopStreaming(tag, r))
    }
    fn alias(&self, participant_id: String, raw_id: String) {
        let _ = self.commands.send(Cmd::Alias(participant_id, raw_id));
    }
    fn detach(&self) {
        let _ = self.commands.send(Cmd::Detach);
    }
    fn take_events(&self) -> Option<mpsc::UnboundedReceiver<LegEvent>> {
        self.events.lock().ok()?.take()
    }
}

struct ActiveRecognize {
    id: u64,
    machine: Recognizer,
    tag: OperationTag,
    prompts: Option<Player>,
}

/// An unmixed stream's per-source tap and the media name of each transport it tapped.
type StreamTap = (TapConsumer, HashMap<TransportId, Option<String>>);

struct Runtime {
    session: MediaSession,
    streams: LegStreams,
    transport: Arc<dyn LegTransport>,
    config: LegConfig,
    events: mpsc::UnboundedSender<LegEvent>,
    myself: mpsc::WeakUnboundedSender<Cmd>,
    started: Instant,
    player: Player,
    /// Held participants (raw ids), each with its looping music (none: it hears silence).
    held: HashMap<String, Option<Player>>,
    /// Audio to some participants only: playTo plays, recognize prompts, music on hold.
    addressed: AddressedStreams,
    recognize: Option<ActiveRecognize>,
    next_recognize: u64,
    continuous: HashSet<String>,
    continuous_seq: u32,
    dtmf: DtmfSender,
    recorder: Option<(Recording, OperationTag)>,
    stream: Option<(Stream, OperationTag)>,
    /// An unmixed stream's per-source tap, and the media name of each tapped transport.
    stream_tap: Option<StreamTap>,
    stream_buffer: VecDeque<i16>,
    aliases: HashMap<String, String>,
    encoder: Option<opus::Encoder>,
    decoder: Option<opus::Decoder>,
    sequence: u16,
    timestamp: u32,
    tone_timestamp: u32,
    /// Whom the tones sent under [`tone_ssrc`] are registered for (a raw id).
    tone_audience: Option<String>,
    speaking: bool,
    /// Mix frames handled since the leg started (real or silence filled in).
    mix_frames: u64,
    pending: Vec<(OperationTag, LegEventKind)>,
}

impl Runtime {
    fn new(
        session: MediaSession,
        streams: LegStreams,
        transport: Arc<dyn LegTransport>,
        config: LegConfig,
        events: mpsc::UnboundedSender<LegEvent>,
        myself: mpsc::WeakUnboundedSender<Cmd>,
    ) -> Self {
        let encoder = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Audio).ok();
        let decoder = opus::Decoder::new(48_000, opus::Channels::Mono).ok();
        Self {
            session,
            streams,
            transport,
            config,
            events,
            myself,
            started: Instant::now(),
            player: Player::default(),
            held: HashMap::new(),
            addressed: AddressedStreams::new(streams.opus_payload_type, streams.audio_ssrc),
            recognize: None,
            next_recognize: 0,
            continuous: HashSet::new(),
            continuous_seq: 0,
            dtmf: DtmfSender::default(),
            recorder: None,
            stream: None,
            stream_tap: None,
            stream_buffer: VecDeque::new(),
            aliases: HashMap::new(),
            encoder,
            decoder,
            sequence: rand_u16(),
            timestamp: u32::from(rand_u16()) << 8,
            tone_timestamp: 0,
            tone_audience: None,
            speaking: false,
            mix_frames: 0,
            pending: Vec::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Cmd>) {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let link = self.transport.link().clone();
        loop {
            let egress = std::future::poll_fn(|cx| {
                link.egress_waker.register(cx.waker());
                if link.egress.is_empty() { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
            });
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Cmd::Detach) | None => break,
                    Some(command) => self.on_command(command),
                },
                _ = egress => self.drain_mix(&link),
                _ = tick.tick() => self.on_tick(),
            }
            self.flush();
        }
        self.shutdown();
        self.flush();
        self.transport.detach();
    }

    fn emit(&mut self, tag: OperationTag, kind: LegEventKind) {
        self.pending.push((tag, kind));
    }

    fn flush(&mut self) {
        for (tag, kind) in self.pending.drain(..) {
            let _ = self.events.send(LegEvent { tag, kind });
        }
    }

    fn matches(&self, target: &str, participant: &str) -> bool {
        self.raw_id(participant) == target
    }

    /// The raw id behind a media participant id: an alias, or the `{call}/{raw id}` form of
    /// call participants and legs, or the id itself.
    fn raw_id(&self, participant: &str) -> String {
        raw_id(&self.aliases, participant)
    }

    /// Holds or unholds `target` (a raw id) under every media name it answers to.
    fn set_held(&self, target: &str, held: bool) {
        for name in media_names(&self.aliases, &[target.to_owned()]) {
            self.transport.set_held(&name, held);
        }
    }

    /// A mixed recording of what the leg hears, or an unmixed one fed by the conversation's
    /// per-source tap (started here).
    fn create_recording(&self, request: &RecordRequest) -> Result<Recording, crate::recorder::RecordError> {
        let dir = &self.config.recordings_dir;
        let (id, paused) = (&request.recording_id, request.pause_on_start);
        if !request.unmixed {
            return Ok(Recording::Mixed(Recorder::create(dir, id, request.format, paused)?));
        }
        let affinity = request.channel_affinity.iter().map(|(c, p)| (usize::from(*c), p.clone())).collect();
        let recorder = UnmixedRecorder::create(dir, id, affinity, request.channel_order.clone(), paused)?;
        let tap = self.config.taps.subscribe(&self.session.conversation_id, self.transport.clone());
        Ok(Recording::Unmixed { recorder, tap, names: HashMap::new() })
    }

    fn load_all(
        &self,
        sources: Vec<PlaySource>,
    ) -> impl Future<Output = Result<Vec<Arc<[i16]>>, (ResultInfo, u32)>> + use<> {
        let loader = self.config.sources.clone();
        async move {
            let mut out = Vec::with_capacity(sources.len());
            for (index, source) in sources.iter().enumerate() {
                out.push(loader.load(source).await.map_err(|r| (r, index as u32))?);
            }
            Ok(out)
        }
    }

    fn on_command(&mut self, command: Cmd) {
        match command {
            Cmd::Play(request, reply) => {
                let _ = reply.send(Ok(()));
                let load = self.load_all(request.sources.clone());
                let myself = self.myself.clone();
                tokio::spawn(async move {
                    let ready = load.await.map(|sources| Play {
                        sources,
                        looped: request.looped,
                        play_to: request.play_to.clone(),
                        tag: request.tag.clone(),
                    });
                    let ready = ready.map_err(|(result, index)| (request.tag.clone(), result, index));
                    if let Some(myself) = myself.upgrade() {
                        let _ = myself.send(Cmd::PlayReady(ready, request.interrupt));
                    }
                });
            }
            Cmd::PlayReady(Ok(play), interrupt) => {
                let mut events = Vec::new();
                self.player.enqueue(play, interrupt, &mut events);
                self.pending.extend(events);
            }
            Cmd::PlayReady(Err((tag, result, index)), _) => {
                self.emit(tag, LegEventKind::PlayFailed { result, failed_source_index: Some(index) });
            }
            Cmd::CancelAll(_tag, reply) => {
                let mut events = Vec::new();
                self.player.cancel_all(&mut events);
                self.pending.extend(events);
                if let Some(active) = self.recognize.take() {
                    self.emit(active.tag, LegEventKind::RecognizeCanceled(ResultInfo::canceled()));
                }
                let _ = reply.send(Ok(()));
            }
            Cmd::Recognize(request, reply) => {
                if self.recognize.is_some() {
                    let _ = reply.send(Err(LegRefusal::new(400, 8500, "a recognize operation is already active")));
                    return;
                }
                let _ = reply.send(Ok(()));
                if request.interrupt_media {
                    let mut events = Vec::new();
                    self.player.cancel_all(&mut events);
                    self.pending.extend(events);
                }
                self.next_recognize += 1;
                let id = self.next_recognize;
                let prompting = !request.prompts.is_empty();
                let tag = request.tag.clone();
                if prompting {
                    let load = self.load_all(request.prompts.clone());
                    let myself = self.myself.clone();
                    tokio::spawn(async move {
                        let ready = load.await;
                        if let Some(myself) = myself.upgrade() {
                            let _ = myself.send(Cmd::PromptReady(id, ready));
                        }
                    });
                }
                let machine = Recognizer::new(request, self.now_ms(), prompting);
                self.recognize = Some(ActiveRecognize { id, machine, tag, prompts: None });
            }
            Cmd::PromptReady(id, ready) => {
                let now = self.now_ms();
                let Some(active) = self.recognize.as_mut().filter(|a| a.id == id) else { return };
                match ready {
                    Ok(sources) => {
                        let mut prompts = Player::default();
                        let play = Play { sources, looped: false, play_to: vec![], tag: OperationTag::default() };
                        prompts.enqueue(play, false, &mut Vec::new());
                        active.prompts = Some(prompts);
                    }
                    Err((result, index)) => {
                        let _ = now;
                        let active = self.recognize.take().expect("checked");
                        let result = ResultInfo::new(
                            500,
                            8511,
                            format!(
                                "Action failed, encountered failure while trying to play the prompt: {}",
                                result.message
                            ),
                        );
                        self.emit(
                            active.tag,
                            LegEventKind::RecognizeFailed { result, failed_source_index: Some(index) },
                        );
                    }
                }
            }
            Cmd::Continuous(target, on, tag, reply) => {
                let _ = reply.send(Ok(()));
                if on {
                    self.continuous.insert(target);
                } else if self.continuous.remove(&target) {
                    self.emit(tag, LegEventKind::ContinuousDtmfStopped(ResultInfo::success()));
                }
            }
            Cmd::SendDtmf(target, tones, tag, reply) => {
                let _ = reply.send(Ok(()));
                self.dtmf.send(target, tones, tag);
                self.address_tones();
            }
            Cmd::Hold(target, on, music, tag, reply) => {
                let _ = reply.send(Ok(()));
                if !on {
                    if self.held.remove(&target).is_some() {
                        self.set_held(&target, false);
                    }
                    return;
                }
                self.set_held(&target, true);
                self.held.insert(target.clone(), None);
                let Some(music) = music else { return };
                let load = self.load_all(vec![music]);
                let (events, myself) = (self.events.clone(), self.myself.clone());
                tokio::spawn(async move {
                    match load.await {
                        Ok(sources) => {
                            if let Some(myself) = myself.upgrade() {
                                let _ = myself.send(Cmd::HoldMusicReady(target, sources));
                            }
                        }
                        Err((result, _)) => {
                            let _ = events.send(LegEvent { tag, kind: LegEventKind::HoldFailed(result) });
                        }
                    }
                });
            }
            Cmd::HoldMusicReady(target, sources) => {
                // Still held (an unhold may have come first): its music loops until unhold.
                if let Some(music) = self.held.get_mut(&target) {
                    let mut player = Player::default();
                    let play = Play { sources, looped: true, play_to: vec![target], tag: OperationTag::default() };
                    player.enqueue(play, false, &mut Vec::new());
                    *music = Some(player);
                }
            }
            Cmd::Mute(target, muted, reply) => {
                for name in media_names(&self.aliases, std::slice::from_ref(&target)) {
                    self.transport.set_muted(&name, muted);
                }
                let _ = reply.send(Ok(()));
            }
            Cmd::StartRecording(request, tag, reply) => {
                if self.recorder.is_some() {
                    let _ = reply.send(Err(LegRefusal::new(400, 8500, "a recording is already active on this call")));
                    return;
                }
                match self.create_recording(&request) {
                    Ok(recorder) => {
                        let _ = reply.send(Ok(()));
                        let event = LegEventKind::RecordingStateChanged {
                            recording_id: request.recording_id.clone(),
                            active: !request.pause_on_start,
                        };
                        self.emit(tag.clone(), event);
                        self.recorder = Some((recorder, tag));
                    }
                    Err(error) => {
                        let _ =
                            reply.send(Err(LegRefusal::new(500, 9999, format!("recording could not start: {error}"))));
                    }
                }
            }
            Cmd::Recording(id, action, tag, reply) => {
                let Some((recorder, _)) = self.recorder.as_mut().filter(|(r, _)| r.id() == id) else {
                    let _ = reply.send(Err(LegRefusal::new(404, 8522, format!("recording {id} is not active"))));
                    return;
                };
                let _ = reply.send(Ok(()));
                match action {
                    RecordingAction::Pause | RecordingAction::Resume => {
                        let paused = action == RecordingAction::Pause;
                        if recorder.is_paused() != paused {
                            recorder.set_paused(paused);
                            self.emit(tag, LegEventKind::RecordingStateChanged { recording_id: id, active: !paused });
                        }
                    }
                    RecordingAction::Stop => self.stop_recording(tag),
                }
            }
            Cmd::StartStreaming(request, reply) => {
                if self.stream.is_some() {
                    let _ = reply.send(Err(LegRefusal::new(400, 8500, "media streaming is already active")));
                    return;
                }
                let _ = reply.send(Ok(()));
                let myself = self.myself.clone();
                let subscription = format!("{}-{}", self.session.conversation_id, self.session.participant_id);
                tokio::spawn(async move {
                    let ready = streaming::start(&request, &subscription).await;
                    if let Some(myself) = myself.upgrade() {
                        let _ = myself.send(Cmd::StreamReady(ready, request.tag));
                    }
                });
            }
            Cmd::StreamReady(Ok(stream), tag) => {
                self.emit(tag.clone(), LegEventKind::MediaStreamingStarted);
                if stream.unmixed {
                    // One AudioData per participant: the conversation's per-source tap (shared
                    // with an unmixed recording of the same call).
                    let tap = self.config.taps.subscribe(&self.session.conversation_id, self.transport.clone());
                    self.stream_tap = Some((tap, HashMap::new()));
                }
                self.stream = Some((stream, tag));
            }
            Cmd::StreamReady(Err(result), tag) => {
                let details = "initialWebSocketConnectionFailed";
                self.emit(tag, LegEventKind::MediaStreamingFailed { result, details });
            }
            Cmd::StopStreaming(tag, reply) => {
                if self.end_stream().is_some() {
                    self.emit(tag, LegEventKind::MediaStreamingStopped);
                    let _ = reply.send(Ok(()));
                } else {
                    let _ = reply.send(Err(LegRefusal::new(400, 8585, "media streaming is not active")));
                }
            }
            Cmd::Tone(participant, event) => self.on_tone(&participant, DtmfTone(event)),
            Cmd::Alias(participant, raw) => {
                self.aliases.insert(participant, raw);
            }
            Cmd::Detach => {}
        }
    }

    fn on_tone(&mut self, participant: &str, tone: DtmfTone) {
        if participant == self.session.participant_id {
            return; // its own tones, looped back by the engine
        }
        if let Some((stream, _)) = self.stream.as_ref().filter(|(s, _)| s.dtmf)
            && let Some(tone) = streaming::tone_char(tone.0)
        {
            let at_ms = chrono::Utc::now().timestamp_millis() as u64;
            let _ = stream.frames.try_send(Outgoing::Dtmf { at_ms, tone, participant: self.raw_id(participant) });
        }
        let now = self.now_ms();
        if self.continuous.iter().any(|t| self.matches(t, participant)) {
            self.continuous_seq += 1;
            let kind = LegEventKind::ContinuousDtmfToneReceived {
                participant: self.raw_id(participant),
                tone,
                sequence_id: self.continuous_seq,
            };
            self.emit(OperationTag::default(), kind);
        }
        let Some(target) = self.recognize.as_ref().map(|a| a.machine.request().target.clone()) else { return };
        if self.raw_id(participant) != target {
            return;
        }
        let Some(active) = self.recognize.as_mut() else { return };
        match active.machine.on_tone(now, tone) {
            Step::Continue => {}
            Step::StopPrompt => {
                if let Some(prompts) = active.prompts.as_mut() {
                    prompts.stop_silently();
                }
            }
            Step::Done(kind) => {
                let active = self.recognize.take().expect("active");
                self.emit(active.tag, kind);
            }
        }
    }

    fn stop_recording(&mut self, tag: OperationTag) {
        let Some((recorder, _)) = self.recorder.take() else { return };
        let id = recorder.id().to_owned();
        self.emit(tag.clone(), LegEventKind::RecordingStateChanged { recording_id: id.clone(), active: false });
        let aliases = &self.aliases;
        let raw_id = |name: &str| raw_id(aliases, name);
        match recorder.finish(&*self.transport, raw_id) {
            Ok(file) => self.emit(tag, LegEventKind::RecordingFileReady(file)),
            Err(error) => {
                let result = ResultInfo::new(500, 9999, format!("recording could not be written: {error}"));
                self.emit(tag, LegEventKind::RecordingFailed { recording_id: id, result });
            }
        }
    }

    fn on_tick(&mut self) {
        let now = self.now_ms();
        // Mix frames fall behind the clock when the mixer sends nothing (nobody talks): fill
        // the gap with silence so recordings and streams keep real time (3 frames of slack
        // absorb the arrival jitter against this timer).
        let due = now / 20;
        while self.mix_frames + 3 < due {
            self.on_mix_frame(&[0; FRAME]);
        }
        if let Some((recording, tag)) = self.recorder.as_mut() {
            let aliases = &self.aliases;
            if let Err(error) = recording.drain_tap(&*self.transport, |name| raw_id(aliases, name)) {
                let (id, tag) = (recording.id().to_owned(), tag.clone());
                self.recorder = None; // an unmixed recording leaves the tap
                let result = ResultInfo::new(500, 9999, format!("recording failed: {error}"));
                self.emit(tag, LegEventKind::RecordingFailed { recording_id: id, result });
            }
        }
        self.drain_stream_inbound();
        self.drain_stream_tap();
        let mut out = [0i16; FRAME];
        let mut frame = [0i16; FRAME];
        let mut audible = false;
        let mut events = Vec::new();
        if self.player.next_frame(&mut frame, &mut events) {
            if self.player.audience().is_empty() {
                add(&mut out, &frame);
                audible = true;
            } else {
                self.addressed.add(self.player.audience(), &frame);
            }
        }
        for (target, music) in self.held.iter_mut() {
            if let Some(music) = music.as_mut()
                && music.next_frame(&mut frame, &mut Vec::new())
            {
                self.addressed.add(std::slice::from_ref(target), &frame);
            }
        }
        if let Some(active) = self.recognize.as_mut() {
            if let Some(prompts) = active.prompts.as_mut() {
                if prompts.next_frame(&mut frame, &mut Vec::new()) {
                    // ACS plays a recognize prompt to the recognize target.
                    let target = std::slice::from_ref(&active.machine.request().target);
                    self.addressed.add(target, &frame);
                }
                if prompts.is_idle() {
                    active.prompts = None;
                    active.machine.prompt_done(now);
                }
            }
            if let Some(kind) = active.machine.poll(now) {
                let active = self.recognize.take().expect("active");
                events.push((active.tag, kind));
            }
        }
        if !self.stream_buffer.is_empty() {
            for (o, s) in out.iter_mut().zip(self.stream_buffer.drain(..FRAME.min(self.stream_buffer.len()))) {
                *o = o.saturating_add(s);
            }
            audible = true;
        }
        self.pending.extend(events);
        if audible {
            self.send_audio(&out);
        } else {
            self.speaking = false;
        }
        let aliases = &self.aliases;
        self.addressed.flush(&*self.transport, |targets| media_names(aliases, targets));
        let mut dtmf_events = Vec::new();
        if let Some(packet) = self.dtmf.tick(&mut dtmf_events) {
            if packet.marker {
                self.tone_timestamp = self.timestamp;
            }
            let mut buf = [0u8; 32];
            let pt = self.streams.telephone_event_payload_type;
            let (seq, ts, ssrc) = (self.next_sequence(), self.tone_timestamp, tone_ssrc(&self.streams));
            if let Ok(n) = write_packet(&mut buf, pt, packet.marker, seq, ts, ssrc, &packet.event) {
                self.transport.send(Bytes::copy_from_slice(&buf[..n]));
            }
        }
        self.pending.extend(dtmf_events);
        self.address_tones();
        self.timestamp = self.timestamp.wrapping_add(FRAME as u32);
    }

    /// Registers the target of the next tones as the only audience of [`tone_ssrc`], so the
    /// media plane relays them (RFC 4733 out to a phone) to that participant alone. Done when
    /// a request is queued and when the next one comes up, ahead of its first packet.
    fn address_tones(&mut self) {
        let Some(target) = self.dtmf.current_target() else { return };
        if self.tone_audience.as_deref() == Some(target) {
            return;
        }
        let names = media_names(&self.aliases, &[target.to_owned()]);
        self.transport.set_audience(tone_ssrc(&self.streams), Some(names));
        self.tone_audience = Some(target.to_owned());
    }

    fn next_sequence(&mut self) -> u16 {
        self.sequence = self.sequence.wrapping_add(1);
        self.sequence
    }

    fn send_audio(&mut self, pcm: &[i16; FRAME]) {
        let Some(encoder) = self.encoder.as_mut() else { return };
        let mut buf = [0u8; 1500];
        let Ok(n) = encoder.encode(pcm, &mut buf[12..]) else { return };
        let marker = !self.speaking;
        self.speaking = true;
        let seq = self.next_sequence();
        buf[0] = 0x80;
        buf[1] = (self.streams.opus_payload_type & 0x7F) | if marker { 0x80 } else { 0 };
        buf[2..4].copy_from_slice(&seq.to_be_bytes());
        buf[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        buf[8..12].copy_from_slice(&self.streams.audio_ssrc.to_be_bytes());
        self.transport.send(Bytes::copy_from_slice(&buf[..12 + n]));
    }

    /// Detach: plays and recognitions end as canceled, a recording is finished, a stream
    /// stopped.
    fn shutdown(&mut self) {
        let mut events = Vec::new();
        self.player.cancel_all(&mut events);
        self.pending.extend(events);
        if let Some(active) = self.recognize.take() {
            self.emit(active.tag, LegEventKind::RecognizeCanceled(ResultInfo::canceled()));
        }
        if let Some((_, tag)) = self.recorder.as_ref() {
            let tag = tag.clone();
            self.stop_recording(tag);
        }
        if let Some(tag) = self.end_stream() {
            self.emit(tag, LegEventKind::MediaStreamingStopped);
        }
        // What this call connection put on hold does not outlive it.
        for (target, _) in std::mem::take(&mut self.held) {
            self.set_held(&target, false);
        }
        self.addressed.end_all(&*self.transport);
    }
}

/// The raw id behind a media participant id: an alias, or the `{call}/{raw id}` form of call
/// participants and legs, or the id itself.
/// The SSRC the leg's RFC 4733 tones go out under: its own stream, addressed to the
/// `sendDtmfTones` target (never the audio SSRC, which everyone hears).
fn tone_ssrc(streams: &LegStreams) -> u32 {
    streams.audio_ssrc ^ 0x8000_0000
}

fn raw_id(aliases: &HashMap<String, String>, participant: &str) -> String {
    if let Some(raw) = aliases.get(participant) {
        return raw.clone();
    }
    participant.split_once('/').map_or(participant, |(_, raw)| raw).to_owned()
}

/// The media names `targets` (raw ids) answer to: each raw id itself (call participants and
/// legs are named `{call}/{raw id}`, which the media plane matches) and every participant id
/// aliased to it (conversation participants, named by a participant id).
fn media_names(aliases: &HashMap<String, String>, targets: &[String]) -> Vec<String> {
    let mut names = targets.to_vec();
    for (name, raw) in aliases {
        if targets.contains(raw) && !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

fn add(out: &mut [i16; FRAME], frame: &[i16; FRAME]) {
    for (o, s) in out.iter_mut().zip(frame) {
        *o = o.saturating_add(*s);
    }
}

fn rand_u16() -> u16 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(7);
    (nanos ^ (nanos >> 16)) as u16
}
