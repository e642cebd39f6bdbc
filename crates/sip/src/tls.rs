//! SIP over TLS to trunks (`transport = "tls"`): the client side of rsipstack's TLS
//! transport. rsipstack dials a TLS connection the first time a request goes to a
//! `transport=tls` destination (and again after the trunk closed it) with the transport
//! layer's one client [`TlsConfig`]; this module builds that configuration from the TLS
//! trunks' `ca_file`s (the trust anchors: nothing else is trusted, rsipstack has no implicit
//! roots) and the [`TrunkNames`] resolver, which sends a trunk's `tls_server_name` to its
//! configured `address` without DNS, so that name is the SNI and the name the certificate
//! is checked against. Before palaver's INVITEs and OPTIONS to a TLS trunk, [`connect`]
//! opens (or finds) the connection itself, so a handshake that fails ends the call at once
//! with words for the log ([`describe_failure`]: which trunk, which `ca_file`, rustls's
//! reason) instead of a transaction timeout.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use rsipstack::sip::{Host, HostWithPort};
use rsipstack::transport::SipAddr;
use rsipstack::transport::tls::TlsConfig;
use rsipstack::transport::transport_layer::{DefaultDomainResolver, DomainResolver};

use crate::config::{TrunkConfig, TrunkTransport};
use crate::gateway::{Shared, SipError};

/// The client TLS configuration for the trunks: every TLS trunk's `ca_file` read into one
/// trust store (`None` when no trunk uses TLS).
pub(crate) fn client_config(trunks: &[TrunkConfig]) -> Result<Option<TlsConfig>, SipError> {
    let mut pem = Vec::new();
    for trunk in trunks.iter().filter(|t| t.transport == TrunkTransport::Tls) {
        let Some(path) = &trunk.ca_file else { continue };
        let text = std::fs::read(path).map_err(|e| SipError::TlsFile(path.display().to_string(), e))?;
        if !String::from_utf8_lossy(&text).contains("-----BEGIN CERTIFICATE-----") {
            return Err(SipError::Transport(format!(
                "trunk `{}`: ca_file {} holds no PEM certificate",
                trunk.name,
                path.display()
            )));
        }
        pem.extend_from_slice(&text);
        pem.push(b'\n');
    }
    Ok((!pem.is_empty()).then(|| TlsConfig { ca_certs: Some(pem), ..TlsConfig::default() }))
}

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
    if lower.contains("certificate") || lower.contains("unknownissuer") || lower.contains("notvalidforname") {
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
    fn the_client_config_trusts_the_tls_trunks_ca_files_only() {
        let dir = std::env::temp_dir().join(format!("palaver-sip-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        let tls = trunk(&format!("transport = \"tls\"\nca_file = \"{}\"", ca.display()));
        let config = client_config(&[trunk(""), tls.clone()]).unwrap().expect("a TLS trunk");
        assert!(String::from_utf8_lossy(config.ca_certs.as_ref().unwrap()).contains("BEGIN CERTIFICATE"));
        assert!(client_config(&[trunk("")]).unwrap().is_none(), "no TLS trunk: no client config");
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let bad = trunk(&format!("transport = \"tls\"\nca_file = \"{}\"", garbage.display()));
        assert!(client_config(&[bad]).unwrap_err().to_string().contains("no PEM certificate"));
        let missing = trunk("transport = \"tls\"\nca_file = \"/nonexistent/ca.pem\"");
        assert!(matches!(client_config(&[missing]), Err(SipError::TlsFile(..))));
        let why = describe_failure(&tls, "invalid peer certificate: UnknownIssuer").unwrap();
        assert!(why.contains("trunk `sbc`") && why.contains("ca.pem") && why.contains("UnknownIssuer"), "{why}");
        assert_eq!(describe_failure(&trunk(""), "timeout"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
