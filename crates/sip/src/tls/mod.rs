//! SIP over TLS (`listen_tls`, trunks with `transport = "tls"`). rsipstack carries the SIP
//! over TLS connections; palaver makes the connections: [`client`] dials every TLS
//! connection to a trunk with that trunk's own rustls configuration (its `ca_file` and
//! `crl_file` only, its client certificate for mutual TLS, its `tls_server_name` as SNI on
//! every dial, redials included), and [`server`] accepts on `listen_tls`, requiring client
//! certificates from `[sip] tls_client_ca` when set. The [`TrunkNames`] resolver sends a
//! trunk's `tls_server_name` to its configured `address` without DNS. Before palaver's
//! INVITEs and OPTIONS to a TLS trunk, [`connect`] opens (or finds) the connection, so a
//! handshake that fails ends the call at once with words for the log ([`describe_failure`]:
//! which trunk, which `ca_file`, rustls's reason) instead of a transaction timeout.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use rsipstack::sip::{Host, HostWithPort};
use rsipstack::transport::SipAddr;
use rsipstack::transport::transport_layer::{DefaultDomainResolver, DomainResolver};

use crate::config::{TrunkConfig, TrunkTransport};
use crate::gateway::Shared;

pub(crate) mod client;
#[cfg(test)]
mod handshakes;
pub(crate) mod server;

/// Resolves the TLS trunks' `tls_server_name`s to their configured addresses (any other
/// name goes to DNS, as rsipstack would).
pub(crate) struct TrunkNames {
    names: HashMap<(String, u16), SocketAddr>,
    dns: DefaultDomainResolver,
}

impl TrunkNames {
    pub fn new(trunks: &[TrunkConfig]) -> Self {
        let names = trunks
            .iter()
            .filter_map(|t| {
                let name = t.tls_server_name.as_ref()?;
                Some(((name.to_ascii_lowercase(), t.address.port()), t.address))
            })
            .collect();
        Self { names, dns: DefaultDomainResolver::default() }
    }

    fn configured(&self, target: &SipAddr) -> Option<SipAddr> {
        let Host::Domain(domain) = &target.addr.host else { return None };
        let port = target.addr.port.as_ref().map_or(5061, |p| p.value());
        let address = self.names.get(&(domain.to_string().to_ascii_lowercase(), port))?;
        Some(SipAddr {
            r#type: target.r#type,
            addr: HostWithPort { host: Host::IpAddr(address.ip()), port: Some(address.port().into()) },
        })
    }
}

impl DomainResolver for TrunkNames {
    // `#[async_trait]` written out (the trait is declared with it).
    fn resolve<'s, 't, 'f>(
        &'s self,
        target: &'t SipAddr,
    ) -> Pin<Box<dyn Future<Output = rsipstack::Result<SipAddr>> + Send + 'f>>
    where
        's: 'f,
        't: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            match self.configured(target) {
                Some(address) => Ok(address),
                None => self.dns.resolve_with_lookup(target).await,
            }
        })
    }
}

/// For a TLS trunk: makes sure a verified TLS connection to it is open (the cached one, or
/// a new one dialled now) before a request goes out. rsipstack treats a failed connect as
/// "retry on the transaction's timers", so an untrusted certificate would surface only as
/// a timeout 32 s later with the reason lost; dialled here, it fails at once with
/// [`describe_failure`]'s words. Other transports: nothing to do.
pub(crate) async fn connect(shared: &Shared, trunk: &TrunkConfig) -> Result<(), String> {
    if trunk.transport != TrunkTransport::Tls {
        return Ok(());
    }
    let destination = crate::outbound::trunk_destination(trunk);
    match shared.endpoint.transport_layer.lookup(&destination, None).await {
        Ok(_) => Ok(()),
        Err(error) => {
            let error = error.to_string();
            Err(describe_failure(trunk, &error).unwrap_or(error))
        }
    }
}

/// The log's words for a failed request to `trunk` (`error` from rsipstack): a TLS trunk's
/// certificate problems name the trunk, what it was checked against, and what rustls said.
pub(crate) fn describe_failure(trunk: &TrunkConfig, error: &str) -> Option<String> {
    if trunk.transport != TrunkTransport::Tls {
        return None;
    }
    let ca = trunk.ca_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let name = trunk.tls_server_name.clone().unwrap_or_else(|| trunk.address.ip().to_string());
    let lower = error.to_ascii_lowercase();
    if lower.contains("certificaterequired") || lower.contains("certificate required") {
        Some(format!(
            "TLS to trunk `{}` ({}): the trunk requires a client certificate: set client_cert_file and client_key_file ({error})",
            trunk.name, trunk.address
        ))
    } else if lower.contains("certificate") || lower.contains("unknownissuer") || lower.contains("notvalidforname") {
        Some(format!(
            "TLS to trunk `{}` ({}): the trunk's certificate was refused: it must chain to ca_file {ca} and name `{name}` ({error})",
            trunk.name, trunk.address
        ))
    } else {
        Some(format!("TLS to trunk `{}` ({}) failed: {error}", trunk.name, trunk.address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunk(toml_text: &str) -> TrunkConfig {
        toml::from_str(&format!(
            "name = \"sbc\"\naddress = \"127.0.0.1:5061\"\nallow_from = [\"127.0.0.1\"]\n{toml_text}"
        ))
        .unwrap()
    }

    #[test]
    fn a_trunks_server_name_resolves_to_its_address_and_only_on_its_port() {
        let names = TrunkNames::new(&[trunk("transport = \"tls\"\ntls_server_name = \"SBC.carrier.example\"")]);
        let target = |host: &str, port: u16| SipAddr {
            r#type: Some(rsipstack::sip::Transport::Tls),
            addr: HostWithPort { host: Host::Domain(host.into()), port: Some(port.into()) },
        };
        let resolved = names.configured(&target("sbc.carrier.example", 5061)).expect("configured");
        assert_eq!(resolved.addr.to_string(), "127.0.0.1:5061");
        assert_eq!(resolved.r#type, Some(rsipstack::sip::Transport::Tls));
        assert!(names.configured(&target("sbc.carrier.example", 5062)).is_none());
        assert!(names.configured(&target("other.example", 5061)).is_none());
    }

    #[test]
    fn failures_name_the_trunk_and_what_to_configure() {
        let tls = trunk("transport = \"tls\"\nca_file = \"/etc/palaver/ca.pem\"");
        let why = describe_failure(&tls, "invalid peer certificate: UnknownIssuer").unwrap();
        assert!(why.contains("trunk `sbc`") && why.contains("ca.pem") && why.contains("UnknownIssuer"), "{why}");
        let why = describe_failure(&tls, "received fatal alert: CertificateRequired").unwrap();
        assert!(why.contains("client_cert_file"), "{why}");
        assert_eq!(describe_failure(&trunk(""), "timeout"), None);
    }
}
