//! The audio a leg's runtime takes out of the conference and streams: the mix packets the
//! worker queued (decoded, recorded, sent to a mixed stream), an unmixed stream's
//! per-participant frames from the source tap, what the app's socket sends back, and the end
//! of a stream.

use palaver_signaling::gateway::legs::{LegEventKind, OperationTag, ResultInfo};

use palaver_sfu::net::DirectLink;
use palaver_sfu::rtp::RtpHeader;

use super::{Runtime, raw_id};
use crate::player::FRAME;
use crate::streaming::{Inbound, Outgoing};

impl Runtime {
    /// The mix packets queued by the worker: decoded, recorded and streamed.
    pub(super) fn drain_mix(&mut self, link: &DirectLink) {
        let mut pcm = [0i16; FRAME];
        while let Some(packet) = link.pop_egress() {
            let Ok(header) = RtpHeader::parse(&packet) else { continue };
            if header.payload_type != self.streams.opus_payload_type {
                continue;
            }
            let payload = &packet[header.payload_offset..header.payload_offset + header.payload_len];
            let Some(decoder) = self.decoder.as_mut() else { return };
            let Ok(n) = decoder.decode(payload, &mut pcm, false) else { continue };
            if n != FRAME {
                continue;
            }
            self.on_mix_frame(&pcm);
        }
    }

    pub(super) fn on_mix_frame(&mut self, pcm: &[i16; FRAME]) {
        self.mix_frames += 1;
        if let Some((recorder, tag)) = self.recorder.as_mut()
            && let Err(error) = recorder.push_mix(pcm)
        {
            let (id, tag) = (recorder.id().to_owned(), tag.clone());
            self.recorder = None;
            let result = ResultInfo::new(500, 9999, format!("recording failed: {error}"));
            self.emit(tag, LegEventKind::RecordingFailed { recording_id: id, result });
        }
        if let Some((stream, _)) = self.stream.as_ref().filter(|(s, _)| !s.unmixed) {
            let mut samples = Vec::with_capacity(FRAME / 2);
            crate::wav::from_48k(pcm, stream.sample_rate, &mut samples);
            let at_ms = chrono::Utc::now().timestamp_millis() as u64;
            let _ = stream.frames.try_send(Outgoing::Audio { at_ms, samples, participant: None });
        }
    }

    /// An unmixed stream: each participant's 20 ms the tap queued, as its own `AudioData`
    /// (the leg's own audio is not sent back to the app).
    pub(super) fn drain_stream_tap(&mut self) {
        let (Some((stream, _)), Some((tap, names))) = (self.stream.as_ref(), self.stream_tap.as_mut()) else {
            return;
        };
        let at_ms = chrono::Utc::now().timestamp_millis() as u64;
        while let Some(frame) = tap.pop() {
            let name = names.entry(frame.source).or_insert_with(|| self.transport.source_name(frame.source));
            let Some(name) = name.as_deref().filter(|n| *n != self.session.participant_id) else { continue };
            let mut samples = Vec::with_capacity(FRAME / 2);
            crate::wav::from_48k(&frame.samples, stream.sample_rate, &mut samples);
            let participant = Some(raw_id(&self.aliases, name));
            let _ = stream.frames.try_send(Outgoing::Audio { at_ms, samples, participant });
        }
    }

    /// Ends the running stream (its socket closes when the frames sender drops; an unmixed
    /// stream's tap stops); its tag, if one ran.
    pub(super) fn end_stream(&mut self) -> Option<OperationTag> {
        let (stream, tag) = self.stream.take()?;
        drop(stream.frames);
        self.stream_buffer.clear();
        // An unmixed stream leaves the tap (the last consumer stops it).
        self.stream_tap = None;
        Some(tag)
    }

    pub(super) fn drain_stream_inbound(&mut self) {
        let Some((stream, _)) = self.stream.as_mut() else { return };
        let mut closed = None;
        while let Ok(message) = stream.inbound.try_recv() {
            match message {
                Inbound::Audio(samples) => self.stream_buffer.extend(samples),
                Inbound::StopAudio => self.stream_buffer.clear(),
                Inbound::Closed(reason) => closed = Some(reason),
            }
        }
        // At most 10 s buffered: a bot sending faster than real time is cut, not queued forever.
        let excess = self.stream_buffer.len().saturating_sub(48_000 * 10);
        self.stream_buffer.drain(..excess);
        if let Some(reason) = closed {
            let Some(tag) = self.end_stream() else { return };
            let kind = match reason {
                None => LegEventKind::MediaStreamingStopped,
                Some(reason) => LegEventKind::MediaStreamingFailed {
                    result: ResultInfo::new(500, 8581, format!("media streaming socket failed: {reason}")),
                    details: "streamConnectionInterrupted",
                },
            };
            self.emit(tag, kind);
        }
    }
}
