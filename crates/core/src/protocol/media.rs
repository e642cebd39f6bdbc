//! Media-session vocabulary of the protocol: ICE candidates, receive slots (`media.slots`,
//! `media.subscribe`), the QUIC participant's tracks (`media.attach`) and the QUIC `auth` frame.

use super::{FrameError, MAX_FRAME_BYTES};
pub use crate::media_kind::MediaKind;
use serde::{Deserialize, Serialize};

/// An ICE candidate, as in the browser's `RTCIceCandidateInit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_m_line_index: Option<u16>,
}

/// One receive slot (an m-section the server sends on) and whose track it carries now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaSlot {
    /// The m-section's `a=mid` (the browser's `RTCRtpTransceiver.mid`).
    pub mid: String,
    /// `video` (a remote camera) or `screen` (a remote screen share).
    pub kind: MediaKind,
    /// The participant whose track the slot carries; `null` while the slot is empty.
    pub participant_id: Option<String>,
}

/// One RTP stream of a QUIC participant's media session (`media.attach` / `media.attached`).
///
/// Sent tracks (`media.attach`) of kind `video` or `screen` may carry a `rid`: the tracks of
/// one kind with rids are the simulcast layers of ONE camera (or screen), see
/// [`group_sent_tracks`]. Tracks the server sends (`media.attached`) carry the `mid` their
/// receive slot is named by in `media.slots` / `media.subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaTrack {
    pub kind: MediaKind,
    pub ssrc: u32,
    pub payload_type: u8,
    /// Simulcast layer id of a sent video/screen track (`q`, `h`, `f`, or another short token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    /// Picture size of a sent simulcast layer (defaults: q 320×180, h 640×360, f 1280×720).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u16>,
    /// The receive slot a server track feeds (`quic-audio`, `quic-video-0`, `quic-screen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
}

impl MediaTrack {
    /// A track of `kind` with no rid, size or mid.
    pub fn new(kind: MediaKind, ssrc: u32, payload_type: u8) -> Self {
        Self { kind, ssrc, payload_type, rid: None, width: None, height: None, mid: None }
    }

    /// An Opus audio track with the default payload type.
    pub fn opus(ssrc: u32) -> Self {
        Self::new(MediaKind::Audio, ssrc, super::quic::DEFAULT_OPUS_PT)
    }

    /// A single-layer VP8 camera (`MediaKind::Video`) or screen track with the default payload type.
    pub fn vp8(kind: MediaKind, ssrc: u32) -> Self {
        Self::new(kind, ssrc, super::quic::DEFAULT_VP8_PT)
    }

    /// One simulcast layer `rid` of a VP8 camera or screen (default payload type, default size).
    pub fn vp8_layer(kind: MediaKind, ssrc: u32, rid: &str) -> Self {
        Self { rid: Some(rid.to_owned()), ..Self::vp8(kind, ssrc) }
    }

    /// The same track with an explicit picture size.
    pub fn with_size(self, width: u16, height: u16) -> Self {
        Self { width: Some(width), height: Some(height), ..self }
    }
}

/// Most simulcast layers one sent camera or screen may have.
pub const MAX_SIMULCAST_LAYERS: usize = 3;
/// Longest `rid` of a sent track.
pub const MAX_RID_BYTES: usize = 16;

/// One producer a `media.attach` declares: a track without rid, or the rid layers of one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentTrackGroup<'a> {
    pub kind: MediaKind,
    /// One track, or 1..=3 simulcast layers (declaration order).
    pub layers: Vec<&'a MediaTrack>,
}

/// Groups the sent tracks of a `media.attach` into producers and checks the simulcast
/// combinations: a `rid` (1..=16 ASCII letters, digits, `-`, `_`) only on video/screen, at most
/// [`MAX_SIMULCAST_LAYERS`] distinct rids per kind sharing one payload type, sizes non-zero
/// and only on video/screen, no `mid` (the server names slots). Tracks without rid are one
/// producer each, as before. The error text explains the first problem (`InvalidParameter`).
pub fn group_sent_tracks(tracks: &[MediaTrack]) -> Result<Vec<SentTrackGroup<'_>>, String> {
    let mut groups: Vec<SentTrackGroup<'_>> = Vec::new();
    let mut simulcast: Vec<(MediaKind, usize)> = Vec::new();
    for t in tracks {
        if t.mid.is_some() {
            return Err(format!("track ssrc {}: mid is set by the server, not by the client", t.ssrc));
        }
        let visual = t.kind != MediaKind::Audio;
        if !visual && (t.rid.is_some() || t.width.is_some() || t.height.is_some()) {
            return Err(format!("audio track ssrc {}: rid, width and height are for video and screen", t.ssrc));
        }
        if t.width == Some(0) || t.height == Some(0) {
            return Err(format!("track ssrc {}: width and height must be at least 1", t.ssrc));
        }
        let Some(rid) = &t.rid else {
            groups.push(SentTrackGroup { kind: t.kind, layers: vec![t] });
            continue;
        };
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if rid.is_empty() || rid.len() > MAX_RID_BYTES || !rid.chars().all(valid) {
            return Err(format!("track ssrc {}: rid must be 1 to {MAX_RID_BYTES} of A-Z a-z 0-9 - _", t.ssrc));
        }
        match simulcast.iter().find(|(kind, _)| *kind == t.kind) {
            None => {
                simulcast.push((t.kind, groups.len()));
                groups.push(SentTrackGroup { kind: t.kind, layers: vec![t] });
            }
            Some(&(_, index)) => {
                let layers = &mut groups[index].layers;
                if layers.len() == MAX_SIMULCAST_LAYERS {
                    return Err(format!("at most {MAX_SIMULCAST_LAYERS} simulcast layers per kind"));
                }
                if layers.iter().any(|l| l.rid == t.rid) {
                    return Err(format!("rid {rid:?} is repeated"));
                }
                if layers[0].payload_type != t.payload_type {
                    return Err("the simulcast layers of one kind must share one payloadType".into());
                }
                layers.push(t);
            }
        }
    }
    Ok(groups)
}

/// Receive slots a QUIC participant asks for in `media.attach` (`"receive":{"video":2,"screen":true}`);
/// absent = audio only (the room's mix).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaReceive {
    /// Camera slots (0..=[`MAX_RECEIVE_VIDEO_SLOTS`]), filled last-N like a browser's.
    #[serde(default)]
    pub video: u8,
    /// One slot for the conversation's active screen share.
    #[serde(default)]
    pub screen: bool,
}

/// Most camera receive slots one `media.attach` may ask for.
pub const MAX_RECEIVE_VIDEO_SLOTS: u8 = 8;

impl MediaReceive {
    /// Audio only (the default).
    pub fn is_audio_only(&self) -> bool {
        self.video == 0 && !self.screen
    }

    /// Checks the bound on camera slots (`InvalidParameter` text).
    pub fn check(&self) -> Result<(), String> {
        if self.video > MAX_RECEIVE_VIDEO_SLOTS {
            return Err(format!("receive.video must be 0 to {MAX_RECEIVE_VIDEO_SLOTS}"));
        }
        Ok(())
    }
}

/// The first frame on a QUIC signaling stream: the access token (a WebSocket authenticates
/// in its upgrade request instead). Answered with `welcome`, or an `error` frame and a close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "auth")]
pub struct AuthFrame {
    pub token: String,
    /// How this connection's media travels after `media.attach` (absent: QUIC datagrams).
    #[serde(default, skip_serializing_if = "MediaCarrier::is_datagram")]
    pub media: MediaCarrier,
}

/// How a QUIC participant's media travels (`docs/quic.md`, "Media carriers"), chosen once per
/// connection in its [`AuthFrame`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaCarrier {
    /// Plain RTP/RTCP in QUIC DATAGRAM frames on the connection (the default).
    #[default]
    Datagram,
    /// SRTP (AEAD_AES_128_GCM) over UDP to the hosting media worker's socket, after an ICE-lite
    /// STUN binding with the credentials of `media.attached`'s `udp`; the SRTP master keys are
    /// exported from the connection's TLS session ([`super::quic::SrtpKeying`]).
    Srtp,
}

impl MediaCarrier {
    pub fn is_datagram(&self) -> bool {
        *self == Self::Datagram
    }
}

/// Where a [`MediaCarrier::Srtp`] participant sends its media (`media.attached`'s `udp`):
/// the media worker's UDP address and the ICE-lite credentials its STUN binding request must
/// carry (USERNAME `iceUfrag:<anything>`, MESSAGE-INTEGRITY keyed with `icePwd`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UdpMedia {
    pub address: std::net::SocketAddr,
    pub ice_ufrag: String,
    pub ice_pwd: String,
}

impl AuthFrame {
    /// Parse the first frame of a QUIC signaling stream (its `type` must be `auth`).
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        if text.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge(text.len()));
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| FrameError::MalformedJson(e.to_string()))?;
        let ty = value.get("type").and_then(|t| t.as_str()).ok_or(FrameError::MissingType)?.to_string();
        if ty != "auth" {
            return Err(FrameError::UnknownType(ty));
        }
        serde_json::from_value(value).map_err(|e| FrameError::InvalidFields {
            ty,
            detail: e.to_string(),
            request_id: None,
        })
    }
}

/// What a client wants on one of its video receive slots (`media.subscribe`); absent
/// members leave that setting unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotSubscription {
    /// The slot's m-section `a=mid`.
    pub mid: String,
    /// The tallest picture worth sending (the tile's rendered height in device pixels): the
    /// server picks the simulcast layer that fits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_height: Option<u16>,
    /// `true` stops the slot's video (its tile is off screen), `false` resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// Most entries one `media.subscribe` may carry.
pub const MAX_SLOT_SUBSCRIPTIONS: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientFrame, ClientMessage, ServerMessage};
    use serde_json::json;

    #[test]
    fn simulcast_attach_and_receive_request_have_documented_shapes() {
        let text = r#"{"type":"media.attach","requestId":"r2","tracks":[
            {"kind":"audio","ssrc":1,"payloadType":111},
            {"kind":"video","ssrc":2,"payloadType":96,"rid":"q"},
            {"kind":"video","ssrc":3,"payloadType":96,"rid":"h","width":640,"height":360}],
            "receive":{"video":2,"screen":true}}"#;
        let frame = ClientFrame::parse(text).unwrap();
        let expected_tracks = vec![
            MediaTrack::opus(1),
            MediaTrack::vp8_layer(MediaKind::Video, 2, "q"),
            MediaTrack::vp8_layer(MediaKind::Video, 3, "h").with_size(640, 360),
        ];
        let receive = MediaReceive { video: 2, screen: true };
        assert_eq!(
            frame.message,
            ClientMessage::MediaAttach { tracks: expected_tracks.clone(), receive, call_id: None }
        );
        // An audio-only request serializes exactly as before (no `receive`, no optional members).
        let old = ClientMessage::MediaAttach {
            tracks: vec![MediaTrack::opus(5)],
            receive: MediaReceive::default(),
            call_id: None,
        };
        assert_eq!(
            serde_json::to_value(&old).unwrap(),
            json!({"type":"media.attach","tracks":[{"kind":"audio","ssrc":5,"payloadType":111}]})
        );
        let partial = ClientFrame::parse(r#"{"type":"media.attach","receive":{"screen":true}}"#).unwrap();
        assert_eq!(
            partial.message,
            ClientMessage::MediaAttach {
                tracks: vec![],
                receive: MediaReceive { video: 0, screen: true },
                call_id: None
            }
        );
        let too_many = ClientFrame::parse(r#"{"type":"media.attach","receive":{"video":300}}"#);
        assert_eq!(too_many.unwrap_err().code(), crate::ErrorCode::InvalidParameter);
        assert!(MediaReceive { video: 9, screen: false }.check().is_err());
        assert!(MediaReceive { video: 8, screen: true }.check().is_ok());
    }

    #[test]
    fn attached_tracks_name_their_slots() {
        let video = MediaTrack { mid: Some("quic-video-0".into()), ..MediaTrack::vp8(MediaKind::Video, 7) };
        let attached = ServerMessage::MediaAttached { request_id: None, tracks: vec![video.clone()], udp: None };
        let value = serde_json::to_value(&attached).unwrap();
        assert_eq!(
            value,
            json!({"type":"media.attached","tracks":[{"kind":"video","ssrc":7,"payloadType":96,"mid":"quic-video-0"}]})
        );
        assert_eq!(serde_json::from_value::<ServerMessage>(value).unwrap(), attached);
    }

    #[test]
    fn rid_layers_of_one_kind_form_one_group() {
        let tracks = [
            MediaTrack::opus(1),
            MediaTrack::vp8_layer(MediaKind::Video, 2, "q"),
            MediaTrack::vp8(MediaKind::Screen, 3),
            MediaTrack::vp8_layer(MediaKind::Video, 4, "h"),
            MediaTrack::vp8_layer(MediaKind::Video, 5, "f"),
            MediaTrack::vp8(MediaKind::Video, 6),
        ];
        let groups = group_sent_tracks(&tracks).unwrap();
        let shape: Vec<(MediaKind, Vec<u32>)> =
            groups.iter().map(|g| (g.kind, g.layers.iter().map(|t| t.ssrc).collect())).collect();
        assert_eq!(
            shape,
            vec![
                (MediaKind::Audio, vec![1]),
                (MediaKind::Video, vec![2, 4, 5]),
                (MediaKind::Screen, vec![3]),
                (MediaKind::Video, vec![6]),
            ]
        );
        assert_eq!(group_sent_tracks(&[]).unwrap(), vec![]);
        let screen_layers =
            [MediaTrack::vp8_layer(MediaKind::Screen, 1, "lo"), MediaTrack::vp8_layer(MediaKind::Screen, 2, "hi")];
        assert_eq!(group_sent_tracks(&screen_layers).unwrap().len(), 1);
    }

    #[test]
    fn bad_simulcast_combinations_are_refused() {
        let layer = |ssrc, rid: &str| MediaTrack::vp8_layer(MediaKind::Video, ssrc, rid);
        let refused = |tracks: &[MediaTrack]| group_sent_tracks(tracks).unwrap_err();
        assert!(refused(&[layer(1, "q"), layer(2, "h"), layer(3, "f"), layer(4, "x")]).contains("at most 3"));
        assert!(refused(&[layer(1, "q"), layer(2, "q")]).contains("repeated"));
        let other_pt = MediaTrack { payload_type: 100, ..layer(2, "h") };
        assert!(refused(&[layer(1, "q"), other_pt]).contains("payloadType"));
        assert!(refused(&[MediaTrack { rid: Some("q".into()), ..MediaTrack::opus(1) }]).contains("audio"));
        assert!(refused(&[MediaTrack { width: Some(10), ..MediaTrack::opus(1) }]).contains("audio"));
        assert!(refused(&[layer(1, "")]).contains("rid"));
        assert!(refused(&[layer(1, "has space")]).contains("rid"));
        assert!(refused(&[layer(1, &"r".repeat(MAX_RID_BYTES + 1))]).contains("rid"));
        assert!(refused(&[layer(1, "q").with_size(0, 180)]).contains("at least 1"));
        let named = MediaTrack { mid: Some("x".into()), ..MediaTrack::opus(1) };
        assert!(refused(&[named]).contains("mid"));
    }
}
