//! One simulated participant over WebRTC (`palaver_client::webrtc`: WebSocket signaling, a
//! webrtc-rs peer connection): the same loop as the QUIC participant — Opus frames on the
//! wall-clock grid, the received mix into an [`AudioListener`] — plus real rid simulcast video
//! (q/h/f layers) for video publishers, which the WebRTC path negotiates.

use crate::audio::{NOISE_LEVEL, frame_at, send_time_ms};
use crate::participant::{
    AudioSend, RunShared, SeatOutcome, VIDEO_TICK, due_audio, end_seat, finish, on_mix_packet, on_video_packet,
    seat_audio, wait_for_admission,
};
use crate::setup::Ticket;
use crate::video::{SIMULCAST_LAYERS, VIDEO_CLOCK, VideoLayer};
use palaver_client::webrtc::{MediaOptions, WebRtcClient, WebRtcOptions};
use palaver_client::{ClientError, ServerMessage};
use palaver_core::protocol::ParticipantState;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub(crate) async fn drive_webrtc(
    shared: &RunShared,
    options: &WebRtcOptions,
    ticket: Ticket,
    started: Instant,
    out: &mut SeatOutcome,
) -> Result<(), ClientError> {
    let seat = ticket.seat;
    let role = shared.scenario.role(seat.slot);
    let mut client = WebRtcClient::connect(options, &ticket.token).await?;
    let joined = client.join(ticket.target.clone(), Some(format!("load {}-{}", seat.room, seat.slot))).await?;
    if joined.snapshot.state == ParticipantState::Lobby {
        wait_for_admission(&mut client).await?;
    }
    // Media is part of joining on WebRTC: ICE + DTLS must be up before audio can flow.
    // A publisher watches a camera on its own simulcast section; a viewer gets a receive-only one.
    let viewer_slots = u8::from(role.watches_video && !role.video);
    let session = client.start_media_receiving(MediaOptions { simulcast_video: role.video }, viewer_slots).await?;
    out.joined = true;
    out.join_ms = Some(started.elapsed().as_secs_f64() * 1_000.0);
    shared.live.joined.fetch_add(1, Ordering::Relaxed);

    let (mut talker, mut listener) = seat_audio(shared, seat, role)?;
    let mut audio_tx = client.audio_sender()?;
    let mut video = if session.video_ssrcs.is_some() {
        let layers: Vec<VideoLayer> =
            SIMULCAST_LAYERS.iter().map(|spec| VideoLayer::new(*spec, 3, seat.global as u16)).collect();
        Some((layers, client.video_sender()?))
    } else {
        None
    };
    let Some(mut rtp_rx) = client.take_rtp_receiver() else {
        return Err(ClientError::InvalidArgument("RTP receiver already taken".into()));
    };

    let clock = shared.clock;
    let mut next_frame = frame_at(clock.unix_ms(Instant::now())) + 1;
    let mut next_video = Instant::now();
    let mut video_tick: u64 = 0;
    let sends_audio = talker.is_some() || !shared.scenario.dtx;
    let mut noise_index = seat.global as usize;
    let stop = tokio::time::Instant::from_std(shared.stop_at);
    let mut result = Ok(());
    loop {
        let frame_due = clock.instant_at(send_time_ms(next_frame));
        let video_due = if video.is_some() { next_video } else { shared.stop_at + Duration::from_secs(3_600) };
        tokio::select! {
            _ = tokio::time::sleep_until(stop) => break,
            _ = tokio::time::sleep_until(frame_due.into()), if sends_audio => {
                let skip = |samples| audio_tx.skip(samples);
                let dtx = shared.scenario.dtx;
                let sent = match due_audio(talker.as_mut(), dtx, &mut noise_index, &clock, &mut next_frame, frame_due, out, skip) {
                    // The WebRTC sender sets the RFC 6464 voice flag on every level < 127.
                    AudioSend::Frame(p) => audio_tx.send(&p.payload, 960, Some(p.level)).await,
                    AudioSend::Noise(frame) => audio_tx.send_level(frame, 960, Some(NOISE_LEVEL)).await,
                    AudioSend::Nothing => continue,
                };
                if let Err(e) = sent {
                    result = Err(e);
                    break;
                }
            }
            _ = tokio::time::sleep_until(video_due.into()), if video.is_some() => {
                let Some((layers, tx)) = video.as_mut() else { continue };
                for (index, layer) in layers.iter_mut().enumerate() {
                    let every = u64::from((30 / layer.spec.fps.max(1)).max(1));
                    if !video_tick.is_multiple_of(every) {
                        continue;
                    }
                    let packets = layer.next_frame();
                    let payloads: Vec<&[u8]> = packets.iter().map(|p| p.payload.as_slice()).collect();
                    if tx.send_frame(index, &payloads, VIDEO_CLOCK / layer.spec.fps.max(1)).await.is_err() {
                        break;
                    }
                }
                video_tick += 1;
                next_video += VIDEO_TICK;
                if next_video + Duration::from_secs(1) < Instant::now() {
                    next_video = Instant::now();
                }
            }
            packet = rtp_rx.recv() => {
                let Some(packet) = packet else {
                    result = Err(ClientError::Read("connection closed".into()));
                    break;
                };
                if packet.payload_type != session.audio_payload_type {
                    on_video_packet(out, &packet);
                    continue;
                }
                on_mix_packet(shared, &mut listener, out, started, &packet);
            }
            event = client.next_event() => {
                if matches!(event, Some(ServerMessage::SessionEnded { .. }) | None) {
                    result = Err(ClientError::Read("session ended".into()));
                    break;
                }
            }
        }
    }
    finish(out, talker.as_ref(), &listener, video.as_ref().map(|(layers, _)| layers.as_slice()));
    end_seat(client, out, result).await
}
