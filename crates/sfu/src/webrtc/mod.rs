//! The WebRTC endpoint for browsers: SDP offer parsing and answer writing ([`sdp`]) and the
//! DTLS-SRTP server side ([`dtls`]). ICE-lite STUN is answered by the worker
//! (`worker::stun`); DTLS datagrams reach [`dtls::DtlsSession`] through the worker core,
//! which installs the exported SRTP keys into the transport.

pub mod dtls;
pub mod sdp;

#[cfg(test)]
mod worker_tests;
