//! Media plane: everything between a participant's packets and the other participants.
//!
//! - [`rtp`]: RTP/RTCP views, header extensions and RTCP writers, in place.
//! - [`srtp`]: SRTP/SRTCP protect and unprotect in place, and a transport's [`srtp::SrtpKeys`].
//! - [`router`]: one conversation's routing (mediasoup's producers and consumers): who gets
//!   which packet, rewritten how (simulcast layers, NACK, PLI, reports).
//! - [`mixer`]: the Opus audio mixer (decode, mix-minus, encode) and its active-speaker choice.
//! - [`webrtc`]: the browser endpoint: SDP offers and answers, DTLS-SRTP, ICE-lite STUN.
//! - [`engine`]: the sans-IO engine of one worker (transports, demux, routers and mixers,
//!   commands, timers); time comes in, datagrams go out through a sink.
//! - [`net`]: the I/O shell: worker threads, UDP sockets with batched syscalls and GSO, the
//!   command and event queues, and the [`net::DirectLink`] of direct (QUIC) transports. The
//!   QUIC connections themselves live in the server.
//!
//! The packet path is allocation-free in steady state and never locks.

pub mod engine;
pub mod mixer;
pub mod net;
pub mod router;
pub mod rtp;
pub mod srtp;
pub mod webrtc;
