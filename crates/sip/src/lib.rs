//! palaver-sip: the SIP trunk gateway (direct routing). It owns the `[sip]`,
//! `[[sip.trunks]]` and `[[phone_numbers]]` configuration ([`config`]), the trunks'
//! allow-list and digest challenges ([`trunks`]), the SIP user agent on rsipstack
//! ([`gateway`]: UDP/TCP/TLS transports, transactions, dialogs), inbound calls ([`inbound`]:
//! route an owned number to a directory user or a call queue through the call machinery,
//! attach the phone's RTP to the call's conference), calls out to phone numbers
//! ([`outbound`]), an answered phone moved by Call Automation into a group call or a room
//! ([`moved`]), SIP over TLS to trunks ([`tls`]), OPTIONS keep-alives ([`keepalive`]) and the counters the server exports
//! ([`counters`]). Media (plain RTP, G.711 in the mixer) lives in `palaver-sfu`
//! (`control/sip.rs`, `mixer/g711.rs`); see `docs/sip.md`.

mod answer;
pub mod config;
pub mod counters;
mod custom_headers;
mod digest;
mod early;
mod failure;
pub mod gateway;
mod hold;
mod inbound;
mod keepalive;
mod meeting;
mod moved;
mod outbound;
mod provisional;
mod refer;
mod ringing;
mod tls;
pub mod trunks;

pub use config::{PhoneNumberConfig, Route, SipConfig, SipConfigError, TrunkConfig, validate};
pub use counters::{SipCounters, SipSnapshot};
pub use early::hold_audio_name;
pub use gateway::{SipError, SipGateway};
