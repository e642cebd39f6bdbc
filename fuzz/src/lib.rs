//! Helpers shared by the fuzz targets in `fuzz_targets/` (one libFuzzer binary per parser that
//! takes bytes from outside; docs/fuzzing.md): splitting one input into fields, running a
//! future that never waits, and the fixed keys the targets verify against.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

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
