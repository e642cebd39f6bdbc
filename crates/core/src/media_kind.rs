//! [`MediaKind`]: what one track, producer or receive slot carries — the one media-kind enum of
//! the protocol (`media.attach` tracks, `media.slots`) and the media plane (producers, SDP
//! m-sections, slots). On the wire it is `"audio"`, `"video"` or `"screen"`.

use serde::{Deserialize, Serialize};

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MediaKind {
    /// Opus, 48 kHz.
    Audio,
    /// Camera video.
    Video,
    /// Screen-share video.
    Screen,
}

impl MediaKind {
    /// Camera or screen: a video codec, simulcast layers, keyframes.
    pub fn is_visual(self) -> bool {
        !matches!(self, MediaKind::Audio)
    }
}

#[cfg(test)]
mod tests {
    use super::MediaKind;

    #[test]
    fn wire_names_are_audio_video_screen() {
        for (kind, name) in [(MediaKind::Audio, "audio"), (MediaKind::Video, "video"), (MediaKind::Screen, "screen")] {
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
            assert_eq!(serde_json::from_value::<MediaKind>(name.into()).unwrap(), kind);
        }
        assert!(!MediaKind::Audio.is_visual() && MediaKind::Video.is_visual() && MediaKind::Screen.is_visual());
    }
}
