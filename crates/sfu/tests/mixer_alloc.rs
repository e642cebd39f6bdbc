//! Mixer steady state allocates nothing: a counting global allocator watches many ticks
//! (and packet pushes) through silence, passthrough and mixed output — for the bare mixer and
//! for the wired worker path (SRTP in → parse → mixer → RTP → SRTP out). Also measures the
//! memory one added participant costs, and a room's fixed codec pool (glibc mallinfo2,
//! which sees libopus' own mallocs as well).

use std::time::{Duration, Instant};

mod support;

use opus::{Application, Bitrate, Channels, Encoder};
use palaver_sfu::engine::{Command, Engine, MixOutputSpec, RouterId, Transmit, WorkerCounters};
use palaver_sfu::mixer::{MixOutputs, Mixer, MixerConfig, MixerInput, RtpAudioIn};
use palaver_sfu::router::{ProducerId, ProducerSpec, RouterConfig};
use palaver_sfu::srtp::Profile;

#[global_allocator]
static GLOBAL: support::counting_alloc::CountingAllocator = support::counting_alloc::CountingAllocator;

/// 20 ms Opus frames of a 440 Hz tone (on) and of silence (off), encoded up front.
fn frames(on: bool, count: usize) -> Vec<Vec<u8>> {
    let mut encoder = Encoder::new(48_000, Channels::Mono, Application::Voip).unwrap();
    encoder.set_bitrate(Bitrate::Bits(32_000)).unwrap();
    let mut phase = 0.0f32;
    (0..count)
        .map(|_| {
            let pcm: Vec<i16> = (0..960)
                .map(|_| {
                    phase += std::f32::consts::TAU * 440.0 / 48_000.0;
                    if on { (8000.0 * phase.sin()) as i16 } else { 0 }
                })
                .collect();
            encoder.encode_vec(&pcm, 1500).unwrap()
        })
        .collect()
}

/// Who talks at `tick`: cycles silence → one talker → three talkers → one talker. Among the
/// three, the third pauses 8 frames of every 16: it is released from the mix for quiet and
/// mixed again inside its hang-over (three-way mix ↔ pair passthrough).
fn talking(i: usize, tick: u64) -> bool {
    match (tick / 100) % 4 {
        0 => false,
        1 | 3 => i == 0,
        _ => i < 2 || (i == 2 && tick % 16 < 8),
    }
}

fn run(
    mixer: &mut Mixer,
    inputs: &[MixerInput],
    t0: Instant,
    ticks: std::ops::Range<u64>,
    voice: &[Vec<u8>],
    quiet: &[Vec<u8>],
    out: &mut MixOutputs,
) {
    for tick in ticks {
        let base = t0 + Duration::from_millis(tick * 20);
        for (i, &input) in inputs.iter().enumerate().take(5) {
            let on = talking(i, tick);
            let payload = if on { &voice[tick as usize % voice.len()] } else { &quiet[tick as usize % quiet.len()] };
            let packet = RtpAudioIn {
                seq: tick as u16,
                timestamp: (tick as u32).wrapping_mul(960),
                audio_level: Some(if on { (20, true) } else { (127, false) }),
                marker: false,
                payload,
            };
            mixer.push(base + Duration::from_millis(1), input, &packet).unwrap();
        }
        mixer.tick(base + Duration::from_millis(12), out);
    }
}

#[test]
fn steady_state_ticks_and_pushes_do_not_allocate_and_memory_is_measured() {
    let voice = frames(true, 50);
    let quiet = frames(false, 50);
    let t0 = Instant::now();

    // memory: the room's fixed part (codec pool) and the cost of one more participant
    let before_room = heap_in_use();
    let mut mixer = Mixer::new(t0, MixerConfig::default()).unwrap();
    let room_bytes = heap_in_use() - before_room;
    let before = heap_in_use();
    let inputs: Vec<MixerInput> = (0..100).map(|_| mixer.add_participant().unwrap()).collect();
    let per_participant = (heap_in_use() - before) / 100;
    println!(
        "room before it first mixes (no codec slot or shared encoder yet): {room_bytes} bytes; \
         per participant before its first packet: {per_participant} bytes"
    );
    assert!(per_participant < 4 * 1024, "per participant {per_participant} bytes");

    let mut out = MixOutputs::new();
    // warm-up: one full cycle through every mode grows every buffer once
    run(&mut mixer, &inputs, t0, 0..400, &voice, &quiet, &mut out);
    println!(
        "after 400 ticks through silence, passthrough and 3 talkers (5 of 100 sending): {} bytes in all",
        heap_in_use() - before_room
    );
    let stats_before = mixer.stats();
    let ((), allocated) =
        support::counting_alloc::counted(|| run(&mut mixer, &inputs, t0, 400..2_000, &voice, &quiet, &mut out));
    let stats = mixer.stats();
    assert!(stats.mix_minus_encodes > stats_before.mix_minus_encodes, "mixed mode was exercised");
    assert!(stats.passthrough_packets > stats_before.passthrough_packets, "passthrough was exercised");
    assert_eq!(allocated, 0, "1600 ticks and 8000 pushes allocated {allocated} times");
}

/// A room of 100 whose senders use DTX (nothing is sent in a pause): while nobody talks the
/// room rests (`mixer/mixer/rest.rs`) and its ticks are only counted; a talker's first packet
/// wakes it (every participant is caught up in one pass). Neither resting, waking nor the catch-up
/// allocates, and nearly every silent tick is a resting one.
#[test]
fn a_resting_room_and_its_wake_ups_do_not_allocate() {
    let voice = frames(true, 50);
    let t0 = Instant::now();
    let mut mixer = Mixer::new(t0, MixerConfig::default()).unwrap();
    let inputs: Vec<MixerInput> = (0..100).map(|_| mixer.add_participant().unwrap()).collect();
    let mut out = MixOutputs::new();
    // Participant 0 talks 1 s out of every 10 s (DTX: it sends nothing otherwise).
    let spurts = |mixer: &mut Mixer, out: &mut MixOutputs, ticks: std::ops::Range<u64>| {
        for tick in ticks {
            let base = t0 + Duration::from_millis(tick * 20);
            if tick % 500 < 50 {
                let packet = RtpAudioIn {
                    seq: tick as u16,
                    timestamp: (tick as u32).wrapping_mul(960),
                    audio_level: Some((20, true)),
                    marker: tick % 500 == 0,
                    payload: &voice[tick as usize % voice.len()],
                };
                mixer.push(base + Duration::from_millis(1), inputs[0], &packet).unwrap();
            }
            mixer.tick(base + Duration::from_millis(12), out);
        }
    };
    spurts(&mut mixer, &mut out, 0..1_000); // warm-up: two spurts and their silences
    let before = mixer.stats();
    let ((), allocated) = support::counting_alloc::counted(|| spurts(&mut mixer, &mut out, 1_000..6_000));
    let stats = mixer.stats();
    let (ticks, resting) = (stats.ticks - before.ticks, stats.resting_ticks - before.resting_ticks);
    println!("{ticks} ticks of a room of 100, {resting} of them resting; {allocated} heap allocations");
    assert!(stats.passthrough_packets > before.passthrough_packets, "the spurts were heard");
    assert_eq!(allocated, 0, "resting, waking and catching up allocated {allocated} times");
    // 10 spurts of 50 ticks plus each one's hang-over and silence run are full ticks; so are
    // the ticks where one of the 100 listeners' keep-alive is due (every 5 s each).
    assert!(resting * 10 >= ticks * 7, "{resting} of {ticks} ticks resting");
}

/// Bytes currently allocated from the C heap (Rust's System allocator and libopus both
/// allocate there).
fn heap_in_use() -> i64 {
    // SAFETY: mallinfo2 only reads allocator statistics.
    let info = unsafe { libc::mallinfo2() };
    info.uordblks as i64 + info.hblkhd as i64
}

/// Counts datagrams (and the RFC 4733 packets, payload type 101, among them) and keeps nothing.
struct CountingTransmit {
    buf: Vec<u8>,
    sent: u64,
    tones: u64,
}

impl Transmit for CountingTransmit {
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.buf
    }
    fn commit(&mut self, _len: usize, _to: std::net::SocketAddr) {
        self.sent += 1;
        self.tones += u64::from(self.buf[1] & 0x7F == 101);
    }
    fn commit_direct(&mut self, _len: usize, _to: &palaver_sfu::net::DirectLink) -> bool {
        unreachable!("only UDP transports here")
    }
}

/// Creates `room` on `core` with five SRTP peers (UDP ports `base_port + 1..=5`), each an Opus
/// producer with a mix output: the set-up the worker-path allocation tests share.
fn opus_room(
    core: &mut Engine,
    tx: &mut CountingTransmit,
    t0: Instant,
    room: RouterId,
    base_port: u32,
) -> Vec<(support::Peer, std::net::SocketAddr)> {
    let peers: Vec<(support::Peer, std::net::SocketAddr)> = (1..=5u32)
        .map(|n| {
            let addr = format!("127.0.0.1:{}", base_port + n).parse().unwrap();
            (support::Peer::new(n, Profile::Aes128CmHmacSha1_80), addr)
        })
        .collect();
    core.handle_command(t0, Command::CreateRouter { router: room }, tx).unwrap();
    for (peer, addr) in &peers {
        let n = peer.transport.0;
        let producer = ProducerSpec::opus(ProducerId(n), peer.transport, support::OPUS, 0xA000 + n, 1);
        let output = Some(MixOutputSpec { ssrc: 0x9000 + n, payload_type: support::OPUS });
        for command in [
            peer.add_transport(room, Some(*addr)),
            Command::AddProducer { router: room, spec: producer },
            Command::SetMixOutput { router: room, transport: peer.transport, output },
        ] {
            core.handle_command(t0, command, tx).unwrap();
        }
    }
    peers
}

#[test]
fn the_worker_mixing_path_does_not_allocate() {
    let voice = frames(true, 50);
    let quiet = frames(false, 50);
    let room = RouterId(5);
    let counters = std::sync::Arc::new(WorkerCounters::default());
    let mut core = Engine::new(RouterConfig::default(), 1, counters.clone());
    let mut tx = CountingTransmit { buf: vec![0; 2048], sent: 0, tones: 0 };
    let t0 = Instant::now();
    let mut peers = opus_room(&mut core, &mut tx, t0, room, 42000);
    let mut plain = [0u8; 1500];
    let mut wire = [0u8; 1600];
    let mut step = |tick: u64, core: &mut Engine, tx: &mut CountingTransmit| {
        let base = t0 + Duration::from_millis(tick * 20);
        for (i, (peer, addr)) in peers.iter_mut().enumerate() {
            let on = talking(i, tick);
            let payload = if on { &voice[tick as usize % voice.len()] } else { &quiet[tick as usize % quiet.len()] };
            let n = peer.transport.0;
            plain[..12].copy_from_slice(&[0x90, support::OPUS, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            plain[2..4].copy_from_slice(&(tick as u16).to_be_bytes());
            plain[4..8].copy_from_slice(&(tick as u32).wrapping_mul(960).to_be_bytes());
            plain[8..12].copy_from_slice(&(0xA000 + n).to_be_bytes());
            let level = if on { 0x80 | 20 } else { 127 };
            plain[12..20].copy_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, level, 0, 0]);
            plain[20..20 + payload.len()].copy_from_slice(payload);
            let len = peer.protect(&plain[..20 + payload.len()], &mut wire);
            core.handle_datagram(base + Duration::from_millis(1), *addr, &mut wire[..len], tx);
        }
        for quarter in 0..4 {
            core.handle_timeout(base + Duration::from_millis(2 + quarter * 5), tx);
        }
    };
    // warm-up: one full cycle through every mode, report timers, maps at size
    for tick in 0..400 {
        step(tick, &mut core, &mut tx);
    }
    let sent_before = tx.sent;
    let out_before = counters.snapshot().packets_out;
    let ((), allocated) = support::counting_alloc::counted(|| {
        for tick in 400..2_000 {
            step(tick, &mut core, &mut tx);
        }
    });
    let snapshot = counters.snapshot();
    let mixed = snapshot.packets_out - out_before;
    println!("worker mixing path: {mixed} packets sent in 1600 ticks, {allocated} heap allocations");
    assert!(tx.sent - sent_before >= 1_600, "{} datagrams", tx.sent - sent_before);
    assert!(mixed >= 1_600, "mix packets went out: {snapshot:?}");
    assert_eq!(snapshot.dropped_total(), 0, "{snapshot:?}");
    assert!(core.poll_event().is_some(), "speaker events from the mixer");
    assert_eq!(allocated, 0, "the wired mixing path allocated {allocated} times");
}

/// Phone legs' RTP paths: 2 PCMU peers (plain RTP/AVP, SSRC learned, G.711 decoded and the
/// mix encoded once per codec), a G.722 peer over SDES-SRTP (its own decoder, the shared
/// G.722 encoder, its own mix-minus encoder) and 3 Opus SRTP peers in one room, through
/// silence, one and three talkers, while the first Opus peer keys RFC 4733 digits that are
/// relayed in the first PCMU phone's mix stream: no allocation per packet or per tick.
#[test]
fn the_plain_rtp_g711_path_does_not_allocate() {
    use audio_codec::Encoder as _;
    use palaver_sfu::engine::MixAudio;
    use palaver_sfu::mixer::g711::{G711_FRAME_BYTES, Law};
    use palaver_sfu::mixer::g722::{G722_FRAME_BYTES, G722_FRAME_SAMPLES};
    use palaver_sfu::router::LayerSpec;
    use palaver_sfu::rtp::telephone_event::{tone_packets, write_packet};
    use palaver_sfu::rtp::{Codec, ExtensionMap};

    let voice = frames(true, 50);
    let quiet = frames(false, 50);
    let room = RouterId(6);
    let counters = std::sync::Arc::new(WorkerCounters::default());
    let mut core = Engine::new(RouterConfig::default(), 1, counters.clone());
    let mut tx = CountingTransmit { buf: vec![0; 2048], sent: 0, tones: 0 };
    let t0 = Instant::now();
    core.handle_command(t0, Command::CreateRouter { router: room }, &mut tx).unwrap();
    let phones: Vec<(palaver_sfu::router::TransportId, std::net::SocketAddr)> = (0..2u32)
        .map(|n| (palaver_sfu::router::TransportId(100 + n), format!("127.0.0.1:{}", 43000 + 2 * n).parse().unwrap()))
        .collect();
    for (i, (id, addr)) in phones.iter().enumerate() {
        let producer = ProducerSpec {
            id: ProducerId(100 + i as u32),
            transport: *id,
            kind: palaver_core::MediaKind::Audio,
            mid: None,
            codecs: vec![(0, Codec::Pcmu)],
            layers: vec![LayerSpec { rid: None, ssrc: None, rtx_ssrc: None, width: 0, height: 0, max_bitrate_bps: 0 }],
            extensions: ExtensionMap::default(),
        };
        let output = Some(MixOutputSpec { ssrc: 0x7000 + i as u32, payload_type: 0 });
        for command in [
            Command::AddRtpTransport { id: *id, router: room, remote: *addr },
            Command::AddProducer { router: room, spec: producer },
            Command::SetMixOutput { router: room, transport: *id, output },
        ] {
            core.handle_command(t0, command, &mut tx).unwrap();
        }
    }
    let mut peers: Vec<(support::Peer, std::net::SocketAddr)> = (1..=3u32)
        .map(|n| {
            (support::Peer::new(n, Profile::Aes128CmHmacSha1_80), format!("127.0.0.1:{}", 42000 + n).parse().unwrap())
        })
        .collect();
    for (peer, addr) in &peers {
        let n = peer.transport.0;
        let producer = ProducerSpec::opus(ProducerId(n), peer.transport, support::OPUS, 0xA000 + n, 1);
        let output = Some(MixOutputSpec { ssrc: 0x9000 + n, payload_type: support::OPUS });
        for command in [
            peer.add_transport(room, Some(*addr)),
            Command::AddProducer { router: room, spec: producer },
            Command::SetMixOutput { router: room, transport: peer.transport, output },
        ] {
            core.handle_command(t0, command, &mut tx).unwrap();
        }
    }
    // DTMF out: the first Opus peer's telephone-events go to the first PCMU phone.
    for command in [
        Command::SetTelephoneEvent { transport: peers[0].0.transport, payload_type: Some(101) },
        Command::SetMixAudio {
            router: room,
            audio: MixAudio::TelephoneEventsOut { transport: phones[0].0, payload_type: Some(101), clock_rate: 8000 },
        },
    ] {
        core.handle_command(t0, command, &mut tx).unwrap();
    }
    // A third PCMU phone waits for its callee: held, it hears the US ringback as early media.
    let waiting = palaver_sfu::router::TransportId(102);
    let ringback = palaver_sfu::engine::early_media::ToneLoop::ringback(palaver_sfu::engine::early_media::Ringback::Us);
    for command in [
        Command::AddRtpTransport { id: waiting, router: room, remote: "127.0.0.1:43010".parse().unwrap() },
        Command::SetMixOutput {
            router: room,
            transport: waiting,
            output: Some(MixOutputSpec { ssrc: 0x7010, payload_type: 0 }),
        },
        Command::SetMixAudio { router: room, audio: MixAudio::Held { transport: waiting, held: true } },
        Command::SetMixAudio {
            router: room,
            audio: MixAudio::EarlyMedia { transport: waiting, tone: Some(std::sync::Arc::new(ringback.unwrap())) },
        },
    ] {
        core.handle_command(t0, command, &mut tx).unwrap();
    }
    // A fourth phone (PCMA) waits in a call queue: held, it hears the queue's hold audio, a
    // file-made loop (0.2 s of 600 Hz, encoded for music) that wraps every 10 ticks. (Kept
    // short: the heap measurement of the test beside this one sees every thread's allocations.)
    let queued = palaver_sfu::router::TransportId(103);
    let music: Vec<i16> =
        (0..9_600).map(|i| ((std::f32::consts::TAU * 600.0 * i as f32 / 48_000.0).sin() * 6000.0) as i16).collect();
    let hold_audio = palaver_sfu::engine::early_media::ToneLoop::from_pcm(&music).unwrap();
    for command in [
        Command::AddRtpTransport { id: queued, router: room, remote: "127.0.0.1:43020".parse().unwrap() },
        Command::SetMixOutput {
            router: room,
            transport: queued,
            output: Some(MixOutputSpec { ssrc: 0x7020, payload_type: 8 }),
        },
        Command::SetMixAudio { router: room, audio: MixAudio::Held { transport: queued, held: true } },
        Command::SetMixAudio {
            router: room,
            audio: MixAudio::EarlyMedia { transport: queued, tone: Some(std::sync::Arc::new(hold_audio)) },
        },
    ] {
        core.handle_command(t0, command, &mut tx).unwrap();
    }
    // The G.722 phone: SDES-SRTP keys as a trunk's `a=crypto` gives them (transport 9).
    let g722_phone = (support::Peer::new(9, Profile::Aes128CmHmacSha1_80), "127.0.0.1:43100".parse().unwrap());
    let g722_producer = ProducerSpec {
        id: ProducerId(109),
        transport: g722_phone.0.transport,
        kind: palaver_core::MediaKind::Audio,
        mid: None,
        codecs: vec![(9, Codec::G722)],
        layers: vec![LayerSpec { rid: None, ssrc: None, rtx_ssrc: None, width: 0, height: 0, max_bitrate_bps: 0 }],
        extensions: ExtensionMap::default(),
    };
    for command in [
        g722_phone.0.add_transport(room, Some(g722_phone.1)),
        Command::AddProducer { router: room, spec: g722_producer },
        Command::SetMixOutput {
            router: room,
            transport: g722_phone.0.transport,
            output: Some(MixOutputSpec { ssrc: 0x7009, payload_type: 9 }),
        },
    ] {
        core.handle_command(t0, command, &mut tx).unwrap();
    }
    let mut g722_phone = g722_phone;
    // Its voice (a 1 kHz tone) and silence, encoded before counting.
    let mut encoder = audio_codec::g722::G722Encoder::new();
    let g722_frames: Vec<Vec<u8>> = (0..50)
        .map(|f| {
            let pcm: Vec<i16> = (0..G722_FRAME_SAMPLES)
                .map(|n| {
                    let t = (f * G722_FRAME_SAMPLES + n) as f32 / 16_000.0;
                    (8000.0 * (std::f32::consts::TAU * 1000.0 * t).sin()) as i16
                })
                .collect();
            let mut out = vec![0; G722_FRAME_BYTES];
            assert_eq!(encoder.encode_into(&pcm, &mut out).unwrap(), G722_FRAME_BYTES);
            out
        })
        .collect();
    let g722_silence = palaver_sfu::mixer::g722::G722Output::silence_frame();
    let tone: Vec<u8> = (0..G711_FRAME_BYTES)
        .map(|n| Law::Mu.encode((8000.0 * (std::f32::consts::TAU * 1000.0 * n as f32 / 8000.0).sin()) as i16))
        .collect();
    let silence = [Law::Mu.silence_byte(); G711_FRAME_BYTES];
    let mut plain = [0u8; 1500];
    let mut wire = [0u8; 1600];
    let mut step = |tick: u64, core: &mut Engine, tx: &mut CountingTransmit| {
        let base = t0 + Duration::from_millis(tick * 20);
        // The phones talk as participants 0 and 1 of the cycle, the SRTP peers as 2..5.
        for (i, (_, addr)) in phones.iter().enumerate() {
            let payload: &[u8] = if talking(i, tick) { &tone } else { &silence };
            plain[..12].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            plain[2..4].copy_from_slice(&(tick as u16).to_be_bytes());
            plain[4..8].copy_from_slice(&(tick as u32).wrapping_mul(160).to_be_bytes());
            plain[8..12].copy_from_slice(&(0x5000 + i as u32).to_be_bytes());
            plain[12..12 + G711_FRAME_BYTES].copy_from_slice(payload);
            core.handle_datagram(base + Duration::from_millis(1), *addr, &mut plain[..12 + G711_FRAME_BYTES], tx);
        }
        // The G.722 phone talks with the second PCMU phone.
        let payload: &[u8] = if talking(1, tick) { &g722_frames[tick as usize % 50] } else { &g722_silence };
        plain[..12].copy_from_slice(&[0x80, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x09]);
        plain[2..4].copy_from_slice(&(tick as u16).to_be_bytes());
        plain[4..8].copy_from_slice(&(tick as u32).wrapping_mul(160).to_be_bytes());
        plain[12..12 + G722_FRAME_BYTES].copy_from_slice(payload);
        let len = g722_phone.0.protect(&plain[..12 + G722_FRAME_BYTES], &mut wire);
        core.handle_datagram(base + Duration::from_millis(1), g722_phone.1, &mut wire[..len], tx);
        for (i, (peer, addr)) in peers.iter_mut().enumerate() {
            let on = talking(i + 2, tick);
            let payload = if on { &voice[tick as usize % voice.len()] } else { &quiet[tick as usize % quiet.len()] };
            let n = peer.transport.0;
            plain[..12].copy_from_slice(&[0x90, support::OPUS, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            // Even sequence numbers: the first peer's telephone-events take the odd ones.
            plain[2..4].copy_from_slice(&(tick as u16).wrapping_mul(2).to_be_bytes());
            plain[4..8].copy_from_slice(&(tick as u32).wrapping_mul(960).to_be_bytes());
            plain[8..12].copy_from_slice(&(0xA000 + n).to_be_bytes());
            let level = if on { 0x80 | 20 } else { 127 };
            plain[12..20].copy_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, level, 0, 0]);
            plain[20..20 + payload.len()].copy_from_slice(payload);
            let len = peer.protect(&plain[..20 + payload.len()], &mut wire);
            core.handle_datagram(base + Duration::from_millis(1), *addr, &mut wire[..len], tx);
            // A digit every 400 ms: 5 updates and 3 ends, then a pause.
            let in_tone = (tick % 20) as usize;
            if i == 0
                && let Some((marker, event)) = tone_packets((tick / 20 % 10) as u8, 10, 800).nth(in_tone)
            {
                let tone_ts = (tick / 20) as u32 * 20 * 960;
                let seq = (tick as u16).wrapping_mul(2).wrapping_add(1);
                let n = write_packet(&mut plain, 101, marker, seq, tone_ts, 0xA000 + n, &event).unwrap();
                let len = peer.protect(&plain[..n], &mut wire);
                core.handle_datagram(base + Duration::from_millis(1), *addr, &mut wire[..len], tx);
            }
        }
        for quarter in 0..4 {
            core.handle_timeout(base + Duration::from_millis(2 + quarter * 5), tx);
        }
    };
    for tick in 0..400 {
        step(tick, &mut core, &mut tx);
    }
    let (out_before, tones_before) = (counters.snapshot().packets_out, tx.tones);
    let ((), allocated) = support::counting_alloc::counted(|| {
        for tick in 400..2_000 {
            step(tick, &mut core, &mut tx);
        }
    });
    let tones = tx.tones - tones_before;
    let snapshot = counters.snapshot();
    let sent = snapshot.packets_out - out_before;
    println!(
        "plain RTP + G.711 + SRTP G.722 mixing path with a phone hearing ringback and one hearing hold audio: \
         {sent} packets sent in 1600 ticks ({tones} of them relayed RFC 4733 tones), {allocated} heap allocations"
    );
    // 80 digits keyed, each relayed as 5 updates and 3 ends.
    assert_eq!(tones, 80 * 8, "every digit went out to the phone");
    // Phones get a frame every tick (no DTX for G.711 or G.722): at least 5 × 1600 packets.
    assert!(sent >= 8_000, "{snapshot:?}");
    assert_eq!(snapshot.dropped_total(), 0, "{snapshot:?}");
    assert_eq!(allocated, 0, "the plain RTP / G.711 path allocated {allocated} times");
}

/// Call Automation's per-participant audio on the wired worker path: one participant muted,
/// one held, a server-leg stream addressed to two listeners (a prompt to one, music to the
/// held one) under its own SSRC, and the per-source tap drained every tick, through silence,
/// one and three talkers: no allocation per packet or per tick.
#[test]
fn per_participant_audio_on_the_worker_does_not_allocate() {
    use palaver_sfu::engine::{MixAudio, SourceTap};

    let voice = frames(true, 50);
    let quiet = frames(false, 50);
    let room = RouterId(7);
    let counters = std::sync::Arc::new(WorkerCounters::default());
    let mut core = Engine::new(RouterConfig::default(), 1, counters.clone());
    let mut tx = CountingTransmit { buf: vec![0; 2048], sent: 0, tones: 0 };
    let t0 = Instant::now();
    let mut peers = opus_room(&mut core, &mut tx, t0, room, 44000);
    let transport = |i: usize| peers[i].0.transport;
    let tap = std::sync::Arc::new(SourceTap::new(64));
    for audio in [
        MixAudio::Muted { transport: transport(3), muted: true },
        MixAudio::Held { transport: transport(4), held: true },
        MixAudio::Audience { transport: transport(0), ssrc: 0xB001, listeners: Some(vec![transport(1), transport(4)]) },
        MixAudio::SourceTap { tap: Some(tap.clone()) },
    ] {
        core.handle_command(t0, Command::SetMixAudio { router: room, audio }, &mut tx).unwrap();
    }
    let mut plain = [0u8; 1500];
    let mut wire = [0u8; 1600];
    let mut tapped = 0u64;
    let mut step = |tick: u64, core: &mut Engine, tx: &mut CountingTransmit, tapped: &mut u64| {
        let base = t0 + Duration::from_millis(tick * 20);
        for (i, (peer, addr)) in peers.iter_mut().enumerate() {
            let on = talking(i, tick);
            let payload = if on { &voice[tick as usize % voice.len()] } else { &quiet[tick as usize % quiet.len()] };
            let n = peer.transport.0;
            // Peer 0 also sends the addressed stream (always sounding) under its own SSRC.
            let streams: &[(u32, &Vec<u8>, bool)] = if i == 0 {
                &[(0xA000 + n, payload, on), (0xB001, &voice[tick as usize % voice.len()], true)]
            } else {
                &[(0xA000 + n, payload, on)]
            };
            for &(ssrc, payload, on) in streams {
                plain[..12].copy_from_slice(&[0x90, support::OPUS, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
                plain[2..4].copy_from_slice(&(tick as u16).to_be_bytes());
                plain[4..8].copy_from_slice(&(tick as u32).wrapping_mul(960).to_be_bytes());
                plain[8..12].copy_from_slice(&ssrc.to_be_bytes());
                let level = if on { 0x80 | 20 } else { 127 };
                plain[12..20].copy_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, level, 0, 0]);
                plain[20..20 + payload.len()].copy_from_slice(payload);
                let len = peer.protect(&plain[..20 + payload.len()], &mut wire);
                core.handle_datagram(base + Duration::from_millis(1), *addr, &mut wire[..len], tx);
            }
        }
        for quarter in 0..4 {
            core.handle_timeout(base + Duration::from_millis(2 + quarter * 5), tx);
        }
        while tap.pop().is_some() {
            *tapped += 1;
        }
    };
    for tick in 0..400 {
        step(tick, &mut core, &mut tx, &mut tapped);
    }
    let out_before = counters.snapshot().packets_out;
    let tapped_before = tapped;
    let ((), allocated) = support::counting_alloc::counted(|| {
        for tick in 400..2_000 {
            step(tick, &mut core, &mut tx, &mut tapped);
        }
    });
    let sent = counters.snapshot().packets_out - out_before;
    println!(
        "per-participant audio: {sent} packets sent, {} tap frames in 1600 ticks, {allocated} heap allocations",
        tapped - tapped_before
    );
    assert!(sent >= 1_600, "{sent} packets");
    assert!(tapped - tapped_before >= 3 * 1_600, "every unmuted sender is tapped each tick");
    assert_eq!(tap.dropped(), 0);
    assert_eq!(allocated, 0, "per-participant audio allocated {allocated} times");
}
