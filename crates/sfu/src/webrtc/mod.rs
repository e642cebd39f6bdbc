//! The WebRTC endpoint for browsers: SDP offer parsing and answer writing ([`sdp`]), ICE-lite
//! STUN binding checks ([`stun`]) and the DTLS-SRTP server side ([`dtls`]). The engine answers
//! STUN and feeds DTLS datagrams to [`dtls::DtlsSession`], which yields the transport's
//! [`SrtpKeys`](crate::srtp::SrtpKeys).

pub mod dtls;
pub mod sdp;
pub mod stun;
