//! The provisional responses (18x) of an inbound INVITE while it waits for an answer —
//! ringing a user or a queue, or a caller waiting in a meeting's lobby — as a sans-IO state
//! machine driven with instants ([`Provisionals`]); the call tasks send what it asks for.
//!
//! - **Refresh** (RFC 3261 §13.3.1.1): a UAS that cannot answer at once "SHOULD send a
//!   non-100 provisional response at every minute, to handle the possibility of lost
//!   provisional responses" — proxies on the way end an INVITE that hears nothing for their
//!   timer C (> 3 min). The last 18x is repeated every `[sip] provisional_refresh_secs`.
//! - **Reliability** (RFC 3262, `100rel`): when the INVITE carries `Require: 100rel` or
//!   `Supported: 100rel`, every 18x carries `Require: 100rel` and an `RSeq` (one higher per
//!   new response) and is retransmitted from T1 (500 ms), doubling up to T2 (4 s), until a
//!   PRACK with its `RAck` arrives. A new reliable 18x waits for the PRACK of the previous
//!   one (§3: "MUST NOT send a second reliable provisional response until the first is
//!   acknowledged"), and a 2xx waits while an unacknowledged one carries SDP. No PRACK for
//!   64·T1 (32 s): the INVITE is refused with a 5xx (§3 "SHOULD reject ... with a 5xx").

use std::time::{Duration, Instant};

/// RFC 3261's T1 and T2.
pub(crate) const T1: Duration = Duration::from_millis(500);
pub(crate) const T2: Duration = Duration::from_secs(4);

/// One 18x to send: the status (180 or 183), its `RSeq` when reliable, and whether it is
/// the retransmission or refresh of an earlier one (the same body goes again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Provisional {
    pub status: u16,
    pub rseq: Option<u32>,
    pub repeat: bool,
}

/// What the call task must do after [`Provisionals::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Send(Provisional),
    /// A reliable 18x got no PRACK for 64·T1: refuse the INVITE (5xx).
    GiveUp,
}

#[derive(Debug, Clone, Copy)]
struct Unacked {
    rseq: u32,
    has_sdp: bool,
    retransmit_at: Instant,
    interval: Duration,
    give_up_at: Instant,
}

/// The provisional responses of one INVITE (see the module docs).
#[derive(Debug)]
pub(crate) struct Provisionals {
    reliable: bool,
    refresh: Option<Duration>,
    next_rseq: u32,
    /// The last 18x sent (status, with SDP) and when it went (for the refresh).
    last: Option<(u16, bool, Instant)>,
    unacked: Option<Unacked>,
    /// A new 18x asked for while a reliable one waits for its PRACK.
    queued: Option<(u16, bool)>,
}

impl Provisionals {
    /// `reliable` when the INVITE asked for or supports 100rel; `refresh` of `None` never
    /// repeats; `first_rseq` is the first `RSeq` (RFC 3262 §3: chosen between 1 and 2³¹−1).
    pub fn new(reliable: bool, refresh: Option<Duration>, first_rseq: u32) -> Self {
        Self {
            reliable,
            refresh: refresh.filter(|d| !d.is_zero()),
            next_rseq: first_rseq.clamp(1, 1 << 30),
            last: None,
            unacked: None,
            queued: None,
        }
    }

    pub fn reliable(&self) -> bool {
        self.reliable
    }

    /// A new 18x (`status`, `has_sdp` for a 183 with a session description) is wanted now.
    /// `None` when it must wait for the PRACK of the previous reliable one (it goes out
    /// from [`Provisionals::prack`] then).
    pub fn send(&mut self, now: Instant, status: u16, has_sdp: bool) -> Option<Provisional> {
        if self.unacked.is_some() {
            self.queued = Some((status, has_sdp));
            return None;
        }
        Some(self.emit(now, status, has_sdp))
    }

    fn emit(&mut self, now: Instant, status: u16, has_sdp: bool) -> Provisional {
        self.last = Some((status, has_sdp, now));
        if !self.reliable {
            return Provisional { status, rseq: None, repeat: false };
        }
        let rseq = self.next_rseq;
        self.next_rseq += 1;
        self.unacked =
            Some(Unacked { rseq, has_sdp, retransmit_at: now + T1, interval: T1, give_up_at: now + 64 * T1 });
        Provisional { status, rseq: Some(rseq), repeat: false }
    }

    /// A PRACK with `RAck` naming `rseq` arrived: true when it acknowledges the outstanding
    /// 18x; a queued 18x is returned to be sent now.
    pub fn prack(&mut self, now: Instant, rseq: u32) -> (bool, Option<Provisional>) {
        match self.unacked {
            Some(u) if u.rseq == rseq => {
                self.unacked = None;
                let next = self.queued.take().map(|(status, sdp)| self.emit(now, status, sdp));
                (true, next)
            }
            _ => (false, None),
        }
    }

    /// False while an unacknowledged reliable 18x carries SDP (its 2xx must wait).
    pub fn may_answer(&self) -> bool {
        !self.unacked.is_some_and(|u| u.has_sdp)
    }

    /// When [`Provisionals::poll`] has something to do next.
    pub fn next_wake(&self) -> Option<Instant> {
        if let Some(u) = &self.unacked {
            return Some(u.retransmit_at.min(u.give_up_at));
        }
        Some(self.last?.2 + self.refresh?)
    }

    /// Retransmissions, refreshes and the give-up due at `now`.
    pub fn poll(&mut self, now: Instant) -> Option<Step> {
        if let Some(u) = self.unacked.as_mut() {
            if now >= u.give_up_at {
                self.unacked = None;
                self.last = None;
                return Some(Step::GiveUp);
            }
            if now >= u.retransmit_at {
                u.interval = (u.interval * 2).min(T2);
                u.retransmit_at = now + u.interval;
                let status = self.last.map(|l| l.0).unwrap_or(180);
                return Some(Step::Send(Provisional { status, rseq: Some(u.rseq), repeat: true }));
            }
            return None;
        }
        let (status, has_sdp, at) = self.last?;
        if now < at + self.refresh? {
            return None;
        }
        // A refresh of a reliable 18x is a new reliable response (a new RSeq, RFC 3262 §3).
        let mut sent = self.emit(now, status, has_sdp);
        sent.repeat = true;
        Some(Step::Send(sent))
    }
}

#[cfg(test)]
mod tests;
