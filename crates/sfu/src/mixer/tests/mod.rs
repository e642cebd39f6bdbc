//! Mixer tests with real Opus encode/decode (no mocks): a virtual-time room harness with
//! tone senders and decoding receivers, plus FFT and click analysis helpers.

mod addressed;
mod drift;
mod fec;
mod idle;
mod phone;
mod quiet;
mod rest;
mod signal;
mod transitions;

use std::time::{Duration, Instant};

use opus::{Application, Bitrate, Channels, Decoder, Encoder};
use rustfft::{FftPlanner, num_complex::Complex};

use super::{FRAME_SAMPLES, MixOutputs, Mixer, MixerConfig, MixerInput, RtpAudioIn};

pub const RATE: f32 = 48_000.0;
/// Tone amplitude of every sender (about -12 dBFS).
pub const AMPLITUDE: f32 = 8_000.0;

/// A participant's client: a tone generator and its own Opus encoder.
pub struct ToneSender {
    encoder: Encoder,
    channels: usize,
    pub frequency: f32,
    phase: f32,
    seq: u16,
    timestamp: u32,
    pcm: Vec<i16>,
    packet: Vec<u8>,
}

impl ToneSender {
    pub fn new(frequency: f32, channels: Channels) -> Self {
        let mut encoder = Encoder::new(48_000, channels, Application::Voip).unwrap();
        encoder.set_bitrate(Bitrate::Bits(32_000)).unwrap();
        encoder.set_inband_fec(true).unwrap();
        encoder.set_packet_loss_perc(5).unwrap();
        let channels = channels as usize;
        Self {
            encoder,
            channels,
            frequency,
            phase: 0.0,
            seq: (frequency as u16).wrapping_mul(7),
            timestamp: (frequency as u32).wrapping_mul(1_000_003),
            pcm: vec![0; FRAME_SAMPLES * channels],
            packet: vec![0; 1500],
        }
    }

    pub fn enable_dtx(&mut self) {
        self.encoder.set_dtx(true).unwrap();
    }

    /// Encodes the next 20 ms (tone when `on`, silence otherwise) and returns the packet
    /// fields plus an RFC 6464 level computed from the frame's RMS.
    pub fn next(&mut self, on: bool) -> (u16, u32, (u8, bool), Vec<u8>) {
        let step = std::f32::consts::TAU * self.frequency / RATE;
        let mut energy = 0.0f64;
        for frame in self.pcm.chunks_exact_mut(self.channels) {
            let value = if on { AMPLITUDE * self.phase.sin() } else { 0.0 };
            self.phase = (self.phase + step) % std::f32::consts::TAU;
            energy += f64::from(value * value);
            frame.fill(value as i16);
        }
        let rms = (energy / FRAME_SAMPLES as f64).sqrt();
        let dbov = if rms < 1.0 { 127.0 } else { (-20.0 * (rms / 32_768.0).log10()).clamp(0.0, 127.0) };
        let len = self.encoder.encode(&self.pcm, &mut self.packet).unwrap();
        let out = (self.seq, self.timestamp, (dbov as u8, on), self.packet[..len].to_vec());
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME_SAMPLES as u32);
        out
    }
}

/// A participant's receiving side: decodes whatever the mixer sends it, in order.
pub struct Receiver {
    decoder: Decoder,
    pub samples: Vec<f32>,
    last_seq: Option<u16>,
    pub packets: usize,
    pub sequence_gaps: usize,
}

impl Receiver {
    pub fn new() -> Self {
        Self {
            decoder: Decoder::new(48_000, Channels::Mono).unwrap(),
            samples: Vec::new(),
            last_seq: None,
            packets: 0,
            sequence_gaps: 0,
        }
    }

    fn receive(&mut self, seq: u16, payload: Option<&[u8]>) {
        let mut pcm = vec![0i16; FRAME_SAMPLES];
        if let Some(payload) = payload {
            if let Some(last) = self.last_seq
                && last.wrapping_add(1) != seq
            {
                self.sequence_gaps += 1;
            }
            self.last_seq = Some(seq);
            self.packets += 1;
            let n = self.decoder.decode(payload, &mut pcm, false).unwrap();
            assert_eq!(n, FRAME_SAMPLES);
        }
        // no packet this tick: the receiver plays silence (DTX behaviour)
        self.samples.extend(pcm.iter().map(|&s| f32::from(s)));
    }
}

/// A room of tone senders around one mixer, driven on virtual time.
pub struct Room {
    pub mixer: Mixer,
    pub t0: Instant,
    pub inputs: Vec<MixerInput>,
    pub senders: Vec<Option<ToneSender>>,
    pub receivers: Vec<Receiver>,
    pub out: MixOutputs,
    pub tick: u64,
    pub recorded: Vec<Vec<u8>>,
    pub speaker_updates: Vec<(u64, Vec<usize>)>,
}

impl Room {
    /// `tones[i] = Some(freq)`: participant i sends that tone; `None`: a silent listener.
    pub fn new(config: MixerConfig, tones: &[Option<f32>]) -> Self {
        let t0 = Instant::now();
        let mut mixer = Mixer::new(t0, config).unwrap();
        let inputs = tones.iter().map(|_| mixer.add_participant().unwrap()).collect();
        Self {
            mixer,
            t0,
            inputs,
            senders: tones.iter().map(|t| t.map(|f| ToneSender::new(f, Channels::Mono))).collect(),
            receivers: tones.iter().map(|_| Receiver::new()).collect(),
            out: MixOutputs::new(),
            tick: 0,
            recorded: Vec::new(),
            speaker_updates: Vec::new(),
        }
    }

    pub fn at(&self, ms: f64) -> Instant {
        self.t0 + Duration::from_micros((ms * 1000.0) as u64)
    }

    /// One 20 ms period: every sender's packet arrives (unless `lost`), then the mixer ticks
    /// and every receiver decodes what it got. `on(i, tick)` says who is talking.
    pub fn step(&mut self, on: impl Fn(usize, u64) -> bool, lost: impl Fn(usize, u64) -> bool) {
        let base = self.tick as f64 * 20.0;
        for i in 0..self.senders.len() {
            let Some(sender) = self.senders[i].as_mut() else { continue };
            let (seq, timestamp, level, payload) = sender.next(on(i, self.tick));
            if lost(i, self.tick) {
                continue;
            }
            let arrival = self.at(base + 1.0 + i as f64);
            let packet = RtpAudioIn { seq, timestamp, audio_level: Some(level), marker: false, payload: &payload };
            self.mixer.push(arrival, self.inputs[i], &packet).unwrap();
        }
        self.mixer.tick(self.at(base + 12.0), &mut self.out);
        let mut got: Vec<Option<(u16, Vec<u8>)>> = vec![None; self.inputs.len()];
        for packet in self.out.packets() {
            let index = self.inputs.iter().position(|&i| i == packet.to).unwrap();
            assert!(got[index].is_none(), "one packet per participant per tick");
            got[index] = Some((packet.sequence, self.out.payload(packet.payload).to_vec()));
        }
        for (receiver, got) in self.receivers.iter_mut().zip(got) {
            match got {
                Some((seq, payload)) => receiver.receive(seq, Some(&payload)),
                None => receiver.receive(0, None),
            }
        }
        if let Some(recording) = self.out.recording() {
            self.recorded.push(recording.to_vec());
        }
        if let Some(speakers) = self.out.active_speakers() {
            let indices = speakers.iter().map(|s| self.inputs.iter().position(|i| i == s).unwrap()).collect();
            self.speaker_updates.push((self.tick, indices));
        }
        self.tick += 1;
    }
}

/// Power (dB, arbitrary reference) of the tone at `frequency` in a Hann-windowed FFT of
/// `samples`, summed over ±4 Hz.
pub fn tone_db(samples: &[f32], frequency: f32) -> f64 {
    let spectrum = power_spectrum(samples);
    let hz_per_bin = RATE as f64 / samples.len() as f64;
    band_power(&spectrum, hz_per_bin, frequency as f64 - 4.0, frequency as f64 + 4.0).log10() * 10.0
}

/// Signal-to-noise ratio (dB): power within ±8 Hz of `tones` against everything else
/// from 50 Hz to 20 kHz.
pub fn snr_db(samples: &[f32], tones: &[f32]) -> f64 {
    let spectrum = power_spectrum(samples);
    let hz_per_bin = RATE as f64 / samples.len() as f64;
    let total = band_power(&spectrum, hz_per_bin, 50.0, 20_000.0);
    let signal: f64 = tones.iter().map(|&f| band_power(&spectrum, hz_per_bin, f as f64 - 8.0, f as f64 + 8.0)).sum();
    10.0 * (signal / (total - signal).max(1e-9)).log10()
}

/// The tone level a perfect transmission of a sender's tone would show (same analysis).
pub fn reference_tone_db(frequency: f32, len: usize) -> f64 {
    let step = std::f32::consts::TAU * frequency / RATE;
    let samples: Vec<f32> = (0..len).map(|n| AMPLITUDE * (step * n as f32).sin()).collect();
    tone_db(&samples, frequency)
}

fn power_spectrum(samples: &[f32]) -> Vec<f64> {
    let n = samples.len();
    let mut buffer: Vec<Complex<f64>> = samples
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let w = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos();
            Complex::new(f64::from(s) * w, 0.0)
        })
        .collect();
    FftPlanner::new().plan_fft_forward(n).process(&mut buffer);
    buffer[..n / 2].iter().map(|c| c.norm_sqr()).collect()
}

fn band_power(spectrum: &[f64], hz_per_bin: f64, low: f64, high: f64) -> f64 {
    let first = (low / hz_per_bin).floor().max(0.0) as usize;
    let last = ((high / hz_per_bin).ceil() as usize).min(spectrum.len() - 1);
    spectrum[first..=last].iter().sum::<f64>().max(1e-12)
}

/// Click detector: energy of the second difference (a high-pass that a click excites
/// broadband) in 2.5 ms blocks. Returns (largest block in `region`, median block overall).
pub fn click_energy(samples: &[f32], region: std::ops::Range<usize>, from: usize) -> (f64, f64) {
    const BLOCK: usize = 120;
    let hp: Vec<f64> =
        (from.max(2)..samples.len()).map(|n| f64::from(samples[n] - 2.0 * samples[n - 1] + samples[n - 2])).collect();
    let offset = from.max(2);
    let blocks: Vec<(usize, f64)> =
        hp.chunks(BLOCK).enumerate().map(|(b, c)| (offset + b * BLOCK, c.iter().map(|v| v * v).sum())).collect();
    let mut energies: Vec<f64> = blocks.iter().map(|b| b.1).collect();
    energies.sort_by(f64::total_cmp);
    let median = energies[energies.len() / 2].max(1e-9);
    let peak = blocks.iter().filter(|(start, _)| region.contains(start)).map(|b| b.1).fold(0.0, f64::max);
    (peak, median)
}

/// Largest sample-to-sample step in `region`.
pub fn max_step(samples: &[f32], region: std::ops::Range<usize>) -> f32 {
    region.filter(|&n| n > 0 && n < samples.len()).map(|n| (samples[n] - samples[n - 1]).abs()).fold(0.0, f32::max)
}

/// Deterministic pseudo-random loss pattern with probability `p`.
pub fn lossy(seed: u64, p: f64) -> impl Fn(usize, u64) -> bool {
    move |i, tick| {
        let mut x = seed ^ ((i as u64) << 40) ^ tick.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        (x as f64 / u64::MAX as f64) < p
    }
}
