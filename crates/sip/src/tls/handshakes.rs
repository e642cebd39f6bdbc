//! TLS to trunks against real handshakes: private CAs and certificates from rcgen, a rustls
//! server built by `listen_tls`'s own [`server::server_config`], palaver's dial
//! ([`client::dial`]) and rsipstack's transport layer dialling through the connector.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use rsipstack::transport::{SipAddr, TransportLayer};
use tokio::io::AsyncWriteExt;

use super::client::{TrunkTlsSet, dial, register};
use super::{describe_failure, server};
use crate::config::TrunkConfig;

struct Pki {
    dir: PathBuf,
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("palaver-sip-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    fn ca(&self, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = self.dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem, cert.pem()).unwrap();
        Ca { issuer: Issuer::new(params, key), pem }
    }

    /// A certificate from `ca` for `names` (server and client use), as (cert, key) files.
    fn leaf(&self, ca: &Ca, file: &str, names: &[&str], serial: u64) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, file);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca.issuer).unwrap();
        let (cert_file, key_file) = (self.dir.join(format!("{file}.pem")), self.dir.join(format!("{file}.key")));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }

    fn crl(&self, ca: &Ca, revoked: u64) -> PathBuf {
        let file = self.dir.join(format!("crl-{revoked}.pem"));
        let crl = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(revoked),
                revocation_time: rcgen::date_time_ymd(2024, 1, 2),
                reason_code: None,
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca.issuer)
        .unwrap();
        std::fs::write(&file, crl.pem().unwrap()).unwrap();
        file
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the test server saw of one connection: the SNI and whether a client certificate
/// came (`Err`: its handshake failed).
type Seen = Result<(Option<String>, bool), String>;

/// A TLS server (`listen_tls`'s configuration) for one connection: it writes `hello`.
async fn tls_server(cert: &Path, key: &Path, client_ca: Option<&Path>) -> (SocketAddr, tokio::task::JoinHandle<Seen>) {
    tls_server_with(server::server_config(cert, key, client_ca, None).unwrap()).await
}

async fn tls_server_with(config: rustls::ServerConfig) -> (SocketAddr, tokio::task::JoinHandle<Seen>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut stream = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let (_, session) = stream.get_ref();
        let seen = (session.server_name().map(str::to_owned), session.peer_certificates().is_some());
        stream.write_all(b"hello").await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        Ok(seen)
    });
    (addr, task)
}

fn trunk(name: &str, address: SocketAddr, ca: &Path, more: &str) -> TrunkConfig {
    toml::from_str(&format!(
        "name = \"{name}\"\naddress = \"{address}\"\ntransport = \"tls\"\nca_file = \"{}\"\nallow_from = [\"127.0.0.1\"]\n{more}",
        ca.display()
    ))
    .unwrap()
}

async fn dial_trunk(set: &TrunkTlsSet, addr: SocketAddr, requested: &str) -> Result<Vec<u8>, String> {
    let trunk = set.trunk_for(addr, requested).expect("a trunk");
    let stream = dial(trunk, addr).await?;
    rsipstack::platform::tls::TlsStream::recv(&stream).await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn each_trunk_trusts_only_its_own_ca() {
    let pki = Pki::new("trust");
    let (ca_a, ca_b) = (pki.ca("carrier-a"), pki.ca("carrier-b"));
    // Trunk B's address presents a certificate from trunk A's CA naming B.
    let (cert, key) = pki.leaf(&ca_a, "a-for-b", &["sbc.b.example"], 1);
    let (b_addr, seen) = tls_server(&cert, &key, None).await;
    let a_addr: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let set = TrunkTlsSet::new(&[
        trunk("a", a_addr, &ca_a.pem, "tls_server_name = \"sbc.a.example\""),
        trunk("b", b_addr, &ca_b.pem, "tls_server_name = \"sbc.b.example\""),
    ])
    .unwrap();
    let refused = dial_trunk(&set, b_addr, "sbc.b.example").await.unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    let b = trunk("b", b_addr, &ca_b.pem, "");
    let why = describe_failure(&b, &refused).unwrap();
    assert!(why.contains("trunk `b`") && why.contains("carrier-b-ca.pem"), "{why}");
    assert!(seen.await.unwrap().is_err(), "the server saw the client give up");

    // B's own CA's certificate is accepted, with B's name as SNI.
    let (cert, key) = pki.leaf(&ca_b, "b", &["sbc.b.example"], 2);
    let (b_addr, seen) = tls_server(&cert, &key, None).await;
    let set = TrunkTlsSet::new(&[
        trunk("a", a_addr, &ca_a.pem, "tls_server_name = \"sbc.a.example\""),
        trunk("b", b_addr, &ca_b.pem, "tls_server_name = \"sbc.b.example\""),
    ])
    .unwrap();
    assert_eq!(dial_trunk(&set, b_addr, "sbc.b.example").await.unwrap(), b"hello");
    assert_eq!(seen.await.unwrap().unwrap(), (Some("sbc.b.example".to_owned()), false));
}

#[tokio::test]
async fn rsipstack_dials_an_ip_destination_with_the_trunks_name_and_nothing_else() {
    let pki = Pki::new("redial");
    let ca = pki.ca("carrier");
    // The certificate names the SBC only (no IP): a dial that sent the IP would be refused.
    let (cert, key) = pki.leaf(&ca, "sbc", &["sbc.redial.example"], 3);
    let (addr, seen) = tls_server(&cert, &key, None).await;
    let set =
        Arc::new(TrunkTlsSet::new(&[trunk("sbc", addr, &ca.pem, "tls_server_name = \"sbc.redial.example\"")]).unwrap());
    register(&set);
    let layer = TransportLayer::new(tokio_util::sync::CancellationToken::new());
    // What a request to the SBC's IP Contact does after the dialog's connection dropped.
    let ip = SipAddr { r#type: Some(rsipstack::sip::Transport::Tls), addr: addr.into() };
    layer.lookup(&ip, None).await.expect("a TLS connection to the trunk's IP");
    assert_eq!(seen.await.unwrap().unwrap().0.as_deref(), Some("sbc.redial.example"), "the SNI of an IP redial");
    // A TLS destination that is no trunk's is refused without a connection attempt.
    let stranger = SipAddr {
        r#type: Some(rsipstack::sip::Transport::Tls),
        addr: "127.0.0.2:5061".parse::<SocketAddr>().unwrap().into(),
    };
    let error = layer.lookup(&stranger, None).await.unwrap_err().to_string();
    assert!(error.contains("no `transport = \"tls\"` trunk"), "{error}");
}

#[tokio::test]
async fn mutual_tls_presents_the_trunks_client_certificate_and_listen_tls_requires_one() {
    let pki = Pki::new("mutual");
    let (trunk_ca, palaver_ca, other_ca) = (pki.ca("carrier"), pki.ca("palaver"), pki.ca("other"));
    let (sbc_cert, sbc_key) = pki.leaf(&trunk_ca, "sbc", &["sbc.mtls.example"], 4);
    let (client_cert, client_key) = pki.leaf(&palaver_ca, "palaver", &["palaver.example"], 5);
    let (stranger_cert, stranger_key) = pki.leaf(&other_ca, "stranger", &["stranger.example"], 6);
    let with = |cert: &Path, key: &Path| {
        format!(
            "tls_server_name = \"sbc.mtls.example\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"",
            cert.display(),
            key.display()
        )
    };
    // The SBC requires a certificate from palaver's CA: palaver presents one.
    let (addr, seen) = tls_server(&sbc_cert, &sbc_key, Some(&palaver_ca.pem)).await;
    let set = TrunkTlsSet::new(&[trunk("sbc", addr, &trunk_ca.pem, &with(&client_cert, &client_key))]).unwrap();
    assert_eq!(dial_trunk(&set, addr, "sbc.mtls.example").await.unwrap(), b"hello", "early data kept");
    assert_eq!(seen.await.unwrap().unwrap(), (Some("sbc.mtls.example".to_owned()), true));
    // Without a client certificate: the dial fails at once, in the trunk's words.
    let (addr, seen) = tls_server(&sbc_cert, &sbc_key, Some(&palaver_ca.pem)).await;
    let set = TrunkTlsSet::new(&[trunk("sbc", addr, &trunk_ca.pem, "tls_server_name = \"sbc.mtls.example\"")]).unwrap();
    let error = dial_trunk(&set, addr, "sbc.mtls.example").await.unwrap_err();
    assert!(error.contains("requires a client certificate"), "{error}");
    let server_side = seen.await.unwrap().unwrap_err();
    assert!(server_side.to_ascii_lowercase().contains("certificate"), "{server_side}");
    let why = describe_failure(&trunk("sbc", addr, &trunk_ca.pem, ""), &error).unwrap();
    assert!(why.contains("client_cert_file"), "{why}");
    // A certificate from a CA the SBC does not trust.
    let (addr, seen) = tls_server(&sbc_cert, &sbc_key, Some(&palaver_ca.pem)).await;
    let set = TrunkTlsSet::new(&[trunk("sbc", addr, &trunk_ca.pem, &with(&stranger_cert, &stranger_key))]).unwrap();
    let error = dial_trunk(&set, addr, "sbc.mtls.example").await.unwrap_err();
    assert!(error.contains("refused palaver's client certificate"), "{error}");
    assert!(seen.await.unwrap().is_err());
    // `tls_client_crl`: listen_tls refuses palaver's own CA's revoked certificate.
    let crl = pki.crl(&palaver_ca, 5);
    let config = server::server_config(&sbc_cert, &sbc_key, Some(&palaver_ca.pem), Some(&crl)).unwrap();
    let (addr, seen) = tls_server_with(config).await;
    let set = TrunkTlsSet::new(&[trunk("sbc", addr, &trunk_ca.pem, &with(&client_cert, &client_key))]).unwrap();
    let error = dial_trunk(&set, addr, "sbc.mtls.example").await.unwrap_err();
    assert!(error.contains("refused palaver's client certificate"), "{error}");
    let server_side = seen.await.unwrap().unwrap_err();
    assert!(server_side.contains("Revoked"), "{server_side}");
}

#[tokio::test]
async fn a_revoked_trunk_certificate_is_refused() {
    let pki = Pki::new("crl");
    let ca = pki.ca("carrier");
    let (cert, key) = pki.leaf(&ca, "sbc", &["sbc.crl.example"], 7);
    let crl = pki.crl(&ca, 7);
    let (addr, _seen) = tls_server(&cert, &key, None).await;
    let more = format!("tls_server_name = \"sbc.crl.example\"\ncrl_file = \"{}\"", crl.display());
    let set = TrunkTlsSet::new(&[trunk("sbc", addr, &ca.pem, &more)]).unwrap();
    let error = dial_trunk(&set, addr, "sbc.crl.example").await.unwrap_err();
    assert!(error.contains("Revoked"), "{error}");
    // Another certificate of the same CA is not on the list.
    let (cert, key) = pki.leaf(&ca, "sbc2", &["sbc.crl.example"], 8);
    let (addr, _seen) = tls_server(&cert, &key, None).await;
    let set = TrunkTlsSet::new(&[trunk("sbc", addr, &ca.pem, &more)]).unwrap();
    assert_eq!(dial_trunk(&set, addr, "sbc.crl.example").await.unwrap(), b"hello");
}

#[test]
fn a_connection_belongs_to_the_trunk_by_address_then_name_then_sole_ip() {
    let pki = Pki::new("rules");
    let ca = pki.ca("carrier");
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    let set = TrunkTlsSet::new(&[
        trunk("one", addr("192.0.2.1:5061"), &ca.pem, "tls_server_name = \"one.example\""),
        trunk("two", addr("192.0.2.2:5061"), &ca.pem, ""),
        trunk("three", addr("192.0.2.2:5062"), &ca.pem, ""),
    ])
    .unwrap();
    let name = |a: &str, requested: &str| set.trunk_for(addr(a), requested).map(|t| t.name.clone());
    assert_eq!(name("192.0.2.2:5062", "192.0.2.2").as_deref(), Some("three"));
    assert_eq!(name("198.51.100.9:5061", "ONE.example.").as_deref(), Some("one"), "by tls_server_name");
    assert_eq!(name("192.0.2.1:5070", "192.0.2.1").as_deref(), Some("one"), "the only trunk on the IP");
    assert_eq!(name("192.0.2.2:5070", "192.0.2.2"), None, "two trunks on the IP: neither");
    assert_eq!(name("198.51.100.9:5061", "other.example"), None);
}

#[test]
fn bad_tls_files_are_refused_at_start() {
    let pki = Pki::new("files");
    let garbage = pki.dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let at: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let error = TrunkTlsSet::new(&[trunk("sbc", at, &garbage, "")]).err().unwrap().to_string();
    assert!(error.contains("holds no PEM"), "{error}");
    let error = TrunkTlsSet::new(&[trunk("sbc", at, Path::new("/nonexistent/ca.pem"), "")]).err().unwrap();
    assert!(matches!(error, crate::gateway::SipError::TlsFile(..)));
    let ca = pki.ca("carrier");
    let crl = format!("crl_file = \"{}\"", garbage.display());
    assert!(TrunkTlsSet::new(&[trunk("sbc", at, &ca.pem, &crl)]).is_err());
    assert!(server::server_config(&garbage, &garbage, None, None).is_err());
}
