//! SIP trunk legs in the live media path, joined from SDP through `Conferences::join_sip` and
//! run on a worker engine in virtual time:
//! - SDES-SRTP checked against an independent SRTP implementation: the trunk's media
//!   endpoint is webrtc-rs's `webrtc-srtp`, keyed only from the SDP (its own `a=crypto` in the
//!   offer, palaver's in the answer); an SRTP trunk and a plain trunk hear each other's tones
//!   through the mixer, for each suite palaver accepts;
//! - every trunk codec (PCMU, G.722, Opus) carries a tone both ways: three phones, one per
//!   codec, each decodes the other two and not itself.
//! - DTLS-SRTP (`UDP/TLS/RTP/SAVP`, RFC 5763/5764) without ICE: the trunk's DTLS endpoint is
//!   rtc-dtls (the crate the WebRTC path uses) with its own certificate, its SRTP is
//!   `webrtc-srtp` keyed from that handshake; palaver answers `a=setup:passive` to an
//!   `active` trunk (the trunk starts the handshake) and `active` to a `passive` one (palaver
//!   starts it); both directions carry a tone;
//! - hold audio of queues and lobbies (`trunk_media/waiting.rs`);
//! - RTP latching of phones behind NAT (`trunk_media/latching.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use audio_codec::g722::{G722Decoder, G722Encoder};
use audio_codec::{Decoder as _, Encoder as _};
use palaver_sfu::control::sip::{SdesCrypto, SrtpPolicy, TrunkPolicy};
use palaver_sfu::control::{Conferences, ControlConfig, Output};
use palaver_sfu::engine::{CommandError, DropReason};
use palaver_sfu::mixer::AudioCodec;
use palaver_sfu::mixer::g711::Law;
use palaver_sfu::srtp::Profile;
use palaver_sfu::testing::TestEngine;
use palaver_sfu::webrtc::dtls::{DtlsIdentity, DtlsSession};
use palaver_sfu::webrtc::sdp::Description;
use webrtc_srtp::context::Context as TheirContext;
use webrtc_srtp::protection_profile::ProtectionProfile as TheirProfile;

const CONVERSATION: &str = "call-1";
const AMPLITUDE: f32 = 8000.0;

fn controller() -> Conferences {
    let candidates = vec![SocketAddr::from(([192, 0, 2, 1], 40_000))];
    let identity = DtlsIdentity::generate_server().unwrap();
    Conferences::new(ControlConfig { candidates, identity }, [3; 32])
}

fn apply(engine: &mut TestEngine, out: &Output) -> Result<(), CommandError> {
    for (worker, command) in &out.commands {
        assert_eq!(*worker, 0);
        engine.command(command.clone())?;
    }
    Ok(())
}

/// A trunk's offer of one codec (and telephone-events); `crypto` lines go in as written.
fn offer(addr: SocketAddr, protocol: &str, codec: TrunkCodec, crypto: &[String]) -> String {
    let (pt, rtpmap) = match codec {
        TrunkCodec::Pcmu => (0, "PCMU/8000"),
        TrunkCodec::G722 => (9, "G722/8000"),
        TrunkCodec::Opus => (111, "opus/48000/2"),
    };
    let mut sdp = format!(
        "v=0\r\no=sbc 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} {protocol} {pt} 101\r\n\
         a=rtpmap:{pt} {rtpmap}\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
        ip = addr.ip(),
        port = addr.port()
    );
    for line in crypto {
        sdp.push_str(&format!("a=crypto:{line}\r\n"));
    }
    sdp
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrunkCodec {
    Pcmu,
    G722,
    Opus,
}

impl TrunkCodec {
    fn rate(self) -> u32 {
        match self {
            TrunkCodec::Pcmu => 8000,
            TrunkCodec::G722 => 16_000,
            TrunkCodec::Opus => 48_000,
        }
    }

    fn payload_type(self) -> u8 {
        match self {
            TrunkCodec::Pcmu => 0,
            TrunkCodec::G722 => 9,
            TrunkCodec::Opus => 111,
        }
    }

    /// RTP timestamp units per 20 ms (G.722 runs its RTP clock at 8 kHz).
    fn ticks(self) -> u32 {
        match self {
            TrunkCodec::Opus => 960,
            _ => 160,
        }
    }

    fn audio(self) -> AudioCodec {
        match self {
            TrunkCodec::Pcmu => AudioCodec::Pcmu,
            TrunkCodec::G722 => AudioCodec::G722,
            TrunkCodec::Opus => AudioCodec::Opus,
        }
    }
}

/// One phone: a tone in its codec out, the mix decoded in its codec in.
struct Phone {
    codec: TrunkCodec,
    tone: f32,
    phase: f32,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    g722: (G722Encoder, G722Decoder),
    opus: (opus::Encoder, opus::Decoder),
    heard: Vec<f32>,
}

impl Phone {
    fn new(codec: TrunkCodec, tone: f32, ssrc: u32) -> Self {
        let opus_encoder = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let opus_decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        Self {
            codec,
            tone,
            phase: 0.0,
            seq: 1000,
            timestamp: 8000,
            ssrc,
            g722: (G722Encoder::new(), G722Decoder::new()),
            opus: (opus_encoder, opus_decoder),
            heard: Vec::new(),
        }
    }

    /// The next 20 ms RTP packet (plain).
    fn next(&mut self) -> Vec<u8> {
        let rate = self.codec.rate();
        let step = std::f32::consts::TAU * self.tone / rate as f32;
        let pcm: Vec<i16> = (0..rate / 50)
            .map(|_| {
                let s = (AMPLITUDE * self.phase.sin()) as i16;
                self.phase = (self.phase + step) % std::f32::consts::TAU;
                s
            })
            .collect();
        let mut p = vec![0x80, self.codec.payload_type()];
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&self.timestamp.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        let mut payload = [0u8; 1500];
        let n = match self.codec {
            TrunkCodec::Pcmu => {
                pcm.iter().zip(payload.iter_mut()).for_each(|(&s, b)| *b = Law::Mu.encode(s));
                pcm.len()
            }
            TrunkCodec::G722 => self.g722.0.encode_into(&pcm, &mut payload).unwrap(),
            TrunkCodec::Opus => self.opus.0.encode(&pcm, &mut payload).unwrap(),
        };
        p.extend_from_slice(&payload[..n]);
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(self.codec.ticks());
        p
    }

    /// Decodes one packet palaver sent (plain RTP).
    fn hear(&mut self, packet: &[u8]) {
        assert_eq!(packet[0] & 0x3F, 0, "no CSRC, padding or extension in the mix");
        assert_eq!(packet[1] & 0x7F, self.codec.payload_type(), "the mix comes in the agreed codec");
        let payload = &packet[12..];
        let mut pcm = [0i16; 1920];
        let n = match self.codec {
            TrunkCodec::Pcmu => {
                payload.iter().zip(pcm.iter_mut()).for_each(|(&b, s)| *s = Law::Mu.decode(b));
                payload.len()
            }
            TrunkCodec::G722 => self.g722.1.decode_into(payload, &mut pcm).unwrap(),
            TrunkCodec::Opus => self.opus.1.decode(payload, &mut pcm, false).unwrap(),
        };
        self.heard.extend(pcm[..n].iter().map(|&s| f32::from(s)));
    }

    /// The amplitude of `frequency` in the last second heard (Goertzel).
    fn heard_at(&self, frequency: f32) -> f32 {
        let rate = self.codec.rate() as usize;
        assert!(self.heard.len() >= rate, "{:?} heard only {} samples", self.codec, self.heard.len());
        let samples = &self.heard[self.heard.len() - rate..];
        let w = std::f32::consts::TAU * frequency / rate as f32;
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for &x in samples {
            let s = x + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        2.0 * (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2).sqrt() / samples.len() as f32
    }
}

fn their_profile(profile: Profile) -> TheirProfile {
    match profile {
        Profile::Aes128CmHmacSha1_80 => TheirProfile::Aes128CmHmacSha1_80,
        Profile::Aes128CmHmacSha1_32 => TheirProfile::Aes128CmHmacSha1_32,
        Profile::AeadAes128Gcm => TheirProfile::AeadAes128Gcm,
    }
}

fn a_secure_and_a_plain_phone_hear_each_other(suite: &str, key_material: &str) {
    let (secure_addr, plain_addr): (SocketAddr, SocketAddr) =
        ("198.51.100.7:5004".parse().unwrap(), "198.51.100.8:6000".parse().unwrap());
    let mut control = controller();
    let mut engine = TestEngine::new();
    let policy = TrunkPolicy { codecs: vec![AudioCodec::Pcmu], srtp: SrtpPolicy::Required, trunk: None };

    // The SRTP trunk offers its key; palaver answers RTP/SAVP with its own.
    let trunk_crypto = format!("1 {suite} inline:{key_material}");
    let savp = offer(secure_addr, "RTP/SAVP", TrunkCodec::Pcmu, std::slice::from_ref(&trunk_crypto));
    let (_, answer, out) = control.join_sip(CONVERSATION, "secure", &savp, &policy).unwrap();
    apply(&mut engine, &out).unwrap();
    assert!(answer.contains("RTP/SAVP 0 101\r\n"), "{answer}");
    let theirs = SdesCrypto::parse(&trunk_crypto).unwrap();
    let described = Description::parse(&answer).unwrap();
    assert_eq!(described.crypto.len(), 1, "{answer}");
    let ours = SdesCrypto::parse(&described.crypto[0].1).expect("palaver's a=crypto reads back");
    assert_eq!((ours.tag, ours.profile), (1, theirs.profile));
    assert_ne!(ours.key, theirs.key, "palaver sends under its own key");

    // A plain trunk joins the same conversation (no SRTP on its policy).
    let plain_policy = TrunkPolicy { codecs: vec![AudioCodec::Pcmu], srtp: SrtpPolicy::Off, trunk: None };
    let avp = offer(plain_addr, "RTP/AVP", TrunkCodec::Pcmu, &[]);
    let (_, _, out) = control.join_sip(CONVERSATION, "plain", &avp, &plain_policy).unwrap();
    apply(&mut engine, &out).unwrap();
    engine.drive(Duration::from_millis(1));

    let profile = their_profile(theirs.profile);
    let mut trunk_tx = TheirContext::new(&theirs.key, &theirs.salt, profile, None, None).unwrap();
    let mut trunk_rx = TheirContext::new(&ours.key, &ours.salt, profile, None, None).unwrap();
    let mut secure = Phone::new(TrunkCodec::Pcmu, 1000.0, 0x5EC0);
    let mut plain = Phone::new(TrunkCodec::Pcmu, 440.0, 0x9A11);
    let mut protected_in = 0;
    for _ in 0..100 {
        let packet = trunk_tx.encrypt_rtp(&secure.next()).unwrap();
        assert!(packet.len() > 172, "webrtc-srtp added its tag");
        engine.datagram(secure_addr, packet.to_vec());
        engine.datagram(plain_addr, plain.next());
        engine.drive(Duration::from_millis(20));
        for (to, packet) in engine.take_sent() {
            if packet.len() < 2 || (200..=206).contains(&packet[1]) {
                continue; // RTCP
            }
            if to == secure_addr {
                let clear = trunk_rx.decrypt_rtp(&packet).expect("webrtc-srtp unprotects palaver's SRTP");
                protected_in += 1;
                secure.hear(&clear);
            } else {
                assert_eq!(to, plain_addr);
                plain.hear(&packet);
            }
        }
    }
    assert!(protected_in >= 90, "{protected_in} SRTP packets reached the trunk");
    let (heard_by_secure, own_secure) = (secure.heard_at(440.0), secure.heard_at(1000.0));
    let (heard_by_plain, own_plain) = (plain.heard_at(1000.0), plain.heard_at(440.0));
    println!(
        "{suite}: the SRTP trunk hears 440 Hz at {heard_by_secure:.0} (own {own_secure:.0}); \
         the plain trunk hears 1 kHz at {heard_by_plain:.0} (own {own_plain:.0})"
    );
    assert!(heard_by_secure > AMPLITUDE / 2.0, "the SRTP trunk hears the plain one: {heard_by_secure}");
    assert!(heard_by_plain > AMPLITUDE / 2.0, "the plain trunk hears the SRTP one: {heard_by_plain}");
    assert!(own_secure < AMPLITUDE / 50.0 && own_plain < AMPLITUDE / 50.0, "mix-minus: {own_secure} {own_plain}");
    let counters = engine.counters();
    assert_eq!(counters.dropped_total(), 0, "{counters:?}");

    // A packet under the wrong key is dropped and counted, and does not reach the mix.
    let mut forger = TheirContext::new(&[9; 16], &theirs.salt, profile, None, None).unwrap();
    engine.datagram(secure_addr, forger.encrypt_rtp(&secure.next()).unwrap().to_vec());
    engine.drive(Duration::from_millis(20));
    assert_eq!(engine.counters().dropped(DropReason::SrtpAuthFailed), 1);
}

#[test]
fn sdes_aes_cm_128_hmac_sha1_80_against_webrtc_srtp() {
    a_secure_and_a_plain_phone_hear_each_other("AES_CM_128_HMAC_SHA1_80", "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR");
}

#[test]
fn sdes_aead_aes_128_gcm_against_webrtc_srtp() {
    a_secure_and_a_plain_phone_hear_each_other("AEAD_AES_128_GCM", "/Bpe8AqnRhPrMJ/bqeEw8aCXc7ndP/Jcu0/BSQ==");
}

#[test]
fn pcmu_g722_and_opus_trunks_each_hear_the_other_two() {
    let mut control = controller();
    let mut engine = TestEngine::new();
    let phones =
        [(TrunkCodec::Pcmu, 700.0, 6000u16), (TrunkCodec::G722, 1000.0, 6002), (TrunkCodec::Opus, 440.0, 6004)];
    let mut legs = Vec::new();
    for (i, (codec, tone, port)) in phones.into_iter().enumerate() {
        let addr = SocketAddr::from(([198, 51, 100, 9], port));
        // The trunk prefers another codec first: the offer's one is agreed.
        let policy = TrunkPolicy {
            codecs: vec![AudioCodec::Pcma, codec.audio()],
            srtp: SrtpPolicy::Off,
            trunk: Some("trunk-media-test".into()),
        };
        let (media, answer, out) = control
            .join_sip(CONVERSATION, &format!("phone-{i}"), &offer(addr, "RTP/AVP", codec, &[]), &policy)
            .unwrap();
        apply(&mut engine, &out).unwrap();
        assert_eq!((media.codec, media.payload_type), (codec.audio(), codec.payload_type()), "{answer}");
        legs.push((addr, Phone::new(codec, tone, 0x1000 + i as u32)));
    }
    engine.drive(Duration::from_millis(1));
    for _ in 0..100 {
        for (addr, phone) in &mut legs {
            engine.datagram(*addr, phone.next());
        }
        engine.drive(Duration::from_millis(20));
        for (to, packet) in engine.take_sent() {
            if packet.len() < 2 || (200..=206).contains(&packet[1]) {
                continue;
            }
            let (_, phone) = legs.iter_mut().find(|(addr, _)| *addr == to).expect("sent to a phone");
            phone.hear(&packet);
        }
    }
    for (_, phone) in &legs {
        let own = phone.heard_at(phone.tone);
        let others: Vec<(f32, f32)> = legs
            .iter()
            .filter(|(_, p)| p.codec != phone.codec)
            .map(|(_, p)| (p.tone, phone.heard_at(p.tone)))
            .collect();
        println!("{:?} phone hears {others:?}, own {} Hz at {own:.0}", phone.codec, phone.tone);
        for (tone, amplitude) in others {
            assert!(amplitude > AMPLITUDE / 4.0, "{:?} hears {tone} Hz at only {amplitude:.0}", phone.codec);
        }
        assert!(own < AMPLITUDE / 30.0, "{:?} hears itself at {own:.0}", phone.codec);
    }
    let counters = engine.counters();
    assert_eq!(counters.dropped_total(), 0, "{counters:?}");
    // The trunk's legs are measured under its name: 300 packets, no loss, no jitter.
    let slot = palaver_sfu::engine::trunk_stats::trunk_slot("trunk-media-test").unwrap();
    let (packets, reception) = counters.trunks[usize::from(slot)];
    assert_eq!(packets, 300);
    assert_eq!((reception.report_blocks, reception.packets_lost), (6, 0), "{reception:?}");
    assert!(reception.jitter_seconds() < 0.001, "{reception:?}");
    assert!(counters.transcode_ns > 0, "phone codec time is measured");
}

/// A DTLS-SRTP trunk (setup `trunk_setup`) and a plain one in one conversation: the handshake
/// runs over the worker's socket with the address from the SDP, the trunk's fingerprint is
/// checked, and the keys it exported carry a tone each way.
fn a_dtls_trunk_and_a_plain_phone_hear_each_other(trunk_setup: &str) {
    let (secure_addr, plain_addr): (SocketAddr, SocketAddr) =
        ("198.51.100.9:5004".parse().unwrap(), "198.51.100.8:6000".parse().unwrap());
    let mut control = controller();
    let mut engine = TestEngine::new();
    let policy = TrunkPolicy { codecs: vec![AudioCodec::Pcmu], srtp: SrtpPolicy::Required, trunk: None };
    let trunk_identity = DtlsIdentity::generate(trunk_setup == "active").unwrap();
    let offer = format!(
        "{}a=fingerprint:sha-256 {}\r\na=setup:{trunk_setup}\r\n",
        offer(secure_addr, "UDP/TLS/RTP/SAVP", TrunkCodec::Pcmu, &[]),
        trunk_identity.fingerprint()
    );
    let (media, answer, out) = control.join_sip(CONVERSATION, "secure", &offer, &policy).unwrap();
    assert!(media.dtls.is_some() && media.crypto.is_none());
    apply(&mut engine, &out).unwrap();
    assert!(answer.contains("UDP/TLS/RTP/SAVP 0 101\r\n"), "{answer}");
    let ours = Description::parse(&answer).unwrap();
    let server_fingerprint = ours.fingerprint.clone().expect("a=fingerprint in the answer");
    let expected_setup = if trunk_setup == "active" { "passive" } else { "active" };
    assert_eq!(ours.setup.as_deref(), Some(expected_setup), "{answer}");
    let plain_policy = TrunkPolicy { codecs: vec![AudioCodec::Pcmu], srtp: SrtpPolicy::Off, trunk: None };
    let (_, _, out) = control.join_sip(CONVERSATION, "plain", &offer_plain(plain_addr), &plain_policy).unwrap();
    apply(&mut engine, &out).unwrap();

    let keys = trunk_handshake(&mut engine, &trunk_identity, trunk_setup == "active", &server_fingerprint, secure_addr);
    let profile = their_profile(keys.profile);
    let mut trunk_tx = TheirContext::new(&keys.local_master_key, &keys.local_master_salt, profile, None, None).unwrap();
    let mut trunk_rx =
        TheirContext::new(&keys.remote_master_key, &keys.remote_master_salt, profile, None, None).unwrap();
    let mut secure = Phone::new(TrunkCodec::Pcmu, 1000.0, 0xD715);
    let mut plain = Phone::new(TrunkCodec::Pcmu, 440.0, 0x9A11);
    let mut protected_in = 0;
    for _ in 0..100 {
        engine.datagram(secure_addr, trunk_tx.encrypt_rtp(&secure.next()).unwrap().to_vec());
        engine.datagram(plain_addr, plain.next());
        engine.drive(Duration::from_millis(20));
        for (to, packet) in engine.take_sent() {
            if packet.len() < 2 || (200..=206).contains(&packet[1]) || (20..=63).contains(&packet[0]) {
                continue; // RTCP, a DTLS retransmission
            }
            if to == secure_addr {
                let clear = trunk_rx.decrypt_rtp(&packet).expect("the trunk unprotects palaver's SRTP");
                protected_in += 1;
                secure.hear(&clear);
            } else {
                plain.hear(&packet);
            }
        }
    }
    let (heard_by_secure, heard_by_plain) = (secure.heard_at(440.0), plain.heard_at(1000.0));
    println!(
        "DTLS-SRTP ({trunk_setup} trunk, {:?}): {protected_in} SRTP packets to the trunk; it hears 440 Hz at \
         {heard_by_secure:.0}, the plain phone hears 1 kHz at {heard_by_plain:.0}",
        keys.profile
    );
    assert!(protected_in >= 90, "{protected_in} SRTP packets reached the trunk");
    assert!(heard_by_secure > AMPLITUDE / 2.0, "the DTLS trunk hears the plain one: {heard_by_secure}");
    assert!(heard_by_plain > AMPLITUDE / 2.0, "the plain trunk hears the DTLS one: {heard_by_plain}");
    assert!(secure.heard_at(1000.0) < AMPLITUDE / 50.0, "mix-minus");
    assert_eq!(engine.counters().dropped(DropReason::SrtpAuthFailed), 0);
}

/// The trunk's side of the DTLS handshake over the worker's socket (its datagrams come from
/// its SDP address `trunk_addr`): the keys it exported once palaver's certificate matched.
fn trunk_handshake(
    engine: &mut TestEngine,
    identity: &DtlsIdentity,
    trunk_is_client: bool,
    server_fingerprint: &str,
    trunk_addr: SocketAddr,
) -> palaver_sfu::srtp::SrtpKeys {
    let server_addr = SocketAddr::from(([192, 0, 2, 1], 40_000));
    let now = std::time::Instant::now();
    let (mut trunk, mut to_server) = if trunk_is_client {
        DtlsSession::client(identity, server_fingerprint, now, server_addr).unwrap()
    } else {
        (DtlsSession::server(identity, server_fingerprint), Vec::new())
    };
    let mut keys = None;
    for _ in 0..30 {
        for datagram in to_server.drain(..) {
            engine.datagram(trunk_addr, datagram.to_vec());
        }
        engine.drive(Duration::from_millis(20));
        for (to, datagram) in engine.take_sent() {
            if to != trunk_addr || !(20..=63).contains(&datagram[0]) {
                continue; // the plain phone's mix; nothing but DTLS goes to the trunk yet
            }
            let output = trunk.handle(now, server_addr, &datagram).expect("the trunk accepts palaver's flight");
            to_server.extend(output.transmit);
            keys = keys.or(output.keys);
        }
        if keys.is_some() && to_server.is_empty() {
            break;
        }
    }
    keys.expect("the DTLS handshake completed: palaver's certificate matched its fingerprint")
}

fn offer_plain(addr: SocketAddr) -> String {
    offer(addr, "RTP/AVP", TrunkCodec::Pcmu, &[])
}

#[test]
fn a_dtls_srtp_trunk_that_starts_the_handshake_is_heard_both_ways() {
    a_dtls_trunk_and_a_plain_phone_hear_each_other("active");
}

#[test]
fn palaver_starts_the_handshake_when_the_dtls_trunk_is_passive() {
    a_dtls_trunk_and_a_plain_phone_hear_each_other("passive");
}

#[test]
fn a_dtls_offer_without_fingerprint_or_on_a_plain_trunk_is_refused() {
    let mut control = controller();
    let addr: SocketAddr = "198.51.100.9:5004".parse().unwrap();
    let bare = offer(addr, "UDP/TLS/RTP/SAVP", TrunkCodec::Pcmu, &[]);
    let policy = TrunkPolicy { codecs: vec![AudioCodec::Pcmu], srtp: SrtpPolicy::Optional, trunk: None };
    assert!(control.join_sip(CONVERSATION, "a", &bare, &policy).is_err(), "no a=fingerprint");
    let with_fp = format!("{bare}a=fingerprint:sha-256 AB:CD\r\na=setup:actpass\r\n");
    let off = TrunkPolicy { srtp: SrtpPolicy::Off, ..policy.clone() };
    assert!(control.join_sip(CONVERSATION, "b", &with_fp, &off).is_err(), "srtp = off refuses DTLS");
    let (media, answer, _) = control.join_sip(CONVERSATION, "c", &with_fp, &policy).unwrap();
    assert_eq!(media.dtls.map(|d| d.client), Some(false), "actpass is answered passive");
    assert!(answer.contains("a=setup:passive\r\n"), "{answer}");
    // srtp = "dtls": the server's own offer is DTLS-SRTP.
    let dtls = TrunkPolicy { srtp: SrtpPolicy::Dtls, ..policy };
    let ours = control.offer_sip(CONVERSATION, "d", &dtls);
    assert!(ours.contains("UDP/TLS/RTP/SAVP") && ours.contains("a=setup:actpass\r\n"), "{ours}");
    assert!(ours.contains("a=fingerprint:sha-256 ") && !ours.contains("a=crypto"), "{ours}");
}

/// The names of the commands of `out` that make or remove a transport.
fn transport_changes(out: &Output) -> Vec<&'static str> {
    out.commands.iter().map(|(_, c)| c.name()).filter(|n| n.contains("transport")).collect()
}

/// Inbound early media in the media plane: a phone leg joined while its callee rings is held
/// and hears the US ringback (440 + 480 Hz) in its own codec, and nobody hears it; the
/// answer with the same SDP returns the same SDP, makes no new transport, and the same
/// stream (SSRC, sequence numbers without a gap) carries the conversation from then on.
#[test]
fn a_waiting_phone_hears_ringback_then_the_conversation_on_the_same_stream() {
    use palaver_sfu::control::sip::legs::EarlyMedia;
    use palaver_sfu::engine::early_media::{RINGBACK_AMPLITUDE, Ringback};
    let (caller_addr, callee_addr): (SocketAddr, SocketAddr) =
        ("198.51.100.9:7000".parse().unwrap(), "198.51.100.8:6000".parse().unwrap());
    let mut control = controller();
    let mut engine = TestEngine::new();
    let policy = TrunkPolicy { codecs: vec![AudioCodec::Pcmu], srtp: SrtpPolicy::Off, trunk: None };
    let (_, _, out) = control.join_sip(CONVERSATION, "callee", &offer_plain(callee_addr), &policy).unwrap();
    apply(&mut engine, &out).unwrap();
    let ringback = Some(EarlyMedia::Ringback(Ringback::Us));
    let caller_offer = offer_plain(caller_addr);
    let (_, early_sdp, out) = control.join_sip_early(CONVERSATION, "caller", &caller_offer, &policy, ringback).unwrap();
    apply(&mut engine, &out).unwrap();
    let mut caller = Phone::new(TrunkCodec::Pcmu, 1000.0, 0xCA11);
    let mut callee = Phone::new(TrunkCodec::Pcmu, 700.0, 0xCA1E);
    let mut stream = Vec::new();
    let mut run = |engine: &mut TestEngine, caller: &mut Phone, callee: &mut Phone, ticks| {
        for _ in 0..ticks {
            engine.datagram(caller_addr, caller.next());
            engine.datagram(callee_addr, callee.next());
            engine.drive(Duration::from_millis(20));
            for (to, packet) in engine.take_sent() {
                if packet.len() < 2 || (200..=206).contains(&packet[1]) {
                    continue;
                }
                if to == caller_addr {
                    let (seq, ssrc) = (u16::from_be_bytes([packet[2], packet[3]]), &packet[8..12]);
                    stream.push((seq, u32::from_be_bytes(ssrc.try_into().unwrap())));
                    caller.hear(&packet);
                } else {
                    callee.hear(&packet);
                }
            }
        }
    };
    // 1.6 s into the cadence's 2 s "on": the last second heard is ringback.
    run(&mut engine, &mut caller, &mut callee, 80);
    let (low, high, conversation) = (caller.heard_at(440.0), caller.heard_at(480.0), caller.heard_at(700.0));
    let callee_hears_caller = callee.heard_at(1000.0);
    println!(
        "ringback to the waiting phone: 440 Hz at {low:.0}, 480 Hz at {high:.0} (sent at {RINGBACK_AMPLITUDE}); \
         the callee's 700 Hz {conversation:.0}; the callee hears the caller at {callee_hears_caller:.0}"
    );
    assert!(low > RINGBACK_AMPLITUDE / 2.0 && high > RINGBACK_AMPLITUDE / 2.0, "ringback heard: {low:.0} {high:.0}");
    assert!(conversation < AMPLITUDE / 50.0, "a waiting phone hears nothing of the call ({conversation:.0})");
    assert!(callee_hears_caller < AMPLITUDE / 50.0, "nobody hears a waiting phone ({callee_hears_caller:.0})");
    // The answer: the same SDP, the same transport.
    let (_, answer_sdp, out) = control.join_sip(CONVERSATION, "caller", &caller_offer, &policy).unwrap();
    assert_eq!(answer_sdp, early_sdp, "the 200 repeats the 183's SDP");
    assert!(transport_changes(&out).is_empty(), "{:?}", out.commands);
    apply(&mut engine, &out).unwrap();
    run(&mut engine, &mut caller, &mut callee, 60);
    let (after, ring_after) = (caller.heard_at(700.0), caller.heard_at(440.0));
    let callee_after = callee.heard_at(1000.0);
    println!(
        "after the answer: the phone hears 700 Hz at {after:.0} (ringback 440 Hz {ring_after:.0}); the callee hears 1 kHz at {callee_after:.0}"
    );
    assert!(after > AMPLITUDE / 2.0 && ring_after < AMPLITUDE / 50.0, "{after:.0} {ring_after:.0}");
    assert!(callee_after > AMPLITUDE / 2.0, "{callee_after:.0}");
    assert!(stream.windows(2).all(|w| w[1].1 == w[0].1), "one SSRC before and after the answer");
    let gaps = stream.windows(2).filter(|w| w[1].0 != w[0].0.wrapping_add(1)).count();
    assert_eq!(gaps, 0, "one sequence space across the answer ({} packets)", stream.len());
    assert!(stream.len() >= 135, "a packet every tick: {}", stream.len());
}

/// DTLS-SRTP across hold and resume: a trunk that keeps its fingerprint and role keeps its
/// association (RFC 5763 §6.7.1). The hold and the resume change the leg in place (no new
/// transport, no new handshake); while held the trunk is sent nothing and heard by nobody;
/// after the resume the keys of the first handshake carry a tone both ways. A new
/// fingerprint makes a new transport and a new handshake.
#[test]
fn a_dtls_trunk_keeps_its_association_across_hold_and_resume() {
    let (secure_addr, plain_addr): (SocketAddr, SocketAddr) =
        ("198.51.100.9:5004".parse().unwrap(), "198.51.100.8:6000".parse().unwrap());
    let mut control = controller();
    let mut engine = TestEngine::new();
    let policy = TrunkPolicy { codecs: vec![AudioCodec::Pcmu], srtp: SrtpPolicy::Required, trunk: None };
    let identity = DtlsIdentity::generate(true).unwrap();
    let dtls_offer = |identity: &DtlsIdentity, direction: &str| {
        format!(
            "{}a=fingerprint:sha-256 {}\r\na=setup:active\r\n",
            offer(secure_addr, "UDP/TLS/RTP/SAVP", TrunkCodec::Pcmu, &[]).replace("a=sendrecv", direction),
            identity.fingerprint()
        )
    };
    let (_, answer, out) =
        control.join_sip(CONVERSATION, "secure", &dtls_offer(&identity, "a=sendrecv"), &policy).unwrap();
    apply(&mut engine, &out).unwrap();
    let fingerprint = Description::parse(&answer).unwrap().fingerprint.unwrap();
    let plain_policy = TrunkPolicy { srtp: SrtpPolicy::Off, ..policy.clone() };
    let (_, _, out) = control.join_sip(CONVERSATION, "plain", &offer_plain(plain_addr), &plain_policy).unwrap();
    apply(&mut engine, &out).unwrap();
    let keys = trunk_handshake(&mut engine, &identity, true, &fingerprint, secure_addr);
    let profile = their_profile(keys.profile);
    let mut tx = TheirContext::new(&keys.local_master_key, &keys.local_master_salt, profile, None, None).unwrap();
    let mut rx = TheirContext::new(&keys.remote_master_key, &keys.remote_master_salt, profile, None, None).unwrap();
    let mut secure = Phone::new(TrunkCodec::Pcmu, 1000.0, 0xD715);
    let mut plain = Phone::new(TrunkCodec::Pcmu, 440.0, 0x9A11);
    // Ticks of both phones talking; returns the SRTP packets that reached the trunk.
    let talk = |engine: &mut TestEngine,
                secure: &mut Phone,
                plain: &mut Phone,
                tx: &mut TheirContext,
                rx: &mut TheirContext,
                ticks| {
        let mut protected_in = 0;
        for _ in 0..ticks {
            engine.datagram(secure_addr, tx.encrypt_rtp(&secure.next()).unwrap().to_vec());
            engine.datagram(plain_addr, plain.next());
            engine.drive(Duration::from_millis(20));
            for (to, packet) in engine.take_sent() {
                if packet.len() < 2 || (200..=206).contains(&packet[1]) || (20..=63).contains(&packet[0]) {
                    continue;
                }
                if to == secure_addr {
                    secure.hear(&rx.decrypt_rtp(&packet).expect("the trunk unprotects palaver's SRTP"));
                    protected_in += 1;
                } else {
                    plain.hear(&packet);
                }
            }
        }
        protected_in
    };
    assert!(talk(&mut engine, &mut secure, &mut plain, &mut tx, &mut rx, 60) >= 55);
    // Hold: the same fingerprint and role, `sendonly`.
    let (_, held_answer, out) =
        control.join_sip(CONVERSATION, "secure", &dtls_offer(&identity, "a=sendonly"), &policy).unwrap();
    assert!(transport_changes(&out).is_empty(), "hold keeps the transport: {:?}", out.commands);
    assert!(held_answer.contains("a=recvonly\r\n") && held_answer.contains(&fingerprint), "{held_answer}");
    apply(&mut engine, &out).unwrap();
    let during_hold = talk(&mut engine, &mut secure, &mut plain, &mut tx, &mut rx, 60);
    let plain_hears_held = plain.heard_at(1000.0);
    // Resume: in place again; the first handshake's keys still work both ways.
    let (_, resumed, out) =
        control.join_sip(CONVERSATION, "secure", &dtls_offer(&identity, "a=sendrecv"), &policy).unwrap();
    assert!(transport_changes(&out).is_empty(), "resume keeps the transport: {:?}", out.commands);
    assert_eq!(resumed, answer, "the same SDP as before the hold");
    apply(&mut engine, &out).unwrap();
    let after_resume = talk(&mut engine, &mut secure, &mut plain, &mut tx, &mut rx, 60);
    let (secure_hears, plain_hears) = (secure.heard_at(440.0), plain.heard_at(1000.0));
    println!(
        "DTLS across hold: {during_hold} packets to the held trunk, the other phone heard it at {plain_hears_held:.0}; \
         after resume {after_resume} SRTP packets under the first keys, the trunk hears 440 Hz at {secure_hears:.0}, \
         the other phone hears 1 kHz at {plain_hears:.0}"
    );
    assert!(during_hold <= 1, "nothing goes to a trunk that holds ({during_hold})");
    assert!(plain_hears_held < AMPLITUDE / 50.0, "a held trunk is not heard ({plain_hears_held:.0})");
    assert!(after_resume >= 55, "{after_resume}");
    assert!(secure_hears > AMPLITUDE / 2.0 && plain_hears > AMPLITUDE / 2.0, "{secure_hears:.0} {plain_hears:.0}");
    assert_eq!(engine.counters().dropped(DropReason::SrtpAuthFailed), 0);
    // A new certificate: a new transport and a new handshake.
    let other = DtlsIdentity::generate(true).unwrap();
    let (_, _, out) = control.join_sip(CONVERSATION, "secure", &dtls_offer(&other, "a=sendrecv"), &policy).unwrap();
    let changes = transport_changes(&out);
    assert!(changes.contains(&"remove_transport") && changes.iter().any(|c| c.starts_with("add_dtls")), "{changes:?}");
    apply(&mut engine, &out).unwrap();
    let keys = trunk_handshake(&mut engine, &other, true, &fingerprint, secure_addr);
    assert_ne!(keys.local_master_key, keys.remote_master_key);
}

mod waiting;

mod latching;
