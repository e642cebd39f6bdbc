//! A SIP trunk leg as an [`Attach`]: the trunk's SDP (offer or answer, parsed by
//! `webrtc/sdp.rs`'s [`Description`]) names one audio m-section with RTP/AVP (or RTP/SAVP
//! with SDES keys, [`sdes`], or `UDP/TLS/RTP/SAVP` with DTLS-SRTP, RFC 5763/5764) to an
//! address and port, codecs by payload type (static 0/8/9
//! without `a=rtpmap` too) and maybe RFC 4733 `telephone-event`. [`negotiate`] picks the
//! codec by the trunk's preference and the SRTP keys by its [`SrtpPolicy`], [`sip_attach`]
//! turns it into a plain-RTP transport (`TransportKind::Rtp`), an SDES-SRTP one
//! (`TransportKind::Srtp`) or a DTLS-SRTP one without ICE (`TransportKind::DtlsRtp`), one audio producer in that codec (it feeds the mixer) and one
//! audio receive slot carrying the mix encoded in the same codec (shared with every other
//! listener of that codec). [`write_sdp`] writes the server's answer or offer (one
//! m-section, `a=rtcp` on the same port so RTCP arrives on the worker's one socket).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use rand::Rng;

pub mod latching;
pub mod legs;
pub mod reseat;
pub mod sdes;

use super::{Attach, ReceiveSlot, TransportKind};
use crate::mixer::AudioCodec;
use crate::router::{LayerSpec, ProducerId, ProducerSpec, TransportId};
use crate::rtp::{Codec, ExtensionMap};
use crate::srtp::SrtpKeys;
use crate::webrtc::sdp::{Description, OfferedMedia};
use palaver_core::MediaKind;
pub use sdes::SdesCrypto;

/// The mid of a trunk leg's one audio slot (SIP SDP has no mids; the name is the server's).
pub const TRUNK_AUDIO_MID: &str = "audio";

/// Why a trunk's SDP cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrunkSdpError {
    #[error("no audio m-section with a port")]
    NoAudio,
    #[error("no connection address for the audio m-section")]
    NoAddress,
    #[error("no common codec (offered payload types: {0})")]
    NoCommonCodec(String),
    #[error("media protocol `{0}` is not accepted (RTP/AVP, or RTP/SAVP when SRTP is allowed)")]
    Protocol(String),
    #[error("RTP/SAVP without a usable a=crypto (AES_CM_128_HMAC_SHA1_80/_32, AEAD_AES_128_GCM; no MKI)")]
    NoUsableCrypto,
    #[error("the trunk requires SRTP (srtp = \"required\") and the SDP has no usable a=crypto")]
    SrtpRequired,
    #[error("UDP/TLS/RTP/SAVP without a=fingerprint:sha-256")]
    NoFingerprint,
    #[error("a=setup:holdconn: no DTLS association is wanted")]
    DtlsHoldconn,
}

/// How a trunk's media is protected (the trunk's `srtp` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpPolicy {
    /// Plain RTP/AVP only; an RTP/SAVP offer is refused (488).
    #[default]
    Off,
    /// SDES-SRTP when the peer offers (or accepts) keys, plain RTP otherwise; the server's
    /// offers are RTP/AVP with `a=crypto` (best-effort SRTP, as SBCs do it).
    Optional,
    /// SDES-SRTP only: RTP/SAVP offers, and anything without usable keys is refused (488).
    /// A `UDP/TLS/RTP/SAVP` (DTLS-SRTP) offer is accepted too.
    Required,
    /// SRTP only, like `Required`, and the server's own offers are DTLS-SRTP
    /// (`UDP/TLS/RTP/SAVP`, `a=fingerprint`, `a=setup:actpass`) instead of SDES.
    Dtls,
}

/// A trunk's media preference: codecs in order and its SRTP policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrunkPolicy {
    pub codecs: Vec<AudioCodec>,
    pub srtp: SrtpPolicy,
    /// The trunk's name: its legs' RTP reception is measured under it (`trunk=<name>`).
    pub trunk: Option<String>,
}

impl TrunkPolicy {
    /// Reads a trunk's media preference as the SIP gateway hands it over: codec names
    /// (`PCMU`, `PCMA`, `G722`, `opus`) in order, `srtp=optional|required|off` and
    /// `trunk=<name>`.
    /// Unknown names are skipped (the gateway validated its configuration).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Self {
        let mut policy = TrunkPolicy::default();
        for name in names {
            let name = name.as_ref();
            if let Some(trunk) = name.strip_prefix("trunk=") {
                policy.trunk = Some(trunk.to_owned());
                continue;
            }
            if let Some(srtp) = name.strip_prefix("srtp=") {
                policy.srtp = match srtp.to_ascii_lowercase().as_str() {
                    "optional" => SrtpPolicy::Optional,
                    "required" => SrtpPolicy::Required,
                    "dtls" => SrtpPolicy::Dtls,
                    _ => SrtpPolicy::Off,
                };
                continue;
            }
            let codec = match name.to_ascii_uppercase().as_str() {
                "PCMU" => AudioCodec::Pcmu,
                "PCMA" => AudioCodec::Pcma,
                "G722" => AudioCodec::G722,
                "OPUS" => AudioCodec::Opus,
                _ => continue,
            };
            policy.codecs.push(codec);
        }
        policy
    }

    /// The names [`Self::from_names`] reads back.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.codecs.iter().map(|c| codec_name(*c).to_owned()).collect();
        names.push(
            match self.srtp {
                SrtpPolicy::Off => "srtp=off",
                SrtpPolicy::Optional => "srtp=optional",
                SrtpPolicy::Required => "srtp=required",
                SrtpPolicy::Dtls => "srtp=dtls",
            }
            .to_owned(),
        );
        names.extend(self.trunk.iter().map(|t| format!("trunk={t}")));
        names
    }
}

/// The codec's name in a trunk's configuration and in logs.
pub fn codec_name(codec: AudioCodec) -> &'static str {
    match codec {
        AudioCodec::Pcmu => "PCMU",
        AudioCodec::Pcma => "PCMA",
        AudioCodec::G722 => "G722",
        AudioCodec::Opus => "opus",
    }
}

/// What was agreed for one trunk leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkMedia {
    /// Where the peer receives RTP (its SDP's `c=` and `m=` port).
    pub remote: SocketAddr,
    pub codec: AudioCodec,
    pub payload_type: u8,
    /// The peer's RFC 4733 `telephone-event` payload type at the agreed codec's RTP clock
    /// (`/8000` for G.711 and G.722, `/48000` for Opus), if it offered one; on an Opus leg
    /// whose peer lists only `telephone-event/8000`, that one (see `telephone_event_clock`).
    pub telephone_event: Option<u8>,
    /// The clock of `telephone_event`: the codec's, or 8000 on an Opus leg that fell back to
    /// `/8000` (its events' durations count 8 kHz units; their RTP timestamps stay on the
    /// stream's 48 kHz clock, as SBCs that do this send and expect them).
    pub telephone_event_clock: u32,
    /// The peer's direction attribute (`sendrecv`, `sendonly` = it holds us, ...).
    pub direction: String,
    /// The peer's SDES key (the first usable `a=crypto` of the section), when SRTP is agreed.
    pub crypto: Option<SdesCrypto>,
    /// DTLS-SRTP, when the peer's SDP is `UDP/TLS/RTP/SAVP`.
    pub dtls: Option<TrunkDtls>,
}

/// The peer's side of a DTLS-SRTP trunk leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkDtls {
    /// Its certificate's `a=fingerprint:sha-256`, upper-case `AA:BB:…`.
    pub fingerprint: String,
    /// The server is the DTLS client: the peer said `a=setup:passive`. With `active` (or
    /// `actpass`, which the server answers `passive`) the peer starts the handshake.
    pub client: bool,
}

impl TrunkDtls {
    /// The server's `a=setup` value for this leg (in its answer).
    pub fn local_setup(&self) -> &'static str {
        if self.client { "active" } else { "passive" }
    }
}

/// How a trunk's SDP protects its media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protection {
    Plain,
    Sdes,
    Dtls,
}

/// The codec of one offered payload type: its `a=rtpmap`, or the RFC 3551 static types.
fn codec_of(media: &OfferedMedia, pt: u8) -> Option<AudioCodec> {
    match media.codecs.iter().find(|c| c.payload_type == pt) {
        // G.711 and G.722 only on their static payload types: the mix output's codec is told
        // by it.
        Some(c) => match (c.name.to_ascii_lowercase().as_str(), c.clock_rate) {
            ("pcmu", 8000) if pt == 0 => Some(AudioCodec::Pcmu),
            ("pcma", 8000) if pt == 8 => Some(AudioCodec::Pcma),
            ("g722", 8000) if pt == 9 => Some(AudioCodec::G722),
            ("opus", 48_000) if pt >= 96 => Some(AudioCodec::Opus),
            _ => None,
        },
        None => match pt {
            0 => Some(AudioCodec::Pcmu),
            8 => Some(AudioCodec::Pcma),
            9 => Some(AudioCodec::G722),
            _ => None,
        },
    }
}

/// The payload types of an m-line's format list.
fn formats(media: &OfferedMedia) -> impl Iterator<Item = u8> + '_ {
    media.formats.split_whitespace().filter_map(|f| f.parse().ok())
}

/// Picks the trunk leg's media from the peer's SDP: the first audio m-section with a port,
/// the first codec of the policy's preference that the peer lists, its telephone-event type
/// and — unless the policy is off — its first usable SDES key. RTP/SAVP needs a usable key
/// (and a policy that allows SRTP); `srtp = "required"` needs one whatever the protocol.
pub fn negotiate(sdp: &Description, policy: &TrunkPolicy) -> Result<TrunkMedia, TrunkSdpError> {
    let (index, media) = sdp
        .media
        .iter()
        .enumerate()
        .find(|(_, m)| m.kind == Some(MediaKind::Audio) && m.port != 0)
        .ok_or(TrunkSdpError::NoAudio)?;
    let protocol = media.protocol.to_ascii_uppercase();
    let protection = match protocol.as_str() {
        "RTP/AVP" | "RTP/AVPF" => Protection::Plain,
        "RTP/SAVP" | "RTP/SAVPF" if policy.srtp != SrtpPolicy::Off => Protection::Sdes,
        "UDP/TLS/RTP/SAVP" | "UDP/TLS/RTP/SAVPF" if policy.srtp != SrtpPolicy::Off => Protection::Dtls,
        _ => return Err(TrunkSdpError::Protocol(media.protocol.clone())),
    };
    let dtls = match protection {
        Protection::Dtls => Some(TrunkDtls {
            fingerprint: sdp.fingerprint.clone().ok_or(TrunkSdpError::NoFingerprint)?,
            client: match sdp.setup.as_deref() {
                Some("passive") => true,
                Some("holdconn") => return Err(TrunkSdpError::DtlsHoldconn),
                _ => false,
            },
        }),
        _ => None,
    };
    let crypto = if policy.srtp == SrtpPolicy::Off || dtls.is_some() {
        None
    } else {
        sdp.crypto.iter().filter(|(i, _)| *i == index).find_map(|(_, value)| SdesCrypto::parse(value))
    };
    match (&crypto, protection, policy.srtp) {
        (None, Protection::Sdes, _) => return Err(TrunkSdpError::NoUsableCrypto),
        (None, Protection::Plain, SrtpPolicy::Required | SrtpPolicy::Dtls) => return Err(TrunkSdpError::SrtpRequired),
        _ => {}
    }
    let preference = &policy.codecs;
    let address: IpAddr = media.connection.or(sdp.connection).ok_or(TrunkSdpError::NoAddress)?;
    let (payload_type, codec) = preference
        .iter()
        .find_map(|wanted| formats(media).find(|&pt| codec_of(media, pt) == Some(*wanted)).map(|pt| (pt, *wanted)))
        .ok_or_else(|| TrunkSdpError::NoCommonCodec(media.formats.clone()))?;
    // RFC 4733 §2.1: the events' clock is the audio's, so an Opus leg wants `/48000`. Many
    // SBCs list only `telephone-event/8000` beside Opus all the same: an Opus leg then agrees
    // that one rather than going without DTMF.
    let events_at = |clock: u32| {
        media
            .codecs
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case("telephone-event") && c.clock_rate == clock)
            .map(|c| c.payload_type)
    };
    let clock = rtp_clock(codec);
    let (telephone_event, telephone_event_clock) = match events_at(clock) {
        None if codec == AudioCodec::Opus => (events_at(8_000), 8_000),
        found => (found, clock),
    };
    Ok(TrunkMedia {
        remote: SocketAddr::new(address, media.port),
        codec,
        payload_type,
        telephone_event,
        telephone_event_clock,
        direction: media.direction.clone(),
        crypto,
        dtls,
    })
}

/// The RTP clock of a trunk codec: 48 kHz for Opus, 8 kHz for G.711 and G.722 (RFC 3551).
pub fn rtp_clock(codec: AudioCodec) -> u32 {
    if codec == AudioCodec::Opus { 48_000 } else { 8_000 }
}

/// The payload type palaver's own offers give `telephone-event/48000` beside
/// `telephone-event/8000` when they list Opus and a phone codec together.
pub const TELEPHONE_EVENT_48K_OFFER_PT: u8 = 110;

fn router_codec(codec: AudioCodec) -> Codec {
    match codec {
        AudioCodec::Opus => Codec::Opus,
        AudioCodec::Pcmu => Codec::Pcmu,
        AudioCodec::Pcma => Codec::Pcma,
        AudioCodec::G722 => Codec::G722,
    }
}

/// The agreed trunk media as an [`Attach`]: plain RTP to the peer (SDES-SRTP with `keys`,
/// DTLS-SRTP when `media.dtls` says so),
/// one audio producer (its SSRC is learned from the first packet) and one audio slot with the
/// mix in the same codec. A G.711 mix needs the static payload type (0 or 8) on the wire,
/// which is what trunks use.
pub fn sip_attach(media: &TrunkMedia, may_send: bool, keys: Option<SrtpKeys>, rng: &mut impl Rng) -> Attach {
    let producer = ProducerSpec {
        id: ProducerId(0),
        transport: TransportId(0),
        kind: MediaKind::Audio,
        mid: None,
        codecs: vec![(media.payload_type, router_codec(media.codec))],
        layers: vec![LayerSpec { rid: None, ssrc: None, rtx_ssrc: None, width: 0, height: 0, max_bitrate_bps: 0 }],
        extensions: ExtensionMap::default(),
    };
    let slot = ReceiveSlot {
        mid: TRUNK_AUDIO_MID.to_owned(),
        kind: MediaKind::Audio,
        ssrc: rng.gen_range(1..u32::MAX),
        numbering: None,
    };
    Attach {
        transport: match (&media.dtls, keys) {
            (Some(dtls), _) => TransportKind::DtlsRtp {
                remote: media.remote,
                remote_fingerprint: dtls.fingerprint.clone(),
                client: dtls.client,
            },
            (None, Some(keys)) => TransportKind::Srtp { remote: media.remote, keys },
            (None, None) => TransportKind::Rtp { remote: media.remote },
        },
        publish: if may_send { vec![producer] } else { Vec::new() },
        receive: vec![slot],
        mix_payload_type: media.payload_type,
        announce_slots: false,
    }
}

/// The codec's `a=rtpmap` value.
fn rtpmap(codec: AudioCodec) -> &'static str {
    match codec {
        AudioCodec::Pcmu => "PCMU/8000",
        AudioCodec::Pcma => "PCMA/8000",
        AudioCodec::G722 => "G722/8000",
        AudioCodec::Opus => "opus/48000/2",
    }
}

/// What the server's SDP says.
#[derive(Debug, Clone)]
pub struct LocalSdp<'a> {
    /// The worker's socket the peer sends RTP and RTCP to.
    pub address: SocketAddr,
    pub session_id: u64,
    /// Codecs in order, with their payload types (an answer lists just the agreed one).
    pub codecs: &'a [(u8, AudioCodec)],
    /// Our `telephone-event` payload type, when offered or agreed: at 8 kHz for G.711/G.722,
    /// at 48 kHz for Opus; an offer listing both kinds of codec carries both clocks (the
    /// 48 kHz one as [`TELEPHONE_EVENT_48K_OFFER_PT`]).
    pub telephone_event: Option<u8>,
    /// The clock of an answer's agreed `telephone_event` (the leg's
    /// [`TrunkMedia::telephone_event_clock`]: `/8000` on an Opus leg that fell back to it);
    /// `None` in an offer, whose events follow its codecs.
    pub telephone_event_clock: Option<u32>,
    pub direction: &'a str,
    /// `RTP/AVP`, `RTP/SAVP` or `UDP/TLS/RTP/SAVP`.
    pub protocol: &'a str,
    /// Our SDES keys (`a=crypto`): the one agreed in an answer, every suite in an offer.
    pub crypto: &'a [SdesCrypto],
    /// DTLS-SRTP: our certificate's fingerprint and our `a=setup`.
    pub dtls: Option<LocalDtls<'a>>,
}

/// The server's DTLS attributes in a trunk SDP.
#[derive(Debug, Clone, Copy)]
pub struct LocalDtls<'a> {
    /// `AA:BB:…` (SHA-256).
    pub fingerprint: &'a str,
    /// `actpass` in an offer, `active` or `passive` in an answer.
    pub setup: &'a str,
}

/// Writes the server's SDP for a trunk leg (an answer or an offer).
pub fn write_sdp(local: &LocalSdp<'_>) -> String {
    let ip = local.address.ip();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut sdp = String::with_capacity(320);
    let _ = write!(
        sdp,
        "v=0\r\no=palaver {id} {id} IN {family} {ip}\r\ns=palaver\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio {port} {protocol}",
        id = local.session_id,
        port = local.address.port(),
        protocol = local.protocol,
    );
    for (pt, _) in local.codecs {
        let _ = write!(sdp, " {pt}");
    }
    let events = telephone_events(local);
    for (te, _) in events.iter().flatten() {
        let _ = write!(sdp, " {te}");
    }
    sdp.push_str("\r\n");
    for (pt, codec) in local.codecs {
        let _ = write!(sdp, "a=rtpmap:{pt} {}\r\n", rtpmap(*codec));
    }
    for (te, clock) in events.iter().flatten() {
        let _ = write!(sdp, "a=rtpmap:{te} telephone-event/{clock}\r\na=fmtp:{te} 0-16\r\n");
    }
    let _ = write!(sdp, "a=ptime:20\r\na=rtcp:{}\r\na={}\r\n", local.address.port(), local.direction);
    for crypto in local.crypto {
        let _ = write!(sdp, "a=crypto:{}\r\n", crypto.attribute());
    }
    if let Some(dtls) = local.dtls {
        let _ = write!(sdp, "a=fingerprint:sha-256 {}\r\na=setup:{}\r\n", dtls.fingerprint, dtls.setup);
    }
    sdp
}

/// The `telephone-event` formats of an SDP of ours: (payload type, clock) at 8 kHz when a
/// G.711/G.722 codec is listed, at 48 kHz when Opus is.
fn telephone_events(local: &LocalSdp<'_>) -> [Option<(u8, u32)>; 2] {
    let Some(te) = local.telephone_event else { return [None, None] };
    if let Some(clock) = local.telephone_event_clock {
        return [Some((te, clock)), None];
    }
    let narrow = local.codecs.iter().any(|(_, c)| *c != AudioCodec::Opus);
    let opus = local.codecs.iter().any(|(_, c)| *c == AudioCodec::Opus);
    let wide_pt = if narrow { TELEPHONE_EVENT_48K_OFFER_PT } else { te };
    [narrow.then_some((te, 8_000)), opus.then_some((wide_pt, 48_000))]
}

/// Our direction in answer to the peer's.
pub fn answer_direction(peer: &str) -> &'static str {
    match peer {
        "sendonly" => "recvonly",
        "recvonly" => "sendonly",
        "inactive" => "inactive",
        _ => "sendrecv",
    }
}

#[cfg(test)]
mod tests;
