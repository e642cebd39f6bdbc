//! Sans-IO audio ends of a participant. [`AudioTalker`] turns the wall-clock frame grid into Opus
//! packets (speech-like signal, DTX, marker bursts on a schedule every process can compute);
//! [`AudioListener`] takes the packets of the received mix, counts loss and jitter, decodes (if
//! it is a latency probe) and turns marker onsets into end-to-end latency samples.
//!
//! Time is passed in as Unix milliseconds. Frame `f` covers wall time `[20f, 20f+20)` ms and is
//! sent at `20(f+1)` ms, so a listener anywhere (another shard, with synchronised clocks) knows
//! when a marker was sent without being told.

use crate::signal::{FRAME_SAMPLES, FrameKind, OnsetDetector, SAMPLE_RATE, SpeechPattern, SpeechSource};
use crate::signal::{audio_level_dbov, marker_frequency};
use crate::stats::RtpReceiveStats;

/// Frame length in ms.
pub const FRAME_MS: u64 = 20;
/// Encoded packets this short are DTX frames a sender does not transmit.
const DTX_MAX_BYTES: usize = 2;
/// Silent frames still handed to the encoder at the start of a pause (it needs ~10 to go DTX).
const SILENCE_ENCODED_FRAMES: u32 = 20;
/// Opus bitrate of the generated speech.
pub const OPUS_BITRATE: i32 = 32_000;

#[derive(Debug, thiserror::Error)]
#[error("opus: {0}")]
pub struct CodecError(#[from] opus::Error);

/// Who speaks when and when markers are due; the same for every process of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkerSchedule {
    pub interval_frames: u64,
    pub turn_frames: u64,
    pub talkers: u32,
    pub turn_taking: bool,
}

impl MarkerSchedule {
    /// Whether talker `talker` of room `room` speaks during frame `frame`.
    pub fn speaking(&self, room: u32, talker: u32, frame: u64) -> bool {
        if !self.turn_taking || self.talkers <= 1 {
            return true;
        }
        (frame / self.turn_frames.max(1) + u64::from(room)) % u64::from(self.talkers) == u64::from(talker)
    }

    /// Frame offset of this talker's markers inside each interval (spread over the interval,
    /// and shifted per room so rooms don't all burst at once).
    fn phase(&self, room: u32, talker: u32) -> u64 {
        let interval = self.interval_frames.max(1);
        let spread = interval / u64::from(self.talkers.max(1));
        (u64::from(talker) * spread + u64::from(room) * 7) % interval
    }

    /// Whether a marker burst starts at `frame` for this talker.
    pub fn marker_starts(&self, room: u32, talker: u32, frame: u64) -> bool {
        frame % self.interval_frames.max(1) == self.phase(room, talker) && self.speaking(room, talker, frame)
    }

    /// The latest marker start frame `<= frame` of this talker (whether or not it spoke then).
    pub fn last_marker_at_or_before(&self, room: u32, talker: u32, frame: u64) -> Option<u64> {
        let interval = self.interval_frames.max(1);
        let phase = self.phase(room, talker);
        let base = frame - frame % interval + phase;
        if base <= frame { Some(base) } else { base.checked_sub(interval) }
    }
}

/// The frame whose 20 ms contain `unix_ms`.
pub fn frame_at(unix_ms: f64) -> u64 {
    (unix_ms.max(0.0) / FRAME_MS as f64) as u64
}

/// When frame `frame` is sent (its end), in Unix ms.
pub fn send_time_ms(frame: u64) -> f64 {
    ((frame + 1) * FRAME_MS) as f64
}

/// One packet to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingAudio {
    pub payload: Vec<u8>,
    /// RTP timestamp offset of this frame from the talker's first frame (48 kHz units).
    pub timestamp: u32,
    /// RTP marker bit: first packet of a talk spurt.
    pub marker: bool,
    /// RFC 6464: level in -dBov and voice activity.
    pub level: u8,
    pub voice: bool,
    /// This packet starts a latency marker burst.
    pub marker_burst: bool,
}

/// A talking participant's audio source and encoder.
pub struct AudioTalker {
    room: u32,
    talker: u32,
    schedule: MarkerSchedule,
    source: SpeechSource,
    encoder: opus::Encoder,
    first_frame: Option<u64>,
    last_sent: bool,
    silent_run: u32,
    pcm: [i16; FRAME_SAMPLES],
    out: Vec<u8>,
    pub markers_sent: u64,
    pub frames_sent: u64,
    pub frames_dtx: u64,
}

impl AudioTalker {
    pub fn new(room: u32, talker: u32, seed: u64, schedule: MarkerSchedule) -> Result<Self, CodecError> {
        let mut encoder = opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
        encoder.set_bitrate(opus::Bitrate::Bits(OPUS_BITRATE))?;
        encoder.set_dtx(true)?;
        encoder.set_inband_fec(true)?;
        encoder.set_packet_loss_perc(5)?;
        Ok(Self {
            room,
            talker,
            schedule,
            source: SpeechSource::new(seed, SpeechPattern::default(), marker_frequency(talker as usize)),
            encoder,
            first_frame: None,
            last_sent: false,
            silent_run: 0,
            pcm: [0; FRAME_SAMPLES],
            out: vec![0; 1_500],
            markers_sent: 0,
            frames_sent: 0,
            frames_dtx: 0,
        })
    }

    /// Produce frame `frame` (call once per frame, in order, at its send time). `None` when the
    /// encoder is in DTX (nothing to send).
    pub fn frame(&mut self, frame: u64) -> Result<Option<OutgoingAudio>, CodecError> {
        let first = *self.first_frame.get_or_insert(frame);
        let speaking = self.schedule.speaking(self.room, self.talker, frame);
        if self.schedule.marker_starts(self.room, self.talker, frame) {
            self.source.start_marker();
        }
        let kind = self.source.next_frame(speaking, &mut self.pcm);
        // Long digital silence is not even encoded (DTX would not send it anyway): this keeps
        // a tester with thousands of mostly-silent participants from spending its CPU on it.
        // The first frames of a pause are encoded so the encoder itself enters DTX.
        self.silent_run = if kind == FrameKind::Silence { self.silent_run.saturating_add(1) } else { 0 };
        if self.silent_run > SILENCE_ENCODED_FRAMES {
            self.frames_dtx += 1;
            self.last_sent = false;
            return Ok(None);
        }
        let len = self.encoder.encode(&self.pcm, &mut self.out)?;
        if len <= DTX_MAX_BYTES {
            self.frames_dtx += 1;
            self.last_sent = false;
            return Ok(None);
        }
        let marker = !self.last_sent;
        self.last_sent = true;
        self.frames_sent += 1;
        let marker_burst = kind == FrameKind::MarkerStart;
        if marker_burst {
            self.markers_sent += 1;
        }
        let level = audio_level_dbov(&self.pcm);
        Ok(Some(OutgoingAudio {
            payload: self.out[..len].to_vec(),
            timestamp: ((frame - first) as u32).wrapping_mul(FRAME_SAMPLES as u32),
            marker,
            level,
            voice: kind != FrameKind::Silence,
            marker_burst,
        }))
    }
}

/// Packet arrivals a listener remembers (an onset lies at most this many packets back).
const ARRIVALS: usize = 4;

/// A marker heard by a listener.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MarkerHit {
    pub talker: u32,
    /// Send of the marker frame → arrival of the mixed frame carrying its onset, plus the
    /// onset's position in that frame (codec lookahead included).
    pub latency_ms: f64,
}

/// The receiving end of the mix.
pub struct AudioListener {
    room: u32,
    schedule: MarkerSchedule,
    decoder: Option<opus::Decoder>,
    detectors: Vec<(u32, OnsetDetector)>,
    pcm: Vec<i16>,
    /// Arrival times (Unix ms) of the last packets, newest at `packets % ARRIVALS`: an onset
    /// confirmed in one packet may have begun in the one before.
    arrivals: [f64; ARRIVALS],
    pub stats: RtpReceiveStats,
    pub packets: u64,
    pub decode_errors: u64,
    /// Onsets that matched no marker within half an interval (counted, not used).
    pub unmatched_onsets: u64,
}

impl AudioListener {
    /// `own_talker`: this participant's own talker index (its own marker is not looked for:
    /// mix-minus must not return it). `decode`: whether to decode (latency probe).
    pub fn new(room: u32, own_talker: Option<u32>, schedule: MarkerSchedule, decode: bool) -> Result<Self, CodecError> {
        let decoder = if decode { Some(opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)?) } else { None };
        let detectors = (0..schedule.talkers)
            .filter(|t| Some(*t) != own_talker)
            .map(|t| (t, OnsetDetector::new(marker_frequency(t as usize))))
            .collect();
        Ok(Self {
            room,
            schedule,
            decoder,
            detectors,
            pcm: vec![0; 5_760],
            arrivals: [0.0; ARRIVALS],
            stats: RtpReceiveStats::default(),
            packets: 0,
            decode_errors: 0,
            unmatched_onsets: 0,
        })
    }

    /// One received RTP packet of the mix, arrived at `arrival_unix_ms`.
    pub fn on_packet(&mut self, seq: u16, timestamp: u32, payload: &[u8], arrival_unix_ms: f64) -> Vec<MarkerHit> {
        self.packets += 1;
        self.arrivals[self.packets as usize % ARRIVALS] = arrival_unix_ms;
        self.stats.record(seq, timestamp, arrival_unix_ms / 1_000.0, SAMPLE_RATE);
        let Some(decoder) = self.decoder.as_mut() else {
            return Vec::new();
        };
        let samples = match decoder.decode(payload, &mut self.pcm, false) {
            Ok(n) => n,
            Err(_) => {
                self.decode_errors += 1;
                return Vec::new();
            }
        };
        let mut hits = Vec::new();
        let max_latency = (self.schedule.interval_frames * FRAME_MS) as f64 / 2.0;
        for (talker, detector) in &mut self.detectors {
            let Some(onset) = detector.scan(&self.pcm[..samples]) else { continue };
            // The arrival of the packet the onset is in (the earliest remembered if further back).
            let back = (onset.frames_back as u64).min(self.packets - 1).min(ARRIVALS as u64 - 1);
            let arrival = self.arrivals[((self.packets - back) as usize) % ARRIVALS];
            let matched = self
                .schedule
                .last_marker_at_or_before(self.room, *talker, frame_at(arrival))
                .map(|f| arrival + onset.offset as f64 * 1_000.0 / f64::from(SAMPLE_RATE) - send_time_ms(f))
                .filter(|l| (0.0..max_latency).contains(l));
            match matched {
                Some(latency_ms) => hits.push(MarkerHit { talker: *talker, latency_ms }),
                None => self.unmatched_onsets += 1,
            }
        }
        hits
    }
}

/// What a browser without DTX sends while its user is silent: low-level background noise,
/// 50 packets/s, RFC 6464 level −70 dBov with the voice flag off.
pub const NOISE_LEVEL: (u8, bool) = (70, false);
/// Distinct noise frames, encoded once per process and sent in turn (encoding noise for every
/// listener would cost the tester an Opus encode per packet).
const NOISE_FRAMES: usize = 50;

/// The process's encoded noise frames (white noise at about −70 dBFS, Opus 32 kb/s VOIP, DTX
/// off, so every frame is a full packet as a non-DTX browser sends).
pub fn noise_frames() -> &'static [Vec<u8>] {
    static FRAMES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    FRAMES.get_or_init(|| {
        let mut encoder =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip).expect("an Opus encoder");
        let _ = encoder.set_bitrate(opus::Bitrate::Bits(OPUS_BITRATE));
        let mut state = 0x2545_f491_u32;
        let mut pcm = vec![0i16; FRAME_SAMPLES];
        let mut out = vec![0u8; 1500];
        (0..NOISE_FRAMES)
            .map(|_| {
                for sample in pcm.iter_mut() {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    *sample = ((state >> 16) as i16) >> 11; // ±16: about −70 dBFS RMS
                }
                let len = encoder.encode(&pcm, &mut out).unwrap_or(0);
                out[..len].to_vec()
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(turn_taking: bool) -> MarkerSchedule {
        MarkerSchedule { interval_frames: 100, turn_frames: 200, talkers: 3, turn_taking }
    }

    #[test]
    fn turns_rotate_and_one_talker_speaks_at_a_time() {
        let s = schedule(true);
        for frame in (0..2_000).step_by(7) {
            let speakers = (0..3).filter(|t| s.speaking(4, *t, frame)).count();
            assert_eq!(speakers, 1);
        }
        assert!((0..3).all(|t| schedule(false).speaking(0, t, 12_345)));
    }

    #[test]
    fn last_marker_lookup_matches_marker_starts() {
        let s = schedule(false);
        let starts: Vec<u64> = (1_000..1_300).filter(|f| s.marker_starts(2, 1, *f)).collect();
        assert_eq!(starts.len(), 3);
        for f in 1_000..1_300u64 {
            let expected = starts.iter().rev().find(|m| **m <= f).copied();
            if f >= starts[0] {
                assert_eq!(s.last_marker_at_or_before(2, 1, f), expected, "frame {f}");
            }
        }
        assert_eq!(s.last_marker_at_or_before(0, 0, 0), Some(0));
    }

    /// A talker's packets fed straight to a listener (a zero-delay "network" that arrives at
    /// the send time): every marker is found and its latency is just the codec's lookahead.
    #[test]
    fn talker_to_listener_markers_measure_codec_delay_only() {
        let s = MarkerSchedule { interval_frames: 50, turn_frames: 100, talkers: 2, turn_taking: false };
        let mut talker = AudioTalker::new(0, 1, 42, s).unwrap();
        let mut listener = AudioListener::new(0, Some(0), s, true).unwrap();
        let mut hits = Vec::new();
        let mut seq = 0u16;
        let start = 90_000u64;
        for frame in start..start + 1_000 {
            if let Some(p) = talker.frame(frame).unwrap() {
                hits.extend(listener.on_packet(seq, p.timestamp, &p.payload, send_time_ms(frame)));
                seq = seq.wrapping_add(1);
            }
        }
        assert_eq!(talker.markers_sent, 20);
        assert!(talker.frames_dtx > 0, "pauses must go DTX");
        assert_eq!(hits.len() as u64, talker.markers_sent, "unmatched {}", listener.unmatched_onsets);
        for h in &hits {
            assert_eq!(h.talker, 1);
            // Opus VOIP lookahead is 6.5 ms; detection is 2.5 ms block accurate.
            assert!(h.latency_ms >= 2.0 && h.latency_ms <= 12.0, "{h:?}");
        }
        assert_eq!(listener.stats.lost(), 0);
    }

    #[test]
    fn late_arrival_adds_to_latency_and_strangers_are_not_matched() {
        let s = MarkerSchedule { interval_frames: 50, turn_frames: 100, talkers: 1, turn_taking: false };
        let mut talker = AudioTalker::new(3, 0, 9, s).unwrap();
        let mut listener = AudioListener::new(3, None, s, true).unwrap();
        let mut hits = Vec::new();
        for (i, frame) in (5_000..5_200u64).enumerate() {
            if let Some(p) = talker.frame(frame).unwrap() {
                hits.extend(listener.on_packet(i as u16, p.timestamp, &p.payload, send_time_ms(frame) + 40.0));
            }
        }
        assert_eq!(hits.len(), 4);
        assert!(hits.iter().all(|h| h.latency_ms >= 42.0 && h.latency_ms <= 52.0), "{hits:?}");
        // A listener that does not decode still counts packets.
        let mut counting = AudioListener::new(3, None, s, false).unwrap();
        assert!(counting.on_packet(1, 0, &[1, 2, 3], 1.0).is_empty());
        assert_eq!(counting.packets, 1);
    }

    /// Every talker's markers through Opus, heard by a listener with every talker's detector:
    /// the codec's ring after a burst must not read as another talker's onset. (It did for
    /// talker 2's 3.6 kHz burst ending, seen by talker 1's 3.0 kHz detector 1.2 s after talker
    /// 1's marker slot: the ~1.25 s latency outliers of the load runs.)
    #[test]
    fn a_markers_codec_tail_is_not_another_talkers_onset() {
        let s = MarkerSchedule { interval_frames: 150, turn_frames: 300, talkers: 3, turn_taking: false };
        for t in 0..3u32 {
            for seed in 0..4u64 {
                let mut talker = AudioTalker::new(0, t, seed * 31 + 5, s).unwrap();
                let mut listener = AudioListener::new(0, None, s, true).unwrap();
                let mut hits = Vec::new();
                let mut seq = 0u16;
                for frame in 90_000..92_400u64 {
                    if let Some(p) = talker.frame(frame).unwrap() {
                        hits.extend(listener.on_packet(seq, p.timestamp, &p.payload, send_time_ms(frame) + 50.0));
                        seq = seq.wrapping_add(1);
                    }
                }
                assert_eq!(talker.markers_sent, 16);
                let foreign: Vec<_> = hits.iter().filter(|h| h.talker != t).collect();
                assert!(foreign.is_empty(), "talker {t} seed {seed}: {foreign:?}");
                assert_eq!(hits.len() as u64, talker.markers_sent, "talker {t} seed {seed}");
                assert_eq!(listener.unmatched_onsets, 0, "talker {t} seed {seed}");
                assert!(hits.iter().all(|h| h.latency_ms >= 50.0 && h.latency_ms <= 62.0), "{hits:?}");
            }
        }
    }

    /// Three talkers speaking at once, decoded, summed and re-encoded like the server's shared
    /// mix: every marker is still found at its own talker's frequency, none at another's.
    #[test]
    fn markers_are_heard_in_a_three_talker_mix() {
        let s = MarkerSchedule { interval_frames: 150, turn_frames: 300, talkers: 3, turn_taking: false };
        let mut talkers: Vec<_> = (0..3).map(|t| AudioTalker::new(0, t, 100 + u64::from(t), s).unwrap()).collect();
        let mut decoders: Vec<_> =
            (0..3).map(|_| opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono).unwrap()).collect();
        let mut mix_encoder = opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip).unwrap();
        mix_encoder.set_bitrate(opus::Bitrate::Bits(OPUS_BITRATE)).unwrap();
        let mut listener = AudioListener::new(0, None, s, true).unwrap();
        let (mut pcm, mut sum, mut mixed, mut payload) =
            (vec![0i16; 960], vec![0i32; 960], vec![0i16; 960], [0u8; 1500]);
        let mut hits = Vec::new();
        for (seq, frame) in (90_000..92_400u64).enumerate() {
            sum.fill(0);
            for (talker, decoder) in talkers.iter_mut().zip(&mut decoders) {
                if let Some(p) = talker.frame(frame).unwrap() {
                    decoder.decode(&p.payload, &mut pcm, false).unwrap();
                    sum.iter_mut().zip(&pcm).for_each(|(a, &x)| *a += i32::from(x));
                }
            }
            mixed.iter_mut().zip(&sum).for_each(|(m, &x)| *m = x.clamp(-32_767, 32_767) as i16);
            let len = mix_encoder.encode(&mixed, &mut payload).unwrap();
            hits.extend(listener.on_packet(seq as u16, 0, &payload[..len], send_time_ms(frame) + 30.0));
        }
        let sent: u64 = talkers.iter().map(|t| t.markers_sent).sum();
        assert_eq!(sent, 48);
        assert_eq!(hits.len() as u64, sent, "unmatched {}", listener.unmatched_onsets);
        assert_eq!(listener.unmatched_onsets, 0);
        assert!(hits.iter().all(|h| h.latency_ms >= 30.0 && h.latency_ms <= 50.0), "{hits:?}");
        for t in 0..3 {
            assert_eq!(hits.iter().filter(|h| h.talker == t).count(), 16, "talker {t}");
        }
    }

    #[test]
    fn garbage_payload_is_counted_not_fatal() {
        let s = schedule(false);
        let mut listener = AudioListener::new(0, None, s, true).unwrap();
        // 0xff TOC with a frame count byte of 0 is invalid.
        let hits = listener.on_packet(1, 0, &[0xff, 0x00], 1.0);
        assert!(hits.is_empty());
        assert_eq!(listener.decode_errors, 1);
    }
}
