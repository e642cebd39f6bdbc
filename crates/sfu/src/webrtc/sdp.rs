//! SDP for the WebRTC endpoint: parsing a browser's offer (ICE credentials, DTLS
//! fingerprint, m-sections with mids, codecs, extmaps, SSRCs and simulcast rids) and writing
//! the server's answer (ICE-lite, BUNDLE, rtcp-mux, `a=setup:passive`, one host candidate,
//! Opus/VP8/H.264/VP9/AV1 as offered, the header extensions the router understands, and the
//! SSRC the server sends on each m-section).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::rtp::{Codec, ExtensionMap};
use palaver_core::MediaKind;

/// Header extension URIs the router understands.
pub const EXT_AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
pub const EXT_MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
pub const EXT_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
pub const EXT_REPAIRED_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";

/// Why an offer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("offer has no {0}")]
    Missing(&'static str),
    #[error("malformed SDP line: {0}")]
    Malformed(String),
    #[error("offer has no m-section the server can use")]
    NothingUsable,
}

/// One `a=rtpmap` codec of an m-section (with its `a=fmtp`, if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedCodec {
    pub payload_type: u8,
    pub name: String,
    pub clock_rate: u32,
    pub channels: Option<u8>,
    pub fmtp: Option<String>,
}

impl OfferedCodec {
    /// The router codec for this entry (RTX, RED, FEC and unknown codecs are `None`).
    pub fn codec(&self) -> Option<Codec> {
        match self.name.to_ascii_lowercase().as_str() {
            "opus" => Some(Codec::Opus),
            "vp8" => Some(Codec::Vp8),
            "vp9" => Some(Codec::Vp9),
            "h264" => Some(Codec::H264),
            "av1" => Some(Codec::Av1),
            _ => None,
        }
    }

    /// `telephone-event/8000` (RFC 4733 DTMF).
    pub fn is_telephone_event(&self) -> bool {
        self.name.eq_ignore_ascii_case("telephone-event") && self.clock_rate == 8000
    }

    /// `apt=` of an RTX entry.
    pub fn rtx_for(&self) -> Option<u8> {
        if !self.name.eq_ignore_ascii_case("rtx") {
            return None;
        }
        self.fmtp.as_deref()?.split(';').find_map(|p| p.trim().strip_prefix("apt=")?.parse().ok())
    }
}

/// One m-section of the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedMedia {
    /// `m=audio` or `m=video` (camera or screen is decided later, by `control/offer.rs`);
    /// `None` for any other m-line (a data channel), which is answered inactive.
    pub kind: Option<MediaKind>,
    pub mid: String,
    /// The m-line's port (0: the section is declined).
    pub port: u16,
    /// The section's `c=` address, when it has its own.
    pub connection: Option<IpAddr>,
    pub protocol: String,
    pub formats: String,
    /// `sendrecv`, `sendonly`, `recvonly` or `inactive` (from the client's point of view).
    pub direction: String,
    pub codecs: Vec<OfferedCodec>,
    pub extmaps: Vec<(u8, String)>,
    /// The client's send SSRCs in order of appearance, and `(primary, rtx)` FID pairs.
    pub ssrcs: Vec<u32>,
    pub fid_groups: Vec<(u32, u32)>,
    /// Simulcast rids the client sends (`a=rid:<id> send`).
    pub send_rids: Vec<String>,
    pub simulcast: Option<String>,
}

impl OfferedMedia {
    pub fn client_sends(&self) -> bool {
        matches!(self.direction.as_str(), "sendrecv" | "sendonly")
    }

    pub fn client_receives(&self) -> bool {
        matches!(self.direction.as_str(), "sendrecv" | "recvonly")
    }

    /// The payload type of `telephone-event/8000` in an audio section that also offers Opus
    /// (answered, so the client's DTMF on it reaches the engine).
    pub fn telephone_event_pt(&self) -> Option<u8> {
        self.accepted_codecs().iter().find(|c| c.is_telephone_event()).map(|c| c.payload_type)
    }

    /// Extension ids the router should parse, from this section's extmaps.
    pub fn extension_map(&self) -> ExtensionMap {
        let mut map = ExtensionMap::default();
        for (id, uri) in &self.extmaps {
            match uri.as_str() {
                EXT_AUDIO_LEVEL => map.audio_level = *id,
                EXT_MID => map.mid = *id,
                EXT_RID => map.rid = *id,
                EXT_REPAIRED_RID => map.repaired_rid = *id,
                _ => {}
            }
        }
        map
    }

    /// Codecs the server accepts here, in the client's preference order: Opus for audio, the
    /// forwarded video codecs, and the RTX entry (RFC 4588, `apt=`) of each accepted video codec
    /// (the router unwraps RTX from publishers; see `router/upstream.rs`).
    pub fn accepted_codecs(&self) -> Vec<&OfferedCodec> {
        let opus = self.kind == Some(MediaKind::Audio) && self.codecs.iter().any(|c| c.codec() == Some(Codec::Opus));
        let wanted = |c: &OfferedCodec| match (self.kind, c.codec()) {
            (Some(MediaKind::Audio), Some(Codec::Opus)) => true,
            // RFC 4733 DTMF beside Opus (answered so the browser may send tones).
            (Some(MediaKind::Audio), None) => opus && c.is_telephone_event(),
            (Some(MediaKind::Video), Some(codec)) => codec.is_video(),
            _ => false,
        };
        let repairs_wanted = |c: &OfferedCodec| {
            self.kind == Some(MediaKind::Video)
                && c.rtx_for().is_some_and(|apt| self.codecs.iter().any(|p| p.payload_type == apt && wanted(p)))
        };
        self.codecs.iter().filter(|c| wanted(c) || repairs_wanted(c)).collect()
    }
}

/// Every description the parser reads, with nothing required: what a SIP trunk sends (plain
/// RTP, no ICE, no DTLS) as much as a browser's offer ([`Offer::parse`] then insists on ICE
/// and DTLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    pub ice_ufrag: Option<String>,
    pub ice_pwd: Option<String>,
    pub fingerprint: Option<String>,
    /// The session-level `c=` address.
    pub connection: Option<IpAddr>,
    pub media: Vec<OfferedMedia>,
    /// SDES keys (`a=crypto`, RFC 4568) in order, per m-section index.
    pub crypto: Vec<(usize, String)>,
    /// The DTLS role attribute (`a=setup`, RFC 4145/5763), session or media level (the last
    /// one read), lower-case: `actpass`, `active`, `passive` or `holdconn`.
    pub setup: Option<String>,
}

/// The address of a `c=IN IP4 <addr>` / `c=IN IP6 <addr>` line.
fn connection_address(value: &str) -> Option<IpAddr> {
    let mut parts = value.split_whitespace();
    let (Some("IN"), Some(_), Some(addr)) = (parts.next(), parts.next(), parts.next()) else { return None };
    addr.split('/').next()?.parse().ok()
}

/// A parsed offer: session-level ICE/DTLS (m-level values win when present) and m-sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub ice_ufrag: String,
    pub ice_pwd: String,
    /// `sha-256` fingerprint, upper-case `AA:BB:…`.
    pub fingerprint: String,
    pub media: Vec<OfferedMedia>,
}

fn split_attr(line: &str) -> (&str, &str) {
    line.split_once(':').unwrap_or((line, ""))
}

impl Offer {
    pub fn parse(sdp: &str) -> Result<Offer, SdpError> {
        let Description { ice_ufrag, ice_pwd, fingerprint, media, .. } = Description::parse(sdp)?;
        let offer = Offer {
            ice_ufrag: ice_ufrag.ok_or(SdpError::Missing("a=ice-ufrag"))?,
            ice_pwd: ice_pwd.ok_or(SdpError::Missing("a=ice-pwd"))?,
            fingerprint: fingerprint.ok_or(SdpError::Missing("a=fingerprint:sha-256"))?,
            media,
        };
        if !offer.media.iter().any(|m| m.kind.is_some() && !m.accepted_codecs().is_empty()) {
            return Err(SdpError::NothingUsable);
        }
        Ok(offer)
    }
}

impl Description {
    pub fn parse(sdp: &str) -> Result<Description, SdpError> {
        let (mut ufrag, mut pwd, mut fingerprint, mut connection) = (None, None, None, None);
        let mut crypto = Vec::new();
        let mut setup = None;
        let mut media: Vec<OfferedMedia> = Vec::new();
        for raw in sdp.lines() {
            let line = raw.trim_end_matches('\r');
            // A CR inside a line would be echoed into the answer (mid, formats) as a line break
            // of its own; RFC 8866 allows none there.
            if line.contains('\r') {
                return Err(SdpError::Malformed(line.into()));
            }
            if let Some(m) = line.strip_prefix("m=") {
                let mut parts = m.splitn(4, ' ');
                let kind = match parts.next() {
                    Some("audio") => Some(MediaKind::Audio),
                    Some("video") => Some(MediaKind::Video),
                    _ => None,
                };
                let port = parts.next().and_then(|p| p.split('/').next()?.parse().ok()).unwrap_or(0);
                let protocol = parts.next().ok_or_else(|| SdpError::Malformed(line.into()))?.to_owned();
                let formats = parts.next().unwrap_or("").to_owned();
                media.push(OfferedMedia {
                    kind,
                    mid: String::new(),
                    port,
                    connection: None,
                    protocol,
                    formats,
                    direction: "sendrecv".into(),
                    codecs: Vec::new(),
                    extmaps: Vec::new(),
                    ssrcs: Vec::new(),
                    fid_groups: Vec::new(),
                    send_rids: Vec::new(),
                    simulcast: None,
                });
                continue;
            }
            if let Some(c) = line.strip_prefix("c=") {
                let addr = connection_address(c);
                match media.last_mut() {
                    Some(m) => m.connection = addr,
                    None => connection = addr,
                }
                continue;
            }
            let Some(attr) = line.strip_prefix("a=") else { continue };
            let (name, value) = split_attr(attr);
            match name {
                "ice-ufrag" => ufrag = Some(value.to_owned()),
                "ice-pwd" => pwd = Some(value.to_owned()),
                "setup" => setup = Some(value.trim().to_ascii_lowercase()),
                "fingerprint" => {
                    if let Some((hash, fp)) = value.split_once(' ')
                        && hash.eq_ignore_ascii_case("sha-256")
                    {
                        fingerprint = Some(fp.trim().to_ascii_uppercase());
                    }
                }
                _ => {}
            }
            let Some(m) = media.last_mut() else { continue };
            match name {
                "mid" => m.mid = value.to_owned(),
                "sendrecv" | "sendonly" | "recvonly" | "inactive" => m.direction = name.to_owned(),
                "rtpmap" => {
                    let (pt, desc) = value.split_once(' ').ok_or_else(|| SdpError::Malformed(line.into()))?;
                    let payload_type = pt.parse().map_err(|_| SdpError::Malformed(line.into()))?;
                    let mut d = desc.split('/');
                    let name = d.next().unwrap_or("").to_owned();
                    let clock_rate = d.next().and_then(|c| c.parse().ok()).unwrap_or(0);
                    let channels = d.next().and_then(|c| c.parse().ok());
                    m.codecs.push(OfferedCodec { payload_type, name, clock_rate, channels, fmtp: None });
                }
                "fmtp" => {
                    if let Some((pt, params)) = value.split_once(' ')
                        && let Ok(pt) = pt.parse::<u8>()
                        && let Some(c) = m.codecs.iter_mut().find(|c| c.payload_type == pt)
                    {
                        c.fmtp = Some(params.to_owned());
                    }
                }
                "extmap" => {
                    if let Some((id, uri)) = value.split_once(' ')
                        && let Ok(id) = id.split('/').next().unwrap_or("").parse::<u8>()
                    {
                        m.extmaps.push((id, uri.split(' ').next().unwrap_or("").to_owned()));
                    }
                }
                "ssrc" => {
                    if let Some(Ok(ssrc)) = value.split(' ').next().map(str::parse::<u32>)
                        && !m.ssrcs.contains(&ssrc)
                    {
                        m.ssrcs.push(ssrc);
                    }
                }
                "ssrc-group" => {
                    let mut parts = value.split(' ');
                    if parts.next() == Some("FID")
                        && let (Some(Ok(a)), Some(Ok(b))) =
                            (parts.next().map(str::parse::<u32>), parts.next().map(str::parse::<u32>))
                    {
                        m.fid_groups.push((a, b));
                    }
                }
                "rid" => {
                    let mut parts = value.split(' ');
                    if let (Some(id), Some("send")) = (parts.next(), parts.next()) {
                        m.send_rids.push(id.to_owned());
                    }
                }
                "simulcast" => m.simulcast = Some(value.to_owned()),
                "crypto" => crypto.push((media.len() - 1, value.to_owned())),
                _ => {}
            }
        }
        Ok(Description { ice_ufrag: ufrag, ice_pwd: pwd, fingerprint, connection, media, crypto, setup })
    }
}

/// What the server sends on one m-section of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerTrack {
    pub ssrc: u32,
    pub stream_id: String,
    pub track_id: String,
}

/// The server's side of the answer.
#[derive(Debug, Clone)]
pub struct AnswerParams<'a> {
    pub ice_ufrag: &'a str,
    pub ice_pwd: &'a str,
    pub fingerprint: &'a str,
    pub candidate: SocketAddr,
    pub session_id: u64,
    /// Per offered m-section (same order): the track the server sends there, if any.
    pub send: &'a [Option<AnswerTrack>],
}

/// Writes the answer SDP.
pub fn write_answer(offer: &Offer, p: &AnswerParams<'_>) -> String {
    let mut s = String::with_capacity(2048);
    let ip = p.candidate.ip();
    let ip_kind = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let _ = write!(s, "v=0\r\no=- {} 2 IN {ip_kind} {ip}\r\ns=-\r\nt=0 0\r\n", p.session_id);
    let bundled: Vec<&str> = offer
        .media
        .iter()
        .filter(|m| m.kind.is_some() && !m.accepted_codecs().is_empty())
        .map(|m| m.mid.as_str())
        .collect();
    let _ = write!(s, "a=group:BUNDLE {}\r\na=ice-lite\r\na=msid-semantic: WMS *\r\n", bundled.join(" "));
    for (index, m) in offer.media.iter().enumerate() {
        let codecs = m.accepted_codecs();
        let kind = match m.kind {
            Some(MediaKind::Audio) => "audio",
            Some(MediaKind::Video | MediaKind::Screen) => "video",
            None => "application",
        };
        if m.kind.is_none() || codecs.is_empty() {
            let _ = write!(
                s,
                "m={kind} 0 {} {}\r\nc=IN {ip_kind} {ip}\r\na=mid:{}\r\na=inactive\r\n",
                m.protocol, m.formats, m.mid
            );
            continue;
        }
        let pts: Vec<String> = codecs.iter().map(|c| c.payload_type.to_string()).collect();
        let port = p.candidate.port();
        let _ = write!(s, "m={kind} {port} UDP/TLS/RTP/SAVPF {}\r\nc=IN {ip_kind} {ip}\r\n", pts.join(" "));
        let _ = write!(s, "a=rtcp:{port} {ip_kind} {ip}\r\n");
        let _ = write!(s, "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\n", p.ice_ufrag, p.ice_pwd);
        let _ = write!(s, "a=fingerprint:sha-256 {}\r\na=setup:passive\r\na=mid:{}\r\n", p.fingerprint, m.mid);
        for (id, uri) in &m.extmaps {
            let keep = match m.kind {
                Some(MediaKind::Audio) => uri == EXT_AUDIO_LEVEL || uri == EXT_MID,
                _ => uri == EXT_MID || uri == EXT_RID || uri == EXT_REPAIRED_RID,
            };
            if keep {
                let _ = write!(s, "a=extmap:{id} {uri}\r\n");
            }
        }
        let sends = p.send.get(index).and_then(Option::as_ref).filter(|_| m.client_receives());
        let direction = match (m.client_sends(), sends.is_some()) {
            (true, true) => "sendrecv",
            (true, false) => "recvonly",
            (false, true) => "sendonly",
            (false, false) => "inactive",
        };
        let _ = write!(s, "a={direction}\r\n");
        if let Some(t) = sends {
            let _ = write!(s, "a=msid:{} {}\r\n", t.stream_id, t.track_id);
        }
        s.push_str("a=rtcp-mux\r\na=rtcp-rsize\r\n");
        for c in codecs {
            let _ = write!(s, "a=rtpmap:{} {}/{}", c.payload_type, c.name, c.clock_rate);
            if let Some(ch) = c.channels {
                let _ = write!(s, "/{ch}");
            }
            s.push_str("\r\n");
            if m.kind == Some(MediaKind::Video) && c.codec().is_some() {
                for fb in ["goog-remb", "ccm fir", "nack", "nack pli"] {
                    let _ = write!(s, "a=rtcp-fb:{} {fb}\r\n", c.payload_type);
                }
            }
            if let Some(f) = &c.fmtp {
                let _ = write!(s, "a=fmtp:{} {f}\r\n", c.payload_type);
            }
        }
        if m.client_sends() && !m.send_rids.is_empty() {
            for rid in &m.send_rids {
                let _ = write!(s, "a=rid:{rid} recv\r\n");
            }
            let _ = write!(s, "a=simulcast:recv {}\r\n", m.send_rids.join(";"));
        }
        if let Some(t) = sends {
            let _ = write!(
                s,
                "a=ssrc:{} cname:palaver\r\na=ssrc:{} msid:{} {}\r\n",
                t.ssrc, t.ssrc, t.stream_id, t.track_id
            );
        }
        if index == 0 || bundled.first() == Some(&m.mid.as_str()) {
            let _ = write!(s, "a=candidate:1 1 udp 2130706431 {ip} {port} typ host\r\na=end-of-candidates\r\n");
        }
    }
    s
}

#[cfg(test)]
mod tests;
