//! End-to-end tests against the real `palaver` binary. One test binary, one module per
//! area: add `mod <area>;` here.

mod call_automation;
mod call_automation_moves;
mod call_automation_phone_adds;
mod call_automation_phone_edges;
mod call_automation_phone_moves;
mod chat;
mod events;
mod identity;
mod identity_directory;
mod load;
mod quic;
mod quic_video;
mod quic_webrtc;
mod revocation;
mod rooms;
mod server_cli;
mod signaling;
mod signaling_calls;
mod sip;
mod sip_baresip;
mod sip_media;
mod sip_media_latching;
mod sip_media_lobby;
mod sip_provisional;
mod sip_tls;
mod sip_trunk;
mod support;
mod usage;
