//! The I/O shell of [`Provisionals`] for one inbound INVITE: sends the 18x it asks for on
//! the server dialog (`Require: 100rel` and `RSeq` when reliable), feeds it the PRACKs the
//! gateway routes here by Call-ID, and wakes the call task for retransmissions, refreshes
//! and the give-up. The call tasks (`inbound.rs`, `meeting.rs`) select on [`Ringer::wake`]
//! while the call waits for an answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Request};
use tokio::sync::mpsc;

use crate::gateway::Shared;
use crate::provisional::{Provisional, Provisionals, Step};

/// True when the INVITE asks for or supports reliable provisional responses.
pub(crate) fn wants_100rel(request: &Request) -> bool {
    request.header_contains_token("Require", "100rel") || request.header_contains_token("Supported", "100rel")
}

/// The provisional responses of one inbound INVITE (see the module docs).
pub(crate) struct Ringer {
    shared: Arc<Shared>,
    sip_call_id: String,
    machine: Provisionals,
    pracks: mpsc::UnboundedReceiver<u32>,
    /// The SDP of the 183 (early media), sent again with every retransmission.
    early_sdp: Option<Vec<u8>>,
}

/// What [`Ringer::wake`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Something was sent or acknowledged; keep waiting.
    Again,
    /// A reliable 18x got no PRACK for 64·T1: refuse the INVITE.
    GaveUp,
}

impl Ringer {
    pub fn new(shared: Arc<Shared>, request: &Request, sip_call_id: &str) -> Self {
        let reliable = wants_100rel(request);
        let refresh = Duration::from_secs(shared.provisional_refresh_secs);
        let (tx, pracks) = mpsc::unbounded_channel();
        if let Ok(mut map) = shared.pracks.lock() {
            map.insert(sip_call_id.to_owned(), tx);
        }
        let first_rseq = rand::Rng::gen_range(&mut rand::thread_rng(), 1..(1 << 20));
        Self {
            shared,
            sip_call_id: sip_call_id.to_owned(),
            machine: Provisionals::new(reliable, Some(refresh), first_rseq),
            pracks,
            early_sdp: None,
        }
    }

    /// True when the INVITE asked for reliable provisional responses.
    pub fn reliable(&self) -> bool {
        self.machine.reliable()
    }

    /// Sends a 180 (or, with `early_sdp`, a 183 Session Progress with that SDP).
    pub fn ring(&mut self, dialog: &InviteDialog, early_sdp: Option<Vec<u8>>) {
        let status = if early_sdp.is_some() { 183 } else { 180 };
        if early_sdp.is_some() {
            self.early_sdp = early_sdp;
        }
        if let Some(provisional) = self.machine.send(Instant::now(), status, status == 183) {
            self.transmit(dialog, provisional);
        }
    }

    /// Waits for the next PRACK or timer and acts on it.
    pub async fn wake(&mut self, dialog: &InviteDialog) -> Wake {
        let sleep = async {
            match self.machine.next_wake() {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(rseq) = self.pracks.recv() => {
                let (acknowledged, next) = self.machine.prack(Instant::now(), rseq);
                tracing::debug!(sip_call_id = %self.sip_call_id, rseq, acknowledged, "PRACK");
                if let Some(provisional) = next {
                    self.transmit(dialog, provisional);
                }
            }
            _ = sleep => match self.machine.poll(Instant::now()) {
                Some(Step::Send(provisional)) => self.transmit(dialog, provisional),
                Some(Step::GiveUp) => {
                    tracing::info!(sip_call_id = %self.sip_call_id, "no PRACK for a reliable provisional response");
                    return Wake::GaveUp;
                }
                None => {}
            },
        }
        Wake::Again
    }

    /// Waits (handling PRACKs and retransmissions) until a 2xx may go: not while a reliable
    /// 183 with SDP is unacknowledged (RFC 3262 §3). False when it gave up.
    pub async fn ready_to_answer(&mut self, dialog: &InviteDialog) -> bool {
        while !self.machine.may_answer() {
            if self.wake(dialog).await == Wake::GaveUp {
                return false;
            }
        }
        true
    }

    fn transmit(&self, dialog: &InviteDialog, provisional: Provisional) {
        let mut headers = Vec::new();
        if let Some(rseq) = provisional.rseq {
            headers.push(Header::Require("100rel".into()));
            headers.push(Header::RSeq(rseq.to_string().into()));
        }
        let body = (provisional.status == 183).then(|| self.early_sdp.clone()).flatten();
        if body.is_some() {
            headers.push(Header::ContentType(rsipstack::sip::headers::ContentType::new("application/sdp")));
        }
        tracing::debug!(sip_call_id = %self.sip_call_id, status = provisional.status, rseq = ?provisional.rseq, repeat = provisional.repeat, "provisional response");
        if let Err(error) = dialog.ringing(Some(headers), body) {
            tracing::debug!(%error, "provisional response not sent");
        }
    }
}

impl Drop for Ringer {
    fn drop(&mut self) {
        if let Ok(mut map) = self.shared.pracks.lock() {
            map.remove(&self.sip_call_id);
        }
    }
}
