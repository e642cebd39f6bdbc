//! The QUIC signaling stream as the frame stream/sink the gateway's connection loop serves
//! (`palaver_signaling::gateway::serve_frames`): length-prefixed frames in, `Message`s out
//! (UTF-8 → `Text`, anything else → `Binary`, which the loop refuses with an error frame);
//! `Text` out → one length-prefixed frame, `Close` → finish the stream, pings ignored (QUIC
//! has its own keep-alive; clients send `ping` frames).

use axum::extract::ws::Message;
use futures_util::{Sink, Stream};
use palaver_core::protocol::ConnectionClose;
use palaver_core::stream_frame::{Decoded, FrameDecoder, StreamFrameError, frame_bytes};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Largest read from the stream at once.
const READ_CHUNK: usize = 64 * 1024;

/// Why the signaling stream stopped yielding frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameStreamError {
    #[error(transparent)]
    Framing(#[from] StreamFrameError),
    #[error("reading the stream: {0}")]
    Read(#[from] quinn::ReadError),
}

/// Reads the next frame; `Ok(None)` when the client finished the stream.
pub async fn read_frame(
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
) -> Result<Option<Vec<u8>>, FrameStreamError> {
    loop {
        match decoder.next_frame()? {
            Some(Decoded::Frame(payload)) => return Ok(Some(payload)),
            // Only above the decoder's 1 MiB delivery limit, which next_frame reports as an error.
            Some(Decoded::Oversized(len)) => return Err(StreamFrameError(len).into()),
            None => {}
        }
        match recv.read_chunk(READ_CHUNK, true).await? {
            Some(chunk) => decoder.push(&chunk.bytes),
            None => return Ok(None),
        }
    }
}

/// A frame payload as the WebSocket message it stands for.
pub fn to_message(payload: Vec<u8>) -> Message {
    match String::from_utf8(payload) {
        Ok(text) => Message::Text(text.into()),
        Err(e) => Message::Binary(e.into_bytes().into()),
    }
}

/// The client's frames as a stream of messages. A framing violation (a length over 1 MiB)
/// ends the stream and sets `violation`, so the connection closes with the protocol code.
pub fn incoming(
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    violation: Arc<AtomicBool>,
) -> impl Stream<Item = Result<Message, FrameStreamError>> + Unpin + Send {
    Box::pin(futures_util::stream::unfold(Some((recv, decoder)), move |state| {
        let violation = violation.clone();
        async move {
            let (mut recv, mut decoder) = state?;
            match read_frame(&mut recv, &mut decoder).await {
                Ok(Some(payload)) => Some((Ok(to_message(payload)), Some((recv, decoder)))),
                Ok(None) => None,
                Err(e) => {
                    if matches!(e, FrameStreamError::Framing(_)) {
                        violation.store(true, Ordering::Relaxed);
                    }
                    Some((Err(e), None))
                }
            }
        }
    }))
}

/// Messages to the client as frames on the stream. A close the server initiates for a reason
/// ([`ConnectionClose`], e.g. access revoked) closes the whole connection with its QUIC code, so
/// the client learns why; any other close finishes the stream.
pub fn outgoing(
    send: quinn::SendStream,
    connection: quinn::Connection,
) -> impl Sink<Message, Error = quinn::WriteError> + Unpin + Send {
    Box::pin(futures_util::sink::unfold(send, move |mut send, message: Message| {
        let connection = connection.clone();
        async move {
            match message {
                Message::Text(text) => send.write_all(&frame_bytes(text.as_bytes())).await?,
                Message::Binary(bytes) => send.write_all(&frame_bytes(&bytes)).await?,
                Message::Close(frame) => match frame.and_then(|f| ConnectionClose::from_websocket_code(f.code)) {
                    Some(close) => connection.close(close.quic_code().into(), close.reason().as_bytes()),
                    None => {
                        let _ = send.finish();
                    }
                },
                Message::Ping(_) | Message::Pong(_) => {}
            }
            Ok(send)
        }
    }))
}
