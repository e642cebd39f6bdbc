//! palaver-fuzz-targets: the body of every fuzz target (one module per parser that takes bytes
//! from outside; each module's doc states the properties it asserts beyond "no panic"), and
//! the helpers they share: splitting one input into fields, running a future that never waits.
//!
//! The libFuzzer binaries in `fuzz/fuzz_targets/` are one line each around these bodies
//! (`cargo fuzz`, its own workspace in `fuzz/`); this crate is a member of the main workspace,
//! so `cargo test` runs every body over its committed seed corpus and a bounded number of
//! mutations of it (`tests/seeds.rs`) in the ordinary debug build. docs/fuzzing.md.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

pub mod access_token;
pub mod ca_request;
pub mod chat_request;
pub mod dtls_record;
pub mod hmac_header;
pub mod idp_token;
pub mod opus_toc;
pub mod rtcp_compound;
pub mod rtp_extensions;
pub mod rtp_packet;
pub mod sdp_offer;
pub mod signaling_frame;
pub mod sip_message;
pub mod srtp_unprotect;
pub mod stream_frame;
pub mod stun_binding;
pub mod trunk_sdp;

/// A target's body: one input, panicking on any property it breaks.
pub type Body = fn(&[u8]);

/// Every target: its name (the libFuzzer binary, the corpus folder `fuzz/corpus/<name>`) and
/// its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("access_token", access_token::run),
    ("ca_request", ca_request::run),
    ("chat_request", chat_request::run),
    ("dtls_record", dtls_record::run),
    ("hmac_header", hmac_header::run),
    ("idp_token", idp_token::run),
    ("opus_toc", opus_toc::run),
    ("rtcp_compound", rtcp_compound::run),
    ("rtp_extensions", rtp_extensions::run),
    ("rtp_packet", rtp_packet::run),
    ("sdp_offer", sdp_offer::run),
    ("signaling_frame", signaling_frame::run),
    ("srtp_unprotect", srtp_unprotect::run),
    ("stream_frame", stream_frame::run),
    ("stun_binding", stun_binding::run),
    ("trunk_sdp", trunk_sdp::run),
    ("sip_message", sip_message::run),
];

/// Reads the input as a sequence of fields: a one-byte selector, then parts separated by a
/// delimiter byte, so that mutations of one field leave the others in place.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    /// The next byte (0 once the input is used up).
    pub fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((b, rest)) => {
                self.rest = rest;
                *b
            }
            None => 0,
        }
    }

    /// The next part up to (not including) `delimiter`, or everything left.
    pub fn part(&mut self, delimiter: u8) -> &'a [u8] {
        match self.rest.iter().position(|b| *b == delimiter) {
            Some(at) => {
                let part = &self.rest[..at];
                self.rest = &self.rest[at + 1..];
                part
            }
            None => std::mem::take(&mut self.rest),
        }
    }

    /// The next part as text (invalid UTF-8 replaced).
    pub fn text(&mut self, delimiter: u8) -> String {
        String::from_utf8_lossy(self.part(delimiter)).into_owned()
    }

    /// Everything left.
    pub fn rest(self) -> &'a [u8] {
        self.rest
    }
}

/// Runs a future that completes without waiting (the validators' keys are inline, so their
/// async functions never suspend); panics if it would wait, which the fuzzer then reports.
pub fn run_ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a validator with inline keys waited"),
    }
}
