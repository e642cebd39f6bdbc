//! The SRTP media carrier of a QUIC participant (`docs/quic.md`, "Media carriers"): media as
//! SRTP (AEAD_AES_128_GCM) over the client's own UDP socket to the media worker that hosts
//! its conference, keyed from the QUIC connection's TLS exporter, after an ICE-lite STUN
//! binding with the credentials of `media.attached`'s `udp`. The QUIC connection then carries
//! only signaling. [`UdpCarrier`] protects and sends; [`receive`] is the task that reads the
//! socket, answers the binding wait, unprotects, and feeds the same queues as datagrams.

use crate::ClientError;
use bytes::Bytes;
use palaver_core::protocol::UdpMedia;
use palaver_core::protocol::quic::SrtpKeying;
use palaver_sfu::srtp::{Profile, SrtpContext};
use palaver_sfu::webrtc::stun;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How often the binding request is repeated until the worker answers.
const BINDING_RETRY: Duration = Duration::from_millis(100);
/// The client's own (unchecked) ICE ufrag in USERNAME `server:client`.
const CLIENT_UFRAG: &str = "quic";

/// The sending half, shared by the client and its [`crate::RtpSender`]s.
pub(crate) struct UdpCarrier {
    socket: std::net::UdpSocket,
    /// The worker's address once `media.attached` named it.
    remote: Mutex<Option<SocketAddr>>,
    protect: Mutex<SrtpContext>,
    /// Notified when a STUN binding success arrives from `remote`.
    pub(crate) bound: Notify,
}

impl UdpCarrier {
    /// Binds a UDP socket of `server`'s address family and keys the sending context.
    pub(crate) fn bind(
        server: SocketAddr,
        keying: &SrtpKeying,
    ) -> Result<(Arc<Self>, tokio::net::UdpSocket), ClientError> {
        let bind: SocketAddr = if server.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().expect("literal");
        let socket = std::net::UdpSocket::bind(bind).map_err(ClientError::Bind)?;
        let reader = socket.try_clone().map_err(ClientError::Bind)?;
        reader.set_nonblocking(true).map_err(ClientError::Bind)?;
        let reader = tokio::net::UdpSocket::from_std(reader).map_err(ClientError::Bind)?;
        let protect = srtp(&keying.client_key, &keying.client_salt)?;
        let carrier = Self { socket, remote: Mutex::new(None), protect: Mutex::new(protect), bound: Notify::new() };
        Ok((Arc::new(carrier), reader))
    }

    /// The worker address, if attached.
    pub(crate) fn remote(&self) -> Option<SocketAddr> {
        *self.remote.lock().expect("remote lock")
    }

    /// Points the carrier at the worker `udp` names and waits (up to `timeout`) for the answer
    /// to a STUN binding request, which tells the worker this socket's address.
    pub(crate) async fn connect(&self, udp: &UdpMedia, timeout: Duration) -> Result<(), ClientError> {
        *self.remote.lock().expect("remote lock") = Some(udp.address);
        let username = format!("{}:{CLIENT_UFRAG}", udp.ice_ufrag);
        let mut request = [0u8; 256];
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let transaction: [u8; 12] = rand::random();
            let len = stun::write_binding_request(&mut request, &transaction, &username, udp.ice_pwd.as_bytes())
                .map_err(|e| ClientError::InvalidArgument(format!("ICE credentials: {e:?}")))?;
            let bound = self.bound.notified();
            self.socket.send_to(&request[..len], udp.address).map_err(ClientError::Bind)?;
            let wait = BINDING_RETRY.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            if tokio::time::timeout(wait, bound).await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Timeout(timeout));
            }
        }
    }

    /// Protects one RTP or RTCP packet and sends it to the worker; dropped (`Ok(false)`) before
    /// `media.attached`, as the server drops datagrams before `media.attach`.
    pub(crate) fn send(&self, packet: &[u8]) -> Result<bool, ClientError> {
        let Some(remote) = self.remote() else { return Ok(false) };
        let mut buf = vec![0u8; packet.len() + 32];
        buf[..packet.len()].copy_from_slice(packet);
        let mut context = self.protect.lock().expect("srtp lock");
        let len = if crate::rtp::is_rtcp(packet) {
            context.protect_rtcp(&mut buf, packet.len())
        } else {
            context.protect_rtp(&mut buf, packet.len())
        }
        .map_err(|e| ClientError::InvalidArgument(format!("SRTP protect: {e:?}")))?;
        drop(context);
        self.socket.send_to(&buf[..len], remote).map_err(ClientError::Bind)?;
        Ok(true)
    }
}

fn srtp(key: &[u8], salt: &[u8]) -> Result<SrtpContext, ClientError> {
    SrtpContext::new(Profile::AeadAes128Gcm, key, salt)
        .map_err(|e| ClientError::InvalidArgument(format!("SRTP keys: {e:?}")))
}

/// The receiving context of a carrier (the server's keys).
pub(crate) fn unprotect_context(keying: &SrtpKeying) -> Result<SrtpContext, ClientError> {
    srtp(&keying.server_key, &keying.server_salt)
}

/// Reads the socket until it fails: binding successes from the worker wake [`UdpCarrier::connect`],
/// SRTP/SRTCP from it is unprotected and handed to `deliver` with its arrival time; anything
/// else (other sources, bad tags) is counted through `invalid`.
pub(crate) async fn receive(
    socket: tokio::net::UdpSocket,
    carrier: Arc<UdpCarrier>,
    mut unprotect: SrtpContext,
    mut deliver: impl FnMut(Bytes, Instant),
    mut invalid: impl FnMut(),
) {
    let mut buf = vec![0u8; 2048];
    while let Ok((len, from)) = socket.recv_from(&mut buf).await {
        let arrival = Instant::now();
        if carrier.remote() != Some(from) {
            invalid();
            continue;
        }
        let packet = &mut buf[..len];
        if stun::is_stun(packet) {
            carrier.bound.notify_waiters();
            continue;
        }
        let plain = if crate::rtp::is_rtcp(packet) {
            unprotect.unprotect_rtcp(packet)
        } else {
            unprotect.unprotect_rtp(packet)
        };
        match plain {
            Ok(n) => deliver(Bytes::copy_from_slice(&packet[..n]), arrival),
            Err(_) => invalid(),
        }
    }
}
