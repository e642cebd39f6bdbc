//! Audio mixer benches: tick cost of palaver's mixer against a naive
//! decode-all / encode-per-participant mixer (the Janus AudioBridge design) for rooms of
//! 3, 10, 50 and 350 participants with 1, 2 and 3 talkers, and the arrival → send latency
//! the jitter buffer adds. Prints a summary table with µs per tick, % of one core,
//! participants per core and the naive/palaver ratio.
//!
//! Run: `cargo bench -p palaver-benches --bench mixer` (criterion groups, then the table).
//! `MIXER_BENCH_QUICK=1` skips the criterion groups and prints only the table.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use opus::{Channels, Decoder, Encoder};
use palaver_sfu::mixer::codec::new_encoder;
use palaver_sfu::mixer::{EncoderSettings, MixOutputs, Mixer, MixerConfig, MixerInput, OutputChannels, RtpAudioIn};

mod support;

const FRAME: usize = 960;
const TICK_US: f64 = 20_000.0;
const SHAPES: [(usize, usize); 12] =
    [(3, 1), (3, 2), (3, 3), (10, 1), (10, 2), (10, 3), (50, 1), (50, 2), (50, 3), (350, 1), (350, 2), (350, 3)];

/// The mixer configuration under test: the defaults, or with `MIXER_BENCH_COMPLEXITY=<0..10>`
/// one encoder complexity for every output (palaver's shared and mix-minus encoders, and the
/// naive baseline's per-participant encoders, which always use the listener settings).
fn mixer_config() -> MixerConfig {
    let mut config = MixerConfig::default();
    if let Some(c) = std::env::var("MIXER_BENCH_COMPLEXITY").ok().and_then(|v| v.parse().ok()) {
        config.encoder.complexity = c;
        config.talker_encoder.complexity = c;
    }
    config
}

struct Traffic {
    voice: Vec<Vec<Vec<u8>>>,
    quiet: Vec<Vec<u8>>,
}

impl Traffic {
    fn new() -> Self {
        Self {
            voice: [440.0, 660.0, 880.0].iter().map(|&f| support::opus_frames::encoded_second(Some(f), true)).collect(),
            quiet: support::opus_frames::encoded_second(None, true),
        }
    }

    /// Participant `i`'s packet for `tick`: talkers (i < talkers) send voice, others background.
    fn packet(&self, i: usize, talkers: usize, tick: u64) -> (&[u8], (u8, bool)) {
        let k = tick as usize % 50;
        if i < talkers { (&self.voice[i % 3][k], (20, true)) } else { (&self.quiet[k], (90, false)) }
    }
}

/// palaver's mixer in a room of `n` with `talkers` talking; every participant sends 50 pps.
struct PalaverRoom<'t> {
    mixer: Mixer,
    inputs: Vec<MixerInput>,
    out: MixOutputs,
    t0: Instant,
    tick: u64,
    talkers: usize,
    traffic: &'t Traffic,
}

impl<'t> PalaverRoom<'t> {
    fn new(n: usize, talkers: usize, traffic: &'t Traffic) -> Self {
        let t0 = Instant::now();
        let mut mixer = Mixer::new(t0, mixer_config()).unwrap();
        let inputs = (0..n).map(|_| mixer.add_participant().unwrap()).collect();
        let mut room = Self { mixer, inputs, out: MixOutputs::new(), t0, tick: 0, talkers, traffic };
        for _ in 0..100 {
            room.period();
        }
        room
    }

    /// One 20 ms period: n packet pushes and one tick (virtual time).
    fn period(&mut self) -> usize {
        let base = self.t0 + Duration::from_millis(self.tick * 20);
        for (i, &input) in self.inputs.iter().enumerate() {
            let (payload, level) = self.traffic.packet(i, self.talkers, self.tick);
            let packet = RtpAudioIn {
                seq: self.tick as u16,
                timestamp: (self.tick as u32).wrapping_mul(FRAME as u32),
                audio_level: Some(level),
                marker: false,
                payload,
            };
            let _ = self.mixer.push(base + Duration::from_millis(1 + (i % 7) as u64), input, &packet);
        }
        self.mixer.tick(base + Duration::from_millis(12), &mut self.out);
        self.tick += 1;
        self.out.packets().len()
    }
}

/// The baseline: every participant decoded every tick, and every participant gets its own
/// encode of the mix minus itself (what a mix-per-participant server does).
struct NaiveRoom<'t> {
    decoders: Vec<Decoder>,
    encoders: Vec<Encoder>,
    pcm: Vec<Vec<i16>>,
    sum: Vec<i32>,
    out_pcm: Vec<i16>,
    out_bytes: Vec<u8>,
    tick: u64,
    talkers: usize,
    traffic: &'t Traffic,
}

impl<'t> NaiveRoom<'t> {
    fn new(n: usize, talkers: usize, traffic: &'t Traffic) -> Self {
        // the same encoder settings as palaver's mixer
        let encoders = (0..n).map(|_| new_encoder(&mixer_config().encoder, OutputChannels::Mono).unwrap()).collect();
        let mut room = Self {
            decoders: (0..n).map(|_| Decoder::new(48_000, Channels::Mono).unwrap()).collect(),
            encoders,
            pcm: vec![vec![0; FRAME]; n],
            sum: vec![0; FRAME],
            out_pcm: vec![0; FRAME],
            out_bytes: vec![0; 1500],
            tick: 0,
            talkers,
            traffic,
        };
        for _ in 0..5 {
            room.period();
        }
        room
    }

    fn period(&mut self) -> usize {
        self.sum.fill(0);
        for (i, decoder) in self.decoders.iter_mut().enumerate() {
            let (payload, _) = self.traffic.packet(i, self.talkers, self.tick);
            decoder.decode(payload, &mut self.pcm[i], false).unwrap();
            for (acc, &s) in self.sum.iter_mut().zip(&self.pcm[i]) {
                *acc += i32::from(s);
            }
        }
        let mut bytes = 0;
        for (i, encoder) in self.encoders.iter_mut().enumerate() {
            for ((o, &s), &own) in self.out_pcm.iter_mut().zip(&self.sum).zip(&self.pcm[i]) {
                *o = (s - i32::from(own)).clamp(-32_768, 32_767) as i16;
            }
            bytes += encoder.encode(&self.out_pcm, &mut self.out_bytes).unwrap();
        }
        self.tick += 1;
        bytes
    }
}

/// CPU time of the calling thread in µs (excludes time preempted by other processes, which
/// matters on a shared 2-core machine).
fn thread_cpu_us() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

/// Median thread-CPU µs of one `period()` call over `ticks` calls.
fn time_periods(mut period: impl FnMut() -> usize, ticks: usize) -> f64 {
    let mut samples: Vec<f64> = (0..ticks)
        .map(|_| {
            let start = thread_cpu_us();
            black_box(period());
            thread_cpu_us() - start
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Cost of the codec operations the mixer is built from, at the default encoder settings.
fn codec_costs(traffic: &Traffic) {
    let settings = mixer_config().encoder;
    let mut decoder = Decoder::new(48_000, Channels::Mono).unwrap();
    let mut pcm = vec![0i16; FRAME];
    let mut k = 0;
    let decode = time_periods(
        || {
            k += 1;
            decoder.decode(&traffic.voice[0][k % 50], &mut pcm, false).unwrap()
        },
        2_000,
    );
    let mut out = vec![0u8; 1500];
    let mut d = Decoder::new(48_000, Channels::Mono).unwrap();
    // what the mixer encodes: a decoded mix of speech-band content
    let pcm_frames: Vec<Vec<i16>> = traffic.voice[1]
        .iter()
        .map(|frame| {
            let mut p = vec![0i16; FRAME];
            d.decode(frame, &mut p, false).unwrap();
            p
        })
        .collect();
    for complexity in [0, 1, 3, 5, 10] {
        let mut encoder = new_encoder(&EncoderSettings { complexity, ..settings }, OutputChannels::Mono).unwrap();
        let mut j = 0;
        let encode = time_periods(
            || {
                j += 1;
                encoder.encode(&pcm_frames[j % 50], &mut out).unwrap()
            },
            2_000,
        );
        println!(
            "libopus 48 kHz mono 20 ms, {} kb/s, FEC {}: decode {decode:.1} µs, encode at complexity {complexity} {encode:.1} µs{}",
            settings.bitrate_bps / 1000,
            settings.inband_fec,
            if complexity == settings.complexity {
                " (default, shared mix)"
            } else if complexity == mixer_config().talker_encoder.complexity {
                " (default, talkers' mix-minus)"
            } else {
                ""
            }
        );
    }
}

fn criterion_groups(c: &mut Criterion, traffic: &Traffic) {
    let mut group = c.benchmark_group("mixer_tick");
    group.sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    for (n, talkers) in SHAPES {
        let mut room = PalaverRoom::new(n, talkers, traffic);
        group.bench_function(format!("palaver/n{n}/talkers{talkers}"), |b| b.iter(|| black_box(room.period())));
    }
    for (n, talkers) in [(3, 1), (10, 2), (50, 3)] {
        let mut room = NaiveRoom::new(n, talkers, traffic);
        group.bench_function(format!("naive/n{n}/talkers{talkers}"), |b| b.iter(|| black_box(room.period())));
    }
    group.finish();
}

fn summary_table(traffic: &Traffic) {
    println!("\nmixer tick cost per 20 ms (median thread CPU; every participant's packet push included)");
    println!(
        "{:>5} {:>7} | {:>10} {:>8} {:>12} | {:>10} {:>8} {:>12} | {:>7}",
        "N", "talkers", "palaver µs", "% core", "part./core", "naive µs", "% core", "part./core", "ratio"
    );
    for (n, talkers) in SHAPES {
        let mut room = PalaverRoom::new(n, talkers, traffic);
        let palaver = time_periods(|| room.period(), 1_000);
        let mut naive_room = NaiveRoom::new(n, talkers, traffic);
        let naive = time_periods(|| naive_room.period(), if n >= 350 { 15 } else { 150 });
        let per_core = |us: f64| n as f64 * TICK_US / us;
        println!(
            "{n:>5} {talkers:>7} | {palaver:>10.1} {:>7.2}% {:>12.0} | {naive:>10.1} {:>7.1}% {:>12.0} | {:>6.1}x",
            100.0 * palaver / TICK_US,
            per_core(palaver),
            100.0 * naive / TICK_US,
            per_core(naive),
            naive / palaver
        );
    }
}

/// Arrival → send latency: the jitter-buffer hold of each played packet (virtual time)
/// plus the wall-clock cost of the tick that sends the mix.
fn latency(traffic: &Traffic, jitter_ms: u64) {
    let n = 10;
    let talkers = 3;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut delays_us = Vec::new();
    // 10 rooms; in each, every client's packets reach the server at its own random but
    // constant phase to the room's tick (clean network), plus uniform 0..jitter_ms jitter
    for _room in 0..10 {
        let t0 = Instant::now();
        let mut mixer = Mixer::new(t0, mixer_config()).unwrap();
        let inputs: Vec<MixerInput> = (0..n).map(|_| mixer.add_participant().unwrap()).collect();
        let mut out = MixOutputs::new();
        let phases_us: Vec<u64> = (0..n).map(|_| next() % 20_000).collect();
        for tick in 0..600u64 {
            let tick_at = Duration::from_micros(tick * 20_000 + 20_000);
            let mut arrivals: Vec<(Duration, usize)> = (0..n)
                .map(|i| {
                    let extra = if jitter_ms > 0 { next() % (jitter_ms * 1_000) } else { 0 };
                    (Duration::from_micros(tick * 20_000 + phases_us[i] + extra), i)
                })
                .collect();
            arrivals.sort();
            for (at, i) in arrivals {
                let (payload, level) = traffic.packet(i, talkers, tick);
                let packet = RtpAudioIn {
                    seq: tick as u16,
                    timestamp: (tick as u32).wrapping_mul(FRAME as u32),
                    audio_level: Some(level),
                    marker: false,
                    payload,
                };
                let _ = mixer.push(t0 + at, inputs[i], &packet);
            }
            let start = Instant::now();
            mixer.tick(t0 + tick_at, &mut out);
            let work = start.elapsed();
            if tick >= 300 {
                for &input in &inputs[..talkers] {
                    if let Ok(Some(hold)) = mixer.last_playout_delay(input) {
                        delays_us.push((hold + work).as_micros() as u64);
                    }
                }
            }
        }
    }
    delays_us.sort_unstable();
    let p = |q: f64| delays_us[((delays_us.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    println!(
        "latency arrival→send (jitter-buffer hold + tick work), rooms of {n} with {talkers} talkers, network jitter 0..{jitter_ms} ms: p50 {:.1} ms, p99 {:.1} ms ({} frames)",
        p(0.5),
        p(0.99),
        delays_us.len()
    );
}

fn main() {
    let traffic = Traffic::new();
    if std::env::var_os("MIXER_BENCH_QUICK").is_none() {
        let mut criterion = Criterion::default().configure_from_args();
        criterion_groups(&mut criterion, &traffic);
        criterion.final_summary();
    }
    codec_costs(&traffic);
    summary_table(&traffic);
    println!();
    latency(&traffic, 0);
    latency(&traffic, 30);
}
