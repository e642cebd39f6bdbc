//! What the SIP gateway counts (the server maps a [`SipSnapshot`] into Prometheus, as it does
//! for the media workers): packets refused by the allow-list, requests refused as malformed,
//! challenges, final responses by code, and calls by trunk, direction and outcome.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which way a call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// The billing description of a phone leg: palaver's `number` on it (called or presented),
/// the trunk and the direction.
pub(crate) fn phone_leg(number: &str, trunk: &str, direction: Direction) -> palaver_core::PhoneLeg {
    let direction = match direction {
        Direction::Inbound => palaver_core::PhoneDirection::Inbound,
        Direction::Outbound => palaver_core::PhoneDirection::Outbound,
    };
    palaver_core::PhoneLeg { number: number.to_owned(), trunk: trunk.to_owned(), direction }
}

/// How a call attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Answered (counted when it ends).
    Completed,
    /// The caller gave up before an answer.
    Cancelled,
    /// Refused (no such number, not answered, busy, declined, bad SDP, unsupported route).
    Rejected,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Cancelled => "cancelled",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
        }
    }
}

/// The gateway's counters (cheap to update from any task).
#[derive(Debug, Default)]
pub struct SipCounters {
    /// Packets or connections from sources on no trunk's allow-list (dropped unparsed).
    pub unknown_source: AtomicU64,
    /// Requests answered 400 (parsed, but unusable: bad URI, bad or missing SDP).
    pub malformed: AtomicU64,
    /// 401 challenges sent.
    pub challenges: AtomicU64,
    /// OPTIONS answered, and keep-alives the trunks answered / did not.
    pub options_answered: AtomicU64,
    pub keepalives_ok: AtomicU64,
    pub keepalives_failed: AtomicU64,
    responses: Mutex<BTreeMap<u16, u64>>,
    calls: Mutex<BTreeMap<(String, Direction, Outcome), u64>>,
}

/// A copy of the counters for the metrics exporter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SipSnapshot {
    pub unknown_source: u64,
    pub malformed: u64,
    pub challenges: u64,
    pub options_answered: u64,
    pub keepalives_ok: u64,
    pub keepalives_failed: u64,
    /// Final responses sent, by status code.
    pub responses: Vec<(u16, u64)>,
    /// Calls by (trunk, direction, outcome).
    pub calls: Vec<(String, &'static str, &'static str, u64)>,
}

impl SipCounters {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A final response this gateway sent.
    pub fn response(&self, code: u16) {
        if let Ok(mut map) = self.responses.lock() {
            *map.entry(code).or_default() += 1;
        }
    }

    pub fn call(&self, trunk: &str, direction: Direction, outcome: Outcome) {
        if let Ok(mut map) = self.calls.lock() {
            *map.entry((trunk.to_owned(), direction, outcome)).or_default() += 1;
        }
    }

    pub fn snapshot(&self) -> SipSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SipSnapshot {
            unknown_source: load(&self.unknown_source),
            malformed: load(&self.malformed),
            challenges: load(&self.challenges),
            options_answered: load(&self.options_answered),
            keepalives_ok: load(&self.keepalives_ok),
            keepalives_failed: load(&self.keepalives_failed),
            responses: self.responses.lock().map(|m| m.iter().map(|(k, v)| (*k, *v)).collect()).unwrap_or_default(),
            calls: self
                .calls
                .lock()
                .map(|m| m.iter().map(|((t, d, o), n)| (t.clone(), d.as_str(), o.as_str(), *n)).collect())
                .unwrap_or_default(),
        }
    }
}
