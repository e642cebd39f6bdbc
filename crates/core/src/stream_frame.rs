//! Framing of signaling frames on a byte stream (the QUIC signaling stream, `docs/quic.md`):
//! each frame is a u32 big-endian length followed by that many bytes of UTF-8 JSON. A sans-IO
//! decoder: the transport pushes whatever bytes it read and pulls complete frames out.
//!
//! Frames up to the decoder's delivery limit ([`MAX_FRAME_BYTES`] by default) are delivered;
//! larger ones up to [`MAX_SKIPPABLE_FRAME_BYTES`] are skipped and reported as
//! [`Decoded::Oversized`]; a length beyond that is a protocol violation ([`StreamFrameError`]).
//! The server delivers everything up to 1 MiB, so its connection loop answers frames over
//! 64 KiB with a `PayloadTooLarge` error frame exactly as on the WebSocket.

use crate::protocol::MAX_FRAME_BYTES;

/// Largest announced frame length that is skipped rather than ending the connection.
pub const MAX_SKIPPABLE_FRAME_BYTES: usize = 1024 * 1024;

/// Bytes of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// A frame length the stream cannot recover from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame length {0} exceeds the {MAX_SKIPPABLE_FRAME_BYTES}-byte limit")]
pub struct StreamFrameError(pub usize);

/// One result of [`FrameDecoder::next_frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A complete frame's payload (not yet checked for UTF-8 or JSON).
    Frame(Vec<u8>),
    /// A frame of this many bytes was skipped because it exceeds [`MAX_FRAME_BYTES`].
    Oversized(usize),
}

/// Appends one length-prefixed frame carrying `payload` to `out`.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(LENGTH_PREFIX_BYTES + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// A length-prefixed frame as a new buffer.
pub fn frame_bytes(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(LENGTH_PREFIX_BYTES + payload.len());
    encode_frame(payload, &mut out);
    out
}

/// Reassembles frames from arbitrarily split reads.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of an oversized frame still to discard, and its announced length.
    skipping: Option<(usize, usize)>,
    /// Largest frame delivered; larger (up to the skippable limit) are skipped.
    deliver_limit: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// Delivers frames up to [`MAX_FRAME_BYTES`].
    pub fn new() -> Self {
        Self::with_limit(MAX_FRAME_BYTES)
    }

    /// Delivers frames up to `deliver_limit` bytes (at most [`MAX_SKIPPABLE_FRAME_BYTES`]).
    pub fn with_limit(deliver_limit: usize) -> Self {
        Self { buf: Vec::new(), skipping: None, deliver_limit: deliver_limit.min(MAX_SKIPPABLE_FRAME_BYTES) }
    }

    /// Bytes received from the stream, in order.
    pub fn push(&mut self, mut bytes: &[u8]) {
        if let Some((left, len)) = self.skipping {
            let n = left.min(bytes.len());
            bytes = &bytes[n..];
            self.skipping = Some((left - n, len));
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that do not yet form a complete frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Decoded>, StreamFrameError> {
        if let Some((left, len)) = self.skipping {
            if left > 0 {
                return Ok(None);
            }
            self.skipping = None;
            return Ok(Some(Decoded::Oversized(len)));
        }
        let Some(prefix) = self.buf.first_chunk::<LENGTH_PREFIX_BYTES>() else { return Ok(None) };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > MAX_SKIPPABLE_FRAME_BYTES {
            return Err(StreamFrameError(len));
        }
        if len > self.deliver_limit {
            let held = self.buf.len() - LENGTH_PREFIX_BYTES;
            let dropped = held.min(len);
            self.buf.drain(..LENGTH_PREFIX_BYTES + dropped);
            self.skipping = Some((len - dropped, len));
            return self.next_frame();
        }
        if self.buf.len() < LENGTH_PREFIX_BYTES + len {
            return Ok(None);
        }
        let payload = self.buf[LENGTH_PREFIX_BYTES..LENGTH_PREFIX_BYTES + len].to_vec();
        self.buf.drain(..LENGTH_PREFIX_BYTES + len);
        Ok(Some(Decoded::Frame(payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(d: &mut FrameDecoder) -> Vec<Decoded> {
        let mut out = Vec::new();
        while let Some(f) = d.next_frame().unwrap() {
            out.push(f);
        }
        out
    }

    #[test]
    fn frames_survive_any_split() {
        let mut wire = Vec::new();
        encode_frame(br#"{"type":"ping"}"#, &mut wire);
        encode_frame(b"", &mut wire);
        encode_frame(br#"{"type":"leave"}"#, &mut wire);
        for chunk in [1, 2, 3, 5, 7, wire.len()] {
            let mut d = FrameDecoder::new();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                d.push(piece);
                got.extend(drain(&mut d));
            }
            assert_eq!(
                got,
                vec![
                    Decoded::Frame(br#"{"type":"ping"}"#.to_vec()),
                    Decoded::Frame(Vec::new()),
                    Decoded::Frame(br#"{"type":"leave"}"#.to_vec())
                ],
                "chunk size {chunk}"
            );
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn oversized_frames_are_skipped_and_the_stream_continues() {
        let big = vec![b'x'; MAX_FRAME_BYTES + 1];
        let mut wire = frame_bytes(&big);
        encode_frame(b"{}", &mut wire);
        for chunk in [1000, 65_536, wire.len()] {
            let mut d = FrameDecoder::new();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                d.push(piece);
                got.extend(drain(&mut d));
            }
            assert_eq!(got, vec![Decoded::Oversized(MAX_FRAME_BYTES + 1), Decoded::Frame(b"{}".to_vec())]);
        }
    }

    #[test]
    fn a_higher_limit_delivers_large_frames() {
        let big = vec![b'x'; MAX_FRAME_BYTES + 1];
        let mut d = FrameDecoder::with_limit(MAX_SKIPPABLE_FRAME_BYTES);
        d.push(&frame_bytes(&big));
        assert_eq!(d.next_frame(), Ok(Some(Decoded::Frame(big))));
    }

    #[test]
    fn an_absurd_length_is_an_error() {
        let mut d = FrameDecoder::new();
        d.push(&u32::MAX.to_be_bytes());
        assert_eq!(d.next_frame(), Err(StreamFrameError(u32::MAX as usize)));
        let mut d = FrameDecoder::new();
        d.push(&((MAX_SKIPPABLE_FRAME_BYTES + 1) as u32).to_be_bytes());
        assert!(d.next_frame().is_err());
    }

    #[test]
    fn partial_prefix_waits() {
        let mut d = FrameDecoder::new();
        d.push(&[0, 0]);
        assert_eq!(d.next_frame(), Ok(None));
        d.push(&[0, 1, b'7']);
        assert_eq!(d.next_frame(), Ok(Some(Decoded::Frame(b"7".to_vec()))));
    }
}
