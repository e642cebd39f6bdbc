//! One simulated participant over QUIC (`palaver-client`): connect, join (waiting out a lobby),
//! attach media, then until the stop time: send Opus frames on the wall-clock frame grid (if it
//! talks), send three simulcast video layers (if it publishes; a keyframe on the layer the
//! server asks for), receive one video slot (if it publishes, as over WebRTC), and feed the
//! received mix to its [`AudioListener`]. Every wait is bounded; the outcome is plain data for
//! the report.

use crate::audio::{
    AudioListener, AudioTalker, MarkerSchedule, NOISE_LEVEL, OutgoingAudio, frame_at, noise_frames, send_time_ms,
};
use crate::scenario::{Role, Scenario, Seat};
use crate::setup::Ticket;
use crate::stats::Samples;
use crate::video::{SIMULCAST_LAYERS, VIDEO_CLOCK, VideoLayer, is_vp8_keyframe_start};
use palaver_client::webrtc::WebRtcClient;
use palaver_client::{
    ClientError, ConnectOptions, MediaKind, MediaReceive, MediaTrack, QuicClient, ReceivedRtp, ServerMessage,
};
use palaver_core::protocol::{ParticipantState, quic};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest wait in a lobby before giving up.
const LOBBY_TIMEOUT: Duration = Duration::from_secs(30);
/// Frames a late sender may catch up in one go; beyond that it skips (and counts it).
const MAX_CATCH_UP_FRAMES: u64 = 5;
/// Video ticks at the fastest layer's rate (30 fps); slower layers send every k-th tick.
pub(crate) const VIDEO_TICK: Duration = Duration::from_micros(33_333);

/// Maps between `Instant` and Unix milliseconds (one anchor for the whole run).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    anchor: Instant,
    anchor_unix_ms: f64,
}

impl Clock {
    pub fn now() -> Self {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Self { anchor: Instant::now(), anchor_unix_ms: unix.as_secs_f64() * 1_000.0 }
    }

    pub fn unix_ms(&self, at: Instant) -> f64 {
        if at >= self.anchor {
            self.anchor_unix_ms + (at - self.anchor).as_secs_f64() * 1_000.0
        } else {
            self.anchor_unix_ms - (self.anchor - at).as_secs_f64() * 1_000.0
        }
    }

    pub fn instant_at(&self, unix_ms: f64) -> Instant {
        let delta = unix_ms - self.anchor_unix_ms;
        if delta >= 0.0 {
            self.anchor + Duration::from_secs_f64(delta / 1_000.0)
        } else {
            self.anchor.checked_sub(Duration::from_secs_f64(-delta / 1_000.0)).unwrap_or(self.anchor)
        }
    }
}

/// Live counters for the progress line (shared by all participants).
#[derive(Debug, Default)]
pub struct Live {
    pub joined: AtomicU64,
    pub failed: AtomicU64,
    pub left: AtomicU64,
    pub audio_packets: AtomicU64,
    pub markers_heard: AtomicU64,
}

/// What every participant shares.
pub struct RunShared {
    pub scenario: Scenario,
    pub schedule: MarkerSchedule,
    pub clock: Clock,
    /// Latency samples count from here (after the ramp).
    pub measure_from: Instant,
    pub stop_at: Instant,
    pub live: Live,
}

/// What one participant saw.
#[derive(Debug, Default)]
pub struct SeatOutcome {
    pub joined: bool,
    /// Error code (or error kind) when it could not join.
    pub failure: Option<String>,
    pub ended_early: bool,
    pub join_ms: Option<f64>,
    pub first_audio_ms: Option<f64>,
    pub latencies: Samples,
    pub lateness: Samples,
    pub audio_received: u64,
    pub audio_expected: u64,
    pub audio_lost: u64,
    pub jitter_ms: Option<f64>,
    pub unmatched_onsets: u64,
    pub decode_errors: u64,
    pub frames_sent: u64,
    pub frames_dtx: u64,
    pub frames_skipped: u64,
    pub markers_sent: u64,
    pub video_packets: u64,
    pub video_keyframes: u64,
    /// Keyframe requests (PLI/FIR) the server sent this publisher (QUIC; answered with a keyframe).
    pub video_keyframe_requests: u64,
    pub video_received: u64,
    /// Received video frames (packets with the marker bit) and keyframes (VP8 keyframe starts).
    pub video_frames_received: u64,
    pub video_keyframes_received: u64,
    pub client_rtp_dropped: u64,
}

fn failure_code(e: &ClientError) -> String {
    if let Some(code) = e.code() {
        return code.to_string();
    }
    match e {
        ClientError::Timeout(_) => "Timeout",
        ClientError::Connect(_) | ClientError::Connection(_) | ClientError::Bind(_) => "ConnectionFailed",
        ClientError::CaCertificate(_) | ClientError::Tls(_) => "Tls",
        ClientError::Closed | ClientError::Read(_) | ClientError::Write(_) => "ConnectionClosed",
        ClientError::Protocol(_) => "ProtocolViolation",
        _ => "ClientError",
    }
    .to_string()
}

/// How a participant reaches the server.
#[derive(Debug, Clone)]
pub enum SeatConnect {
    Quic(ConnectOptions),
    WebRtc(palaver_client::webrtc::WebRtcOptions),
}

/// Run one participant to the stop time. Never panics; failures are in the outcome.
pub async fn run_seat(shared: Arc<RunShared>, connect: SeatConnect, ticket: Ticket) -> SeatOutcome {
    let mut out = SeatOutcome {
        latencies: Samples::with_capacity(10_000),
        lateness: Samples::with_capacity(10_000),
        ..SeatOutcome::default()
    };
    let started = Instant::now();
    // Hard bound on the whole participant: stop time plus the time to leave.
    let hard_stop = shared.stop_at + Duration::from_secs(15);
    let driven = async {
        match &connect {
            SeatConnect::Quic(options) => drive(&shared, options, ticket, started, &mut out).await,
            SeatConnect::WebRtc(options) => {
                crate::participant_webrtc::drive_webrtc(&shared, options, ticket, started, &mut out).await
            }
        }
    };
    match tokio::time::timeout_at(hard_stop.into(), driven).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            if !out.joined {
                out.failure = Some(failure_code(&e));
            } else {
                out.ended_early = true;
            }
            tracing::debug!(error = %e, "participant ended with an error");
        }
        Err(_) => {
            if !out.joined {
                out.failure = Some("Timeout".into());
            }
        }
    }
    if out.failure.is_some() {
        shared.live.failed.fetch_add(1, Ordering::Relaxed);
    } else {
        shared.live.left.fetch_add(1, Ordering::Relaxed);
    }
    out
}

async fn drive(
    shared: &RunShared,
    connect: &ConnectOptions,
    ticket: Ticket,
    started: Instant,
    out: &mut SeatOutcome,
) -> Result<(), ClientError> {
    let seat: Seat = ticket.seat;
    let role: Role = shared.scenario.role(seat.slot);
    // Follows a cluster's redirect to the conversation's home node (docs/cluster.md).
    let display_name = Some(format!("load {}-{}", seat.room, seat.slot));
    let (mut client, joined) =
        QuicClient::connect_and_join(connect, &ticket.token, ticket.target.clone(), display_name).await?;
    if joined.snapshot.state == ParticipantState::Lobby {
        wait_for_admission(&mut client).await?;
    }
    out.joined = true;
    out.join_ms = Some(started.elapsed().as_secs_f64() * 1_000.0);
    shared.live.joined.fetch_add(1, Ordering::Relaxed);

    let audio_ssrc = rand::random::<u32>() | 1;
    // Distinct from the audio SSRC (and each other): the low bit stays 1, the high bits differ.
    let video_ssrcs: [u32; 3] = std::array::from_fn(|i| audio_ssrc ^ ((0x5a5a_0000 + i as u32) << 4));
    let mut tracks = Vec::new();
    // Without DTX every participant sends audio (listeners their background noise).
    let sends_audio = role.talker_index.is_some() || !shared.scenario.dtx;
    if sends_audio {
        tracks.push(MediaTrack::opus(audio_ssrc));
    }
    if role.video {
        for (spec, ssrc) in SIMULCAST_LAYERS.iter().zip(video_ssrcs) {
            tracks.push(MediaTrack::vp8_layer(MediaKind::Video, ssrc, spec.rid).with_size(spec.width, spec.height));
        }
    }
    // Video publishers receive one remote camera, like the WebRTC seat's sendrecv video section.
    let receive = MediaReceive { video: u8::from(role.watches_video), screen: false };
    let server_tracks = client.attach_media_receiving(tracks, receive).await?;
    let mix_ssrc = server_tracks.iter().find(|t| t.kind == MediaKind::Audio).map(|t| t.ssrc);

    let (mut talker, mut listener) = seat_audio(shared, seat, role)?;
    let mut audio_tx = client.rtp_sender(audio_ssrc, quic::DEFAULT_OPUS_PT);
    let mut video: Option<Vec<(VideoLayer, palaver_client::RtpSender)>> = role.video.then(|| {
        SIMULCAST_LAYERS
            .iter()
            .zip(video_ssrcs)
            .map(|(spec, ssrc)| {
                (VideoLayer::new(*spec, 3, seat.global as u16), client.rtp_sender(ssrc, quic::DEFAULT_VP8_PT))
            })
            .collect()
    });
    let Some(mut rtp_rx) = client.take_rtp_receiver() else {
        return Err(ClientError::InvalidArgument("RTP receiver already taken".into()));
    };
    let Some(mut keyframe_rx) = client.take_keyframe_requests() else {
        return Err(ClientError::InvalidArgument("keyframe requests already taken".into()));
    };
    let mut video_tick: u64 = 0;
    let mut noise_index = seat.global as usize;

    let clock = shared.clock;
    let mut next_frame = frame_at(clock.unix_ms(Instant::now())) + 1;
    let mut next_video = Instant::now();
    let stop = tokio::time::Instant::from_std(shared.stop_at);
    let mut result = Ok(());
    loop {
        let frame_due = clock.instant_at(send_time_ms(next_frame));
        let video_due = if video.is_some() { next_video } else { shared.stop_at + Duration::from_secs(3_600) };
        tokio::select! {
            _ = tokio::time::sleep_until(stop) => break,
            _ = tokio::time::sleep_until(frame_due.into()), if sends_audio => {
                let skip = |samples| audio_tx.packetizer().skip(samples);
                let dtx = shared.scenario.dtx;
                let sent = match due_audio(talker.as_mut(), dtx, &mut noise_index, &clock, &mut next_frame, frame_due, out, skip) {
                    AudioSend::Frame(p) => {
                        if p.marker {
                            audio_tx.packetizer().start_talk_spurt();
                        }
                        // RFC 6464 level: palaver-client sets the voice flag on every level < 127.
                        audio_tx.send(&p.payload, 960, Some(p.level))
                    }
                    AudioSend::Noise(frame) => audio_tx.send_level(frame, 960, Some(NOISE_LEVEL)),
                    AudioSend::Nothing => continue,
                };
                if let Err(e) = sent {
                    result = Err(e);
                    break;
                }
            }
            _ = tokio::time::sleep_until(video_due.into()), if video.is_some() => {
                let Some(layers) = video.as_mut() else { continue };
                for (layer, tx) in layers.iter_mut() {
                    let every = u64::from((30 / layer.spec.fps.max(1)).max(1));
                    if !video_tick.is_multiple_of(every) {
                        continue;
                    }
                    let packets = layer.next_frame();
                    let payloads: Vec<&[u8]> = packets.iter().map(|p| p.payload.as_slice()).collect();
                    if tx.send_frame(&payloads, VIDEO_CLOCK / layer.spec.fps.max(1)).is_err() {
                        break;
                    }
                }
                video_tick += 1;
                next_video += VIDEO_TICK;
                if next_video + Duration::from_secs(1) < Instant::now() {
                    next_video = Instant::now();
                }
            }
            request = keyframe_rx.recv(), if video.is_some() => {
                let Some(request) = request else { continue };
                out.video_keyframe_requests += 1;
                let asked = video.iter_mut().flatten().find(|(_, tx)| tx.ssrc() == request.media_ssrc);
                if let Some((layer, _)) = asked {
                    layer.request_keyframe();
                }
            }
            packet = rtp_rx.recv() => {
                let Some(packet) = packet else {
                    result = Err(ClientError::Read("connection closed".into()));
                    break;
                };
                if Some(packet.ssrc) != mix_ssrc && packet.payload_type != quic::DEFAULT_OPUS_PT {
                    on_video_packet(out, &packet);
                    continue;
                }
                on_mix_packet(shared, &mut listener, out, started, &packet);
            }
            event = client.next_event() => {
                match event {
                    Some(ServerMessage::SessionEnded { .. }) | None => {
                        result = Err(ClientError::Read("session ended".into()));
                        break;
                    }
                    Some(_) => {}
                }
            }
        }
    }
    let layers: Option<Vec<VideoLayer>> = video.map(|v| v.into_iter().map(|(layer, _)| layer).collect());
    finish(out, talker.as_ref(), &listener, layers.as_deref());
    end_seat(client, out, result).await
}

/// One received video packet (a slot's remote camera): packets, frames (marker) and keyframes.
pub(crate) fn on_video_packet(out: &mut SeatOutcome, packet: &ReceivedRtp) {
    out.video_received += 1;
    out.video_frames_received += u64::from(packet.marker);
    out.video_keyframes_received += u64::from(is_vp8_keyframe_start(&packet.payload));
}

/// One packet of the received mix: first-audio time, live counter, loss/jitter, marker latency.
pub(crate) fn on_mix_packet(
    shared: &RunShared,
    listener: &mut AudioListener,
    out: &mut SeatOutcome,
    started: Instant,
    packet: &palaver_client::ReceivedRtp,
) {
    if out.first_audio_ms.is_none() {
        out.first_audio_ms = Some(packet.arrival.saturating_duration_since(started).as_secs_f64() * 1_000.0);
    }
    shared.live.audio_packets.fetch_add(1, Ordering::Relaxed);
    let arrival_ms = shared.clock.unix_ms(packet.arrival);
    for hit in listener.on_packet(packet.sequence, packet.timestamp, &packet.payload, arrival_ms) {
        if packet.arrival >= shared.measure_from {
            out.latencies.push(hit.latency_ms);
            shared.live.markers_heard.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Copy the talker's, listener's and video layers' counters into the outcome.
pub(crate) fn finish(
    out: &mut SeatOutcome,
    talker: Option<&AudioTalker>,
    listener: &AudioListener,
    video: Option<&[VideoLayer]>,
) {
    if let Some(t) = talker {
        out.frames_sent = t.frames_sent;
        out.frames_dtx = t.frames_dtx;
        out.markers_sent = t.markers_sent;
    }
    for layer in video.unwrap_or_default() {
        out.video_packets += layer.packets;
        out.video_keyframes += layer.keyframes;
    }
    out.audio_received = listener.stats.received();
    out.audio_expected = listener.stats.expected();
    out.audio_lost = listener.stats.lost();
    out.jitter_ms = (listener.packets > 1).then(|| listener.stats.jitter_ms(48_000));
    out.unmatched_onsets = listener.unmatched_onsets;
    out.decode_errors = listener.decode_errors;
}

/// What the seat loop needs from either transport's client (QUIC or WebRTC).
pub(crate) trait SeatClient: Send {
    fn next_event(&mut self) -> impl Future<Output = Option<ServerMessage>> + Send;
    fn leave(&self) -> impl Future<Output = Result<(), ClientError>> + Send;
    fn close(self) -> impl Future<Output = ()> + Send;
    /// Received RTP packets the client dropped because its queue was full.
    fn rtp_dropped(&self) -> u64;
}

impl SeatClient for QuicClient {
    fn next_event(&mut self) -> impl Future<Output = Option<ServerMessage>> + Send {
        QuicClient::next_event(self)
    }
    fn leave(&self) -> impl Future<Output = Result<(), ClientError>> + Send {
        QuicClient::leave(self)
    }
    fn close(self) -> impl Future<Output = ()> + Send {
        QuicClient::close(self)
    }
    fn rtp_dropped(&self) -> u64 {
        self.stats().rtp_dropped
    }
}

impl SeatClient for WebRtcClient {
    fn next_event(&mut self) -> impl Future<Output = Option<ServerMessage>> + Send {
        WebRtcClient::next_event(self)
    }
    fn leave(&self) -> impl Future<Output = Result<(), ClientError>> + Send {
        WebRtcClient::leave(self)
    }
    fn close(self) -> impl Future<Output = ()> + Send {
        WebRtcClient::close(self)
    }
    fn rtp_dropped(&self) -> u64 {
        self.stats().rtp_dropped
    }
}

/// The seat's talker (when its role talks) and the listener of the mix it receives.
pub(crate) fn seat_audio(
    shared: &RunShared,
    seat: Seat,
    role: Role,
) -> Result<(Option<AudioTalker>, AudioListener), ClientError> {
    let talker = match role.talker_index {
        Some(t) => Some(
            AudioTalker::new(seat.room, t, u64::from(seat.global) * 7919 + 1, shared.schedule)
                .map_err(|e| ClientError::InvalidArgument(e.to_string()))?,
        ),
        None => None,
    };
    let listener = AudioListener::new(seat.room, role.talker_index, shared.schedule, role.decodes)
        .map_err(|e| ClientError::InvalidArgument(e.to_string()))?;
    Ok((talker, listener))
}

/// What a seat sends in one 20 ms audio slot.
pub(crate) enum AudioSend {
    /// The talker's encoded frame.
    Frame(OutgoingAudio),
    /// Low-level noise (no DTX: a talker's pause, or a listener), sent with [`NOISE_LEVEL`].
    Noise(&'static [u8]),
    /// Nothing (DTX pause; its time was `skip`ped).
    Nothing,
}

/// The seat's audio for frame `*next_frame` (due at `frame_due`), then advances `*next_frame`:
/// the talker's frame ([`due_audio_frame`]), or without `dtx` noise where a talker pauses and for
/// a listener (`talker` `None`). Timestamp time not covered by a sent packet goes to `skip`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn due_audio(
    talker: Option<&mut AudioTalker>,
    dtx: bool,
    noise_index: &mut usize,
    clock: &Clock,
    next_frame: &mut u64,
    frame_due: Instant,
    out: &mut SeatOutcome,
    mut skip: impl FnMut(u32),
) -> AudioSend {
    let mut skipped = 0u32;
    let frame = match talker {
        Some(t) => due_audio_frame(t, clock, next_frame, frame_due, out, |s| skipped = skipped.saturating_add(s)),
        None => {
            // A listener keeps the same frame grid (and catches up the same way).
            let behind = frame_at(clock.unix_ms(Instant::now())).saturating_sub(*next_frame);
            if behind > MAX_CATCH_UP_FRAMES {
                skipped = (behind as u32).saturating_mul(960);
                *next_frame += behind;
            }
            *next_frame += 1;
            skipped = skipped.saturating_add(960);
            None
        }
    };
    match frame {
        Some(p) => {
            if skipped > 0 {
                skip(skipped);
            }
            AudioSend::Frame(p)
        }
        None if !dtx && skipped >= 960 => {
            if skipped > 960 {
                skip(skipped - 960);
            }
            let frames = noise_frames();
            *noise_index = noise_index.wrapping_add(1);
            AudioSend::Noise(&frames[*noise_index % frames.len()])
        }
        None => {
            if skipped > 0 {
                skip(skipped);
            }
            AudioSend::Nothing
        }
    }
}

/// The talker's frame `*next_frame`, due at `frame_due`, then advances `*next_frame`. A sender
/// more than [`MAX_CATCH_UP_FRAMES`] behind first skips ahead (`skip`, counted); the lateness
/// is recorded. `None` for a DTX pause (the time is `skip`ped) or an encode failure.
pub(crate) fn due_audio_frame(
    talker: &mut AudioTalker,
    clock: &Clock,
    next_frame: &mut u64,
    frame_due: Instant,
    out: &mut SeatOutcome,
    mut skip: impl FnMut(u32),
) -> Option<OutgoingAudio> {
    let now = Instant::now();
    let behind = frame_at(clock.unix_ms(now)).saturating_sub(*next_frame);
    if behind > MAX_CATCH_UP_FRAMES {
        out.frames_skipped += behind;
        skip((behind as u32).saturating_mul(960));
        *next_frame += behind;
    }
    out.lateness.push(now.saturating_duration_since(frame_due).as_secs_f64() * 1_000.0);
    let frame = match talker.frame(*next_frame) {
        Ok(Some(p)) => Some(p),
        Ok(None) => {
            skip(960);
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "encode failed");
            None
        }
    };
    *next_frame += 1;
    frame
}

/// Ends a seat (after [`finish`]): the client's drop counter into the outcome, `leave`
/// (bounded) after a clean run, close; gives back the run's `result`.
pub(crate) async fn end_seat(
    client: impl SeatClient,
    out: &mut SeatOutcome,
    result: Result<(), ClientError>,
) -> Result<(), ClientError> {
    out.client_rtp_dropped = client.rtp_dropped();
    if result.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(5), client.leave()).await;
    }
    client.close().await;
    result
}

/// Waits (at most [`LOBBY_TIMEOUT`]) until the lobby admits the participant.
pub(crate) async fn wait_for_admission(client: &mut impl SeatClient) -> Result<(), ClientError> {
    let deadline = tokio::time::Instant::now() + LOBBY_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Err(_) => return Err(ClientError::Timeout(LOBBY_TIMEOUT)),
            Ok(None) | Ok(Some(ServerMessage::SessionEnded { .. })) => {
                return Err(ClientError::Read("session ended in the lobby".into()));
            }
            Ok(Some(ServerMessage::Snapshot { snapshot })) if snapshot.state == ParticipantState::Connected => {
                return Ok(());
            }
            Ok(Some(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_round_trips() {
        let c = Clock::now();
        let later = Instant::now() + Duration::from_millis(1_234);
        let ms = c.unix_ms(later);
        let back = c.instant_at(ms);
        assert!(back.max(later) - back.min(later) < Duration::from_micros(10));
        assert!(c.unix_ms(c.anchor) > 1.7e12, "unix ms");
    }
}
