//! The signaling JSON a client sends (`palaver_core::protocol`): WebSocket text frames
//! (`ClientFrame::parse`) and the QUIC stream's first frame (`AuthFrame::parse`). Properties:
//! no panic on any text; the error classification is consistent (an `InvalidFields` error only
//! for a known `type`); a parsed frame serialises to JSON that parses back to the same frame.

use palaver_core::protocol::{AuthFrame, ClientFrame, ClientMessage, FrameError, MAX_FRAME_BYTES};

/// One input (the body of the libFuzzer target of the same name).
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match ClientFrame::parse(text) {
        Ok(frame) => {
            let json = serde_json::to_string(&frame).expect("a parsed frame serialises");
            assert_eq!(ClientFrame::parse(&json), Ok(frame), "round trip through {json}");
        }
        Err(FrameError::TooLarge(n)) => assert!(n > MAX_FRAME_BYTES),
        Err(FrameError::InvalidFields { ty, .. }) => assert!(ClientMessage::TYPES.contains(&ty.as_str())),
        Err(FrameError::UnknownType(ty)) => assert!(!ClientMessage::TYPES.contains(&ty.as_str())),
        Err(e @ (FrameError::MalformedJson(_) | FrameError::MissingType)) => assert_eq!(e.request_id(), None),
    }
    if let Ok(auth) = AuthFrame::parse(text) {
        let json = serde_json::to_string(&auth).expect("an auth frame serialises");
        assert_eq!(AuthFrame::parse(&json), Ok(auth), "round trip through {json}");
    }
}
