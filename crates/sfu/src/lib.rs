//! Media plane: transports (WebRTC, QUIC), router, video forwarder, Opus mixer.
