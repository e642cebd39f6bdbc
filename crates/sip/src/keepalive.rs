//! OPTIONS keep-alives from this gateway to every trunk (RFC 3261 §11): one out-of-dialog
//! OPTIONS per trunk per interval through rsipstack's client transaction (retransmitted on
//! UDP by the transaction layer; on the trunk's TCP or TLS connection for a `transport =
//! "tcp"` or `"tls"` trunk); answers and timeouts are counted and a trunk that stops
//! answering is logged.

use std::sync::Arc;
use std::time::Duration;

use rsipstack::sip::typed::{From as FromHeader, To};
use rsipstack::sip::{Method, SipMessage, Uri};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::SipAddr;
use tokio_util::sync::CancellationToken;

use crate::config::TrunkConfig;
use crate::counters::SipCounters;
use crate::gateway::Shared;

/// Sends one OPTIONS to `trunk`; the final status code, or `None` on a timeout or error.
pub(crate) async fn ping(shared: &Shared, trunk: &TrunkConfig) -> Option<u16> {
    if let Err(why) = crate::tls::connect(shared, trunk).await {
        tracing::warn!(trunk = %trunk.name, "{why}");
        return None;
    }
    let transport = trunk.transport.uri_param().map(|t| format!(";transport={t}")).unwrap_or_default();
    let target = Uri::try_from(format!("sip:{}{transport}", trunk.uri_host()).as_str()).ok()?;
    let own = crate::outbound::local_contact_addr(shared, trunk);
    let local = Uri::try_from(format!("sip:palaver@{own}").as_str()).ok()?;
    let destination = crate::outbound::trunk_destination(trunk);
    // The Via names the transport the OPTIONS travels on (TCP's listener shares `listen`,
    // TLS's is `listen_tls`).
    let mut via_addr = SipAddr::from(own);
    via_addr.r#type = destination.r#type;
    let via = shared.endpoint.get_via(Some(via_addr), None).ok()?;
    let from =
        FromHeader { display_name: None, uri: local, params: vec![] }.with_tag(rsipstack::transaction::make_tag());
    let to = To { display_name: None, uri: target.clone(), params: vec![] };
    let request = shared.endpoint.make_request(Method::Options, target, via, from, to, 1, None);
    let key = TransactionKey::from_request(&request, TransactionRole::Client).ok()?;
    let mut tx = Transaction::new_client(key, request, shared.endpoint.clone(), None);
    tx.destination = Some(destination);
    tx.send().await.ok()?;
    let wait = async {
        while let Some(message) = tx.receive().await {
            if let SipMessage::Response(response) = message
                && response.status_code.code() >= 200
            {
                return Some(response.status_code.code());
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(8), wait).await.ok().flatten()
}

/// Pings every trunk every `every` until `cancel`.
pub(crate) async fn run(shared: Arc<Shared>, every: Duration, cancel: CancellationToken) {
    let mut up = vec![true; shared.trunks.all().len()];
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        for (i, trunk) in shared.trunks.all().iter().enumerate() {
            let answered = ping(&shared, trunk).await.is_some();
            SipCounters::inc(if answered {
                &shared.counters.keepalives_ok
            } else {
                &shared.counters.keepalives_failed
            });
            if answered != up[i] {
                up[i] = answered;
                if answered {
                    tracing::info!(trunk = %trunk.name, "trunk answers OPTIONS again");
                } else {
                    tracing::warn!(trunk = %trunk.name, address = %trunk.address, "trunk does not answer OPTIONS");
                }
            }
        }
    }
}
