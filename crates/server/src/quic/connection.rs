//! One QUIC connection: accept the signaling stream, authenticate its first frame (`auth` with
//! an access token, verified like a WebSocket upgrade), register the connection's datagram
//! path, then hand the stream to the gateway's connection loop while two pumps move datagrams
//! between the connection and the worker the path is routed to (after `media.attach`).

use super::frames::{self, read_frame};
use super::paths::{CachedRoute, QuicPath, QuicPaths};
use super::traffic::QuicTraffic;
use palaver_core::ErrorCode;
use palaver_core::protocol::quic::{
    CLOSE_AUTH_FAILED, CLOSE_NORMAL, CLOSE_PROTOCOL, SRTP_EXPORTER_LABEL, SRTP_KEYING_BYTES, SrtpKeying,
};
use palaver_core::protocol::{AuthFrame, FrameError, MediaCarrier, ServerMessage};
use palaver_core::stream_frame::{FrameDecoder, MAX_SKIPPABLE_FRAME_BYTES, frame_bytes};
use palaver_core::time::now_ms;
use palaver_signaling::app::AppState;
use palaver_signaling::auth::Credential;
use palaver_signaling::gateway::{ConnIdentity, authenticate as authenticate_connection, serve_frames};
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

/// The client must open its stream and authenticate within this time.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refused client gets to read the error frame before the connection closes.
const REFUSAL_LINGER: Duration = Duration::from_secs(2);

/// Serves one incoming connection until it ends.
pub async fn serve(incoming: quinn::Incoming, state: AppState, paths: Arc<QuicPaths>, traffic: Arc<QuicTraffic>) {
    let remote = incoming.remote_address();
    // Its datagrams count as used, not discarded, on /metrics (traffic.rs).
    let (connection, _tracked) = match traffic.handshake(incoming).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "QUIC handshake failed");
            return;
        }
    };
    let (send, mut recv) = match tokio::time::timeout(AUTH_TIMEOUT, connection.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "QUIC connection ended before its signaling stream");
            return;
        }
        Err(_) => {
            connection.close(CLOSE_PROTOCOL.into(), b"no signaling stream");
            return;
        }
    };
    let mut decoder = FrameDecoder::with_limit(MAX_SKIPPABLE_FRAME_BYTES);
    let verdict = tokio::time::timeout(AUTH_TIMEOUT, authenticate(&state, &mut recv, &mut decoder)).await;
    let (ident, carrier) = match verdict {
        Ok(Ok(verdict)) => verdict,
        Ok(Err((code, message))) => return refuse(&state, connection, send, code, message).await,
        Err(_) => {
            let message = format!("no `auth` frame within {} s", AUTH_TIMEOUT.as_secs());
            return refuse(&state, connection, send, ErrorCode::MissingAuthentication, message).await;
        }
    };
    let user = ident.raw_id();
    let (path_id, path) = paths.register();
    if carrier == MediaCarrier::Srtp {
        let mut material = [0u8; SRTP_KEYING_BYTES];
        if connection.export_keying_material(&mut material, SRTP_EXPORTER_LABEL, b"").is_err() {
            paths.unregister(path_id);
            connection.close(CLOSE_PROTOCOL.into(), b"no TLS exporter");
            return;
        }
        path.use_srtp(SrtpKeying::from_exported(&material));
    }
    tracing::debug!(%remote, user = %user, path = path_id.0, ?carrier, "QUIC participant authenticated");
    let ingress = tokio::spawn(pump_ingress(connection.clone(), path.clone(), paths.clone()));
    let egress = tokio::spawn(pump_egress(connection.clone(), path, paths.clone()));
    let violation = Arc::new(AtomicBool::new(false));
    let incoming = frames::incoming(recv, decoder, violation.clone());
    let closed_by_server =
        serve_frames(state, ident, frames::outgoing(send, connection.clone()), incoming, Some(path_id)).await;
    paths.unregister(path_id);
    ingress.abort();
    egress.abort();
    if let Some(close) = closed_by_server {
        // E.g. access revoked: the client must not reconnect with the same token; tell it now.
        tracing::debug!(%remote, user = %user, reason = close.reason(), "QUIC connection closed by the server");
        connection.close(close.quic_code().into(), close.reason().as_bytes());
        return;
    }
    if violation.load(Ordering::Relaxed) {
        tracing::debug!(%remote, user = %user, "QUIC signaling stream broke the framing");
        connection.close(CLOSE_PROTOCOL.into(), b"frame length over 1 MiB");
        return;
    }
    // The stream is finished: give the client a moment to read the last frames and close itself.
    let _ = tokio::time::timeout(REFUSAL_LINGER, connection.closed()).await;
    connection.close(CLOSE_NORMAL.into(), b"signaling ended");
    tracing::debug!(%remote, user = %user, "QUIC connection closed");
}

async fn authenticate(
    state: &AppState,
    recv: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
) -> Result<(ConnIdentity, MediaCarrier), (ErrorCode, String)> {
    let payload = match read_frame(recv, decoder).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err((ErrorCode::MissingAuthentication, "the stream ended before `auth`".into())),
        Err(e) => return Err((ErrorCode::BadRequest, e.to_string())),
    };
    let text = std::str::from_utf8(&payload)
        .map_err(|_| (ErrorCode::InvalidJson, "the auth frame is not UTF-8 JSON".to_string()))?;
    let auth = AuthFrame::parse(text).map_err(|e| match e {
        FrameError::UnknownType(_) | FrameError::MissingType => {
            (ErrorCode::MissingAuthentication, r#"the first frame must be {"type":"auth","token":"..."}"#.to_string())
        }
        other => (other.code(), other.to_string()),
    })?;
    let ident = authenticate_connection(state, Credential::AccessToken(&auth.token), now_ms())
        .await
        .map_err(|e| (e.code, e.message))?;
    Ok((ident, auth.media))
}

/// Sends one `error` frame, lets the client read it, and closes with [`CLOSE_AUTH_FAILED`].
async fn refuse(
    state: &AppState,
    connection: quinn::Connection,
    mut send: quinn::SendStream,
    code: ErrorCode,
    message: String,
) {
    tracing::debug!(remote = %connection.remote_address(), %code, %message, "QUIC signaling refused");
    state.gateway.record_error(code);
    let frame = ServerMessage::error(code, message, None).to_json();
    if send.write_all(&frame_bytes(frame.as_bytes())).await.is_ok() && send.finish().is_ok() {
        let _ = tokio::time::timeout(REFUSAL_LINGER, send.stopped()).await;
    }
    connection.close(CLOSE_AUTH_FAILED.into(), code.as_str().as_bytes());
}

/// Client datagrams into the routed worker's ingress queue; counted drops before `media.attach`.
/// Per datagram: one atomic load to follow the route, one lock-free queue push.
async fn pump_ingress(connection: quinn::Connection, path: Arc<QuicPath>, paths: Arc<QuicPaths>) {
    let mut cached = CachedRoute::default();
    while let Ok(datagram) = connection.read_datagram().await {
        match path.follow(&mut cached) {
            Some(route) => {
                if route.pool.workers()[route.worker].push_ingress(route.transport, datagram).is_err() {
                    paths.drops.ingress_full.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                paths.drops.unattached.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The routed link's egress queue out as datagrams, following route changes.
async fn pump_egress(connection: quinn::Connection, path: Arc<QuicPath>, paths: Arc<QuicPaths>) {
    loop {
        let Some(route) = path.route() else {
            path.changed().await;
            continue;
        };
        let drain = poll_fn(|cx| {
            // Register before draining: a packet pushed after the last pop wakes us.
            route.link.egress_waker.register(cx.waker());
            while let Some(packet) = route.link.pop_egress() {
                match connection.send_datagram(packet) {
                    Ok(()) => {}
                    Err(quinn::SendDatagramError::ConnectionLost(_)) => return Poll::Ready(()),
                    Err(_) => {
                        paths.drops.unsendable.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Poll::Pending
        });
        tokio::select! {
            _ = path.changed() => continue,
            _ = drain => return,
        }
    }
}
