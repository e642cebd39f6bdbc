//! Media-session vocabulary of the protocol: ICE candidates, receive slots (`media.slots`,
//! `media.subscribe`), the QUIC participant's tracks (`media.attach`) and the QUIC `auth` frame.

use super::{FrameError, MAX_FRAME_BYTES};
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

/// What a receive slot of a participant's media session carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SlotKind {
    /// A remote camera.
    Video,
    /// A remote screen share.
    Screen,
}

/// One receive slot (an m-section the server sends on) and whose track it carries now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaSlot {
    /// The m-section's `a=mid` (the browser's `RTCRtpTransceiver.mid`).
    pub mid: String,
    pub kind: SlotKind,
    /// The participant whose track the slot carries; `null` while the slot is empty.
    pub participant_id: Option<String>,
}

/// What a media track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MediaKind {
    /// Opus, 48 kHz.
    Audio,
    /// Camera video (VP8).
    Video,
    /// Screen-share video (VP8).
    Screen,
}

/// One RTP stream of a QUIC participant's media session (`media.attach` / `media.attached`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaTrack {
    pub kind: MediaKind,
    pub ssrc: u32,
    pub payload_type: u8,
}

impl MediaTrack {
    /// The Opus payload type palaver uses when a client does not choose one.
    pub const DEFAULT_OPUS_PT: u8 = 111;
    /// The VP8 payload type palaver uses when a client does not choose one.
    pub const DEFAULT_VP8_PT: u8 = 96;

    /// An Opus audio track with the default payload type.
    pub fn opus(ssrc: u32) -> Self {
        Self { kind: MediaKind::Audio, ssrc, payload_type: Self::DEFAULT_OPUS_PT }
    }
}

/// The first frame on a QUIC signaling stream: the access token (a WebSocket authenticates
/// in its upgrade request instead). Answered with `welcome`, or an `error` frame and a close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "auth")]
pub struct AuthFrame {
    pub token: String,
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
