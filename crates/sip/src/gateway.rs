//! The SIP user agent: rsipstack's transports (UDP and TCP on `[sip] listen`, TLS on
//! `listen_tls`, TLS client connections to `transport = "tls"` trunks: [`crate::tls`]),
//! transaction layer and dialog layer (with the RFC 8760 spelling inspector,
//! [`crate::digest`]), the allow-list in front of the parser, the loop over incoming
//! transactions (new INVITEs start an [`inbound`](crate::inbound)
//! call, in-dialog requests go to their dialog, OPTIONS are answered), the dispatcher of the
//! call machinery's events for phone parties, and OPTIONS keep-alives to the trunks.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palaver_signaling::domain::calls::CallEvent;
use palaver_signaling::gateway::Gateway;
use rsipstack::EndpointBuilder;
use rsipstack::dialog::dialog::Dialog;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, Request, StatusCode};
use rsipstack::transaction::endpoint::EndpointInner;
use rsipstack::transaction::key::TransactionRole;
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::TransportLayer;
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::udp::UdpConnection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Route, SipConfig};
use crate::counters::SipCounters;
use crate::trunks::Trunks;

/// Methods this gateway answers (`Allow`).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO, REFER, NOTIFY";

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("SIP transport: {0}")]
    Transport(String),
    #[error("reading {0}: {1}")]
    TlsFile(String, std::io::Error),
}

/// State shared by the gateway's tasks.
pub(crate) struct Shared {
    pub numbers: HashMap<String, Route>,
    pub trunks: Trunks,
    pub counters: Arc<SipCounters>,
    pub gateway: Gateway,
    pub dialogs: Arc<DialogLayer>,
    pub endpoint: Arc<EndpointInner>,
    /// The UDP address this gateway listens on (Contact, Via).
    pub local: SocketAddr,
    /// The SIP/TLS address, when `listen_tls` is set (the Contact of dialogs over TLS).
    pub tls: Option<SocketAddr>,
    /// Phone legs of calls, by (palaver call id, the phone's raw id): where their call
    /// events go. A call may have two (a transfer from one phone to another number).
    pub calls: Mutex<HashMap<(String, String), mpsc::UnboundedSender<CallEvent>>>,
    /// Inbound INVITEs waiting for an answer, by SIP Call-ID: where the `RSeq` of each
    /// PRACK goes ([`crate::ringing::Ringer`]).
    pub pracks: Mutex<HashMap<String, mpsc::UnboundedSender<u32>>>,
    /// Answered calls, by SIP Call-ID: told when a REFER's response has gone out (its
    /// NOTIFYs must follow the 202; RFC 3515 §2.4.4).
    pub refers: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
    /// `[sip] provisional_refresh_secs`.
    pub provisional_refresh_secs: u64,
    /// `[sip] lobby_hold_audio` (`crate::early`).
    pub lobby_hold_audio: Option<std::path::PathBuf>,
    /// Early dialogs (by SIP Call-ID) whose INVITE offer/answer completed before the final
    /// answer: a reliable 18x carried the answer (palaver's 183 with ringback, or the
    /// trunk's on a call palaver placed). An early UPDATE's offer is judged by it
    /// ([`crate::hold::early_update`]).
    pub early_answers: Mutex<std::collections::HashSet<String>>,
    /// The TLS trunks' client configurations (held here: the TLS connector keeps them
    /// weakly, `crate::tls::client`).
    pub _tls_trunks: Arc<crate::tls::client::TrunkTlsSet>,
}

impl Shared {
    pub fn register(&self, call_id: &str, phone: &str) -> mpsc::UnboundedReceiver<CallEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut calls) = self.calls.lock() {
            calls.insert((call_id.to_owned(), phone.to_owned()), tx);
        }
        rx
    }

    /// Whether the early offer/answer of SIP call `call_id` completed.
    pub fn early_answered(&self, call_id: &str) -> bool {
        self.early_answers.lock().is_ok_and(|set| set.contains(call_id))
    }

    pub fn unregister(&self, call_id: &str, phone: &str) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.remove(&(call_id.to_owned(), phone.to_owned()));
        }
    }
}

/// The running gateway. Dropping it does not stop it; [`SipGateway::shutdown`] does.
pub struct SipGateway {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    udp: SocketAddr,
    tls: Option<SocketAddr>,
}

impl std::fmt::Debug for SipGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipGateway").field("udp", &self.udp).finish_non_exhaustive()
    }
}

impl SipGateway {
    /// Binds the transports and starts serving: calls to `numbers` follow their routes
    /// through `gateway`'s call machinery.
    pub async fn start(config: SipConfig, numbers: Vec<(String, Route)>, gateway: Gateway) -> Result<Self, SipError> {
        let cancel = CancellationToken::new();
        let transport_error = |e: rsipstack::Error| SipError::Transport(e.to_string());
        // Requests to a TLS trunk's `tls_server_name` go to its address (`crate::tls`).
        let names = Box::new(crate::tls::TrunkNames::new(&config.trunks));
        let transports = TransportLayer::new_with_domain_resolver(cancel.child_token(), names);
        // Every TLS connection to a trunk is dialled with that trunk's own configuration
        // (its CA, CRLs, client certificate and server name: `crate::tls::client`).
        let tls_trunks = Arc::new(crate::tls::client::TrunkTlsSet::new(&config.trunks)?);
        if !tls_trunks.is_empty() {
            crate::tls::client::register(&tls_trunks);
        }
        let udp = UdpConnection::create_connection(config.listen, None, Some(cancel.child_token()))
            .await
            .map_err(transport_error)?;
        let local = udp.get_addr().get_socketaddr().map_err(transport_error)?;
        transports.add_transport(udp.into());
        // TCP on the same port as UDP (a port 0 in the config picks it once, for both).
        let tcp = TcpListenerConnection::new(local, None).await.map_err(transport_error)?;
        transports.add_transport(tcp.into());
        let counters = Arc::new(SipCounters::default());
        // The allow-list runs before a packet is parsed (or a TLS handshake is made): anyone
        // else costs one counter.
        let allowed: Arc<dyn Fn(IpAddr) -> bool + Send + Sync> = {
            let probe = Trunks::new(config.trunks.clone());
            let counters = counters.clone();
            Arc::new(move |ip: IpAddr| {
                let ok = probe.allowed(ip);
                if !ok {
                    SipCounters::inc(&counters.unknown_source);
                }
                ok
            })
        };
        let mut tls_listener = None;
        if let (Some(addr), Some(cert), Some(key)) = (config.listen_tls, &config.tls_cert, &config.tls_key) {
            let server = crate::tls::server::server_config(
                cert,
                key,
                config.tls_client_ca.as_deref(),
                config.tls_client_crl.as_deref(),
            )?;
            let listener = crate::tls::server::Listener::bind(addr, server, config.tls_client_ca.is_some()).await?;
            tls_listener = Some(listener);
        }
        // The bound address (a port 0 in the config is picked here), for Contacts.
        let tls_addr = tls_listener.as_ref().map(|l| l.local_addr());
        let trunks = Trunks::new(config.trunks.clone());
        {
            let allowed = allowed.clone();
            transports.set_whitelist(move |ip: IpAddr| {
                let ok = allowed(ip);
                async move { ok }
            });
        }
        let endpoint = EndpointBuilder::new()
            .with_user_agent("palaver")
            // RFC 8760's `SHA-256` spelling both ways (`crate::digest`).
            .with_inspector(Box::new(crate::digest::Rfc8760))
            .with_transport_layer(transports)
            .with_cancel_token(cancel.child_token())
            .build();
        let mut incoming = endpoint.incoming_transactions().map_err(transport_error)?;
        let inner = endpoint.inner.clone();
        let mut serve = Box::pin(async move {
            let _ = inner.serve().await;
        });
        // The first poll of `serve` starts the listeners: rsipstack takes its list of
        // listeners to serve at once (`serve_listens`' first statement). `listen_tls` is
        // palaver's own (`crate::tls::server`); it joins the list only after that, unserved,
        // so that rsipstack finds it among its own addresses (the Via of requests over TLS).
        let first = serve.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
        if let Some(listener) = tls_listener {
            endpoint.inner.transport_layer.add_transport(listener.placeholder().await?);
            listener.serve(endpoint.inner.clone(), allowed, cancel.child_token());
        }
        if first.is_pending() {
            tokio::spawn(serve);
        }
        let shared = Arc::new(Shared {
            numbers: numbers.into_iter().collect(),
            trunks,
            counters,
            dialogs: Arc::new(DialogLayer::new(endpoint.inner.clone())),
            endpoint: endpoint.inner.clone(),
            gateway,
            local,
            tls: tls_addr,
            calls: Mutex::new(HashMap::new()),
            pracks: Mutex::new(HashMap::new()),
            refers: Mutex::new(HashMap::new()),
            early_answers: Mutex::new(std::collections::HashSet::new()),
            provisional_refresh_secs: config.provisional_refresh_secs,
            _tls_trunks: tls_trunks,
            lobby_hold_audio: config.lobby_hold_audio.clone(),
        });
        shared.gateway.set_owned_phone_numbers(shared.numbers.keys().cloned());
        tracing::info!(udp_tcp = %local, tls = ?tls_addr, trunks = shared.trunks.all().len(), numbers = shared.numbers.len(), "SIP gateway listening");
        let serving = shared.clone();
        tokio::spawn(async move {
            while let Some(tx) = incoming.recv().await {
                serving.clone().dispatch(tx).await;
            }
        });
        if let Some(events) = shared.gateway.take_phone_events() {
            tokio::spawn(crate::inbound::relay_phone_events(shared.clone(), events));
        }
        if let Some(dial_outs) = shared.gateway.take_meeting_dial_outs() {
            tokio::spawn(crate::meeting::relay_dial_outs(shared.clone(), dial_outs));
        }
        if config.options_interval_secs > 0 {
            let every = Duration::from_secs(config.options_interval_secs);
            tokio::spawn(crate::keepalive::run(shared.clone(), every, cancel.child_token()));
        }
        // The endpoint lives as long as its tasks (they hold `endpoint.inner`).
        std::mem::forget(endpoint);
        Ok(Self { shared, cancel, udp: local, tls: tls_addr })
    }

    /// The UDP (and TCP) address the gateway listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.udp
    }

    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls
    }

    pub fn counters(&self) -> Arc<SipCounters> {
        self.shared.counters.clone()
    }

    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

impl Shared {
    /// One incoming transaction: a new INVITE starts an inbound call, requests inside a
    /// dialog go to it, OPTIONS are answered, anything else outside a dialog gets 481/405.
    async fn dispatch(self: Arc<Self>, mut tx: Transaction) {
        let in_dialog = tx.original.to_header().ok().and_then(|to| to.tag().ok().flatten()).is_some();
        let method = tx.original.method;
        if in_dialog {
            if method == Method::PRack {
                self.route_prack(&tx.original);
            }
            match self.dialogs.match_dialog(&tx) {
                // rsipstack leaves an UPDATE in an early dialog unanswered (RFC 3311 allows it).
                Some(Dialog::Invite(dialog)) if method == Method::Update && !dialog.state().is_confirmed() => {
                    let ours = dialog.role() == TransactionRole::Client;
                    crate::hold::early_update(&self, &mut tx, ours).await;
                }
                Some(mut dialog) => {
                    let refer_answered = (method == Method::Refer).then(|| self.refer_waiter(&tx.original)).flatten();
                    tokio::spawn(async move {
                        if let Err(error) = dialog.handle(&mut tx).await {
                            tracing::debug!(%error, "in-dialog request not handled");
                        }
                        if let Some(answered) = refer_answered {
                            answered.notify_one();
                        }
                    });
                }
                // rsipstack files a call palaver placed under its INVITE's id until the
                // answer, so the trunk's early UPDATE (To tag = our From tag) matches nothing.
                None if method == Method::Update && self.early_client_dialog(&tx.original) => {
                    crate::hold::early_update(&self, &mut tx, true).await;
                }
                None if method == Method::Ack => {}
                None => self.reply(&mut tx, StatusCode::CallTransactionDoesNotExist).await,
            }
            return;
        }
        match method {
            Method::Invite => {
                tokio::spawn(crate::inbound::handle_invite(self.clone(), tx));
            }
            Method::Options => {
                SipCounters::inc(&self.counters.options_answered);
                let allow = Header::Allow(rsipstack::sip::headers::Allow::new(ALLOW));
                let accept = Header::Accept(rsipstack::sip::headers::Accept::new("application/sdp"));
                if tx.reply_with(StatusCode::OK, vec![allow, accept], None).await.is_ok() {
                    self.counters.response(200);
                }
            }
            Method::Ack => {}
            Method::Bye | Method::Cancel => self.reply(&mut tx, StatusCode::CallTransactionDoesNotExist).await,
            _ => self.reply(&mut tx, StatusCode::MethodNotAllowed).await,
        }
    }

    /// Hands a PRACK's `RAck` sequence to the INVITE waiting for it (rsipstack's dialog
    /// answers the PRACK itself).
    fn route_prack(&self, request: &Request) {
        let call_id = request.call_id_header().map(|c| c.value().to_string()).unwrap_or_default();
        let rseq = request.rack_value().map(|(rseq, ..)| rseq).or_else(|| {
            request.header_value("RAck").and_then(|v| v.split_whitespace().next().and_then(|r| r.parse().ok()))
        });
        let waiting = self.pracks.lock().ok().and_then(|map| map.get(&call_id).cloned());
        if let (Some(rseq), Some(waiting)) = (rseq, waiting) {
            let _ = waiting.send(rseq);
        }
    }

    /// Whether `request` belongs to the early dialog of a call palaver placed (same Call-ID,
    /// its To tag our From tag, not answered yet).
    fn early_client_dialog(&self, request: &Request) -> bool {
        let Ok(call_id) = request.call_id_header().map(|c| c.value().to_string()) else { return false };
        let to_tag = request.to_header().ok().and_then(|to| to.tag().ok().flatten()).map(|t| t.to_string());
        self.dialogs
            .get_client_dialog_by_call_id(&call_id)
            .iter()
            .any(|d| !d.state().is_confirmed() && Some(&d.id().local_tag) == to_tag.as_ref())
    }

    /// The call waiting to hear that its REFER was answered, if any.
    fn refer_waiter(&self, request: &Request) -> Option<Arc<tokio::sync::Notify>> {
        let call_id = request.call_id_header().ok()?.value().to_string();
        self.refers.lock().ok()?.get(&call_id).cloned()
    }

    pub async fn reply(&self, tx: &mut Transaction, status: StatusCode) {
        let code = status.code();
        if tx.reply(status).await.is_ok() {
            self.counters.response(code);
        }
    }
}

/// Marks an early dialog's offer/answer as completed (see [`Shared::early_answers`]) and
/// forgets it when dropped (the call task's end).
pub(crate) struct EarlyAnswer<'a> {
    shared: &'a Shared,
    call_id: Option<String>,
}

impl<'a> EarlyAnswer<'a> {
    pub fn new(shared: &'a Shared) -> Self {
        Self { shared, call_id: None }
    }

    /// The early offer/answer of SIP call `call_id` is complete.
    pub fn completed(&mut self, call_id: &str) {
        if let Ok(mut set) = self.shared.early_answers.lock() {
            set.insert(call_id.to_owned());
        }
        self.call_id = Some(call_id.to_owned());
    }
}

impl Drop for EarlyAnswer<'_> {
    fn drop(&mut self) {
        if let (Some(call_id), Ok(mut set)) = (&self.call_id, self.shared.early_answers.lock()) {
            set.remove(call_id);
        }
    }
}

/// The Contact of a dialog the trunk opened with `request`: on the transport the request
/// came over (its top Via), so in-dialog requests (ACK, BYE, re-INVITE) stay on TLS or TCP
/// rather than falling back to UDP. `None` for UDP (rsipstack's default Contact).
pub(crate) fn local_contact(shared: &Shared, request: &Request) -> Option<rsipstack::sip::Uri> {
    let via = request.via_header().ok()?.value().to_ascii_uppercase();
    let text = if via.starts_with("SIP/2.0/TLS") {
        format!("sip:palaver@{};transport=tls", shared.tls?)
    } else if via.starts_with("SIP/2.0/TCP") {
        format!("sip:palaver@{};transport=tcp", shared.local)
    } else {
        return None;
    };
    rsipstack::sip::Uri::try_from(text.as_str()).ok()
}

/// The source address of a request: the Via's `received` (set by the transport when the
/// sent-by differs), else the sent-by host.
pub(crate) fn source_ip(request: &Request) -> Option<IpAddr> {
    let via = request.via_header().ok()?.value().to_string();
    let mut parts = via.split(';');
    let sent_by = parts.next()?.split_whitespace().nth(1)?.to_owned();
    for param in parts {
        if let Some(ip) = param.trim().strip_prefix("received=") {
            return ip.parse().ok();
        }
    }
    let host = match sent_by.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?.to_owned(),
        None => sent_by.split(':').next()?.to_owned(),
    };
    host.parse().ok()
}
