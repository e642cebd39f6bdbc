//! The `[sip]`, `[[sip.trunks]]` and `[[phone_numbers]]` configuration (the server's TOML,
//! exactly the shape of issue 16), its defaults and its validation, and the routes a phone
//! number can have.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[sip]`: where the gateway listens and which trunks it talks to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// UDP and TCP on this address.
    pub listen: SocketAddr,
    /// SIP over TLS on this address, when set (needs `tls_cert` and `tls_key`).
    #[serde(default)]
    pub listen_tls: Option<SocketAddr>,
    /// PEM certificate chain and private key for `listen_tls`.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS on `listen_tls`: when set, every TLS connection must present a client
    /// certificate chaining to these PEM CA certificate(s) (the handshake fails otherwise,
    /// before any SIP is read).
    #[serde(default)]
    pub tls_client_ca: Option<PathBuf>,
    /// PEM certificate revocation list(s) of `tls_client_ca`: a revoked client certificate
    /// is refused (end-entity certificates; an unknown status passes).
    #[serde(default)]
    pub tls_client_crl: Option<PathBuf>,
    /// OPTIONS keep-alives to every trunk this often (0: off).
    #[serde(default = "default_options_interval")]
    pub options_interval_secs: u64,
    /// While an inbound call waits (ringing, a queue, a meeting's lobby) its last 18x is
    /// repeated this often, so proxies do not end it (RFC 3261 §13.3.1.1; 0: never).
    #[serde(default = "default_provisional_refresh")]
    pub provisional_refresh_secs: u64,
    /// Hold audio a phone caller hears while it waits in a meeting's lobby (a 16-bit PCM
    /// WAV file, 8 to 48 kHz, mono or stereo, looped; read at start). Unset: the trunk's
    /// `hold_audio`, else its `ringback`. See docs/sip.md "Hold audio".
    #[serde(default)]
    pub lobby_hold_audio: Option<PathBuf>,
    #[serde(default)]
    pub trunks: Vec<TrunkConfig>,
}

fn default_options_interval() -> u64 {
    30
}

fn default_provisional_refresh() -> u64 {
    60
}

/// How a trunk's media is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtpPolicy {
    /// Offer and accept SDES-SRTP, fall back to RTP/AVP.
    Optional,
    /// RTP/SAVP with SDES keys only.
    Required,
    /// SRTP only (SDES or DTLS-SRTP accepted); palaver's own offers are DTLS-SRTP
    /// (`UDP/TLS/RTP/SAVP` with `a=fingerprint` and `a=setup:actpass`).
    Dtls,
    /// Plain RTP/AVP (a private interconnect).
    #[default]
    Off,
}

/// The transport palaver's requests to a trunk travel on (what the trunk sends palaver
/// arrives on whatever it chose: UDP and TCP share `listen`, TLS is `listen_tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrunkTransport {
    #[default]
    Udp,
    /// One TCP connection to `address`, opened by the first request and kept for the
    /// following ones (RFC 3261 §18).
    Tcp,
    /// SIP over TLS (RFC 3261 §26.2, RFC 5630): one TLS connection to `address`, the
    /// trunk's certificate verified against `ca_file` (and `tls_server_name`); the
    /// requests' URIs say `;transport=tls` and palaver's Contact is its `listen_tls`.
    Tls,
}

impl TrunkTransport {
    /// The `transport=` URI parameter of requests on this transport (`None` for UDP, the
    /// default of a `sip:` URI).
    pub fn uri_param(self) -> Option<&'static str> {
        match self {
            TrunkTransport::Udp => None,
            TrunkTransport::Tcp => Some("tcp"),
            TrunkTransport::Tls => Some("tls"),
        }
    }
}

/// `[[sip.trunks]]`: one carrier or session border controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    pub name: String,
    /// Where outbound INVITEs and OPTIONS go.
    pub address: SocketAddr,
    /// `udp` (default), `tcp` or `tls`: how outbound INVITEs and OPTIONS reach `address`.
    #[serde(default)]
    pub transport: TrunkTransport,
    /// PEM CA certificate(s) the trunk's TLS certificate must chain to (required with
    /// `transport = "tls"`; a public CA bundle such as `/etc/ssl/certs/ca-certificates.crt`
    /// for a carrier with a public certificate).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The name the trunk's TLS certificate must carry (and the SNI and request-URI host of
    /// palaver's requests, as SBCs route on it), e.g. `sbc.carrier.example`; connections still
    /// go to `address`. Unset: the certificate must name `address`'s IP.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// Mutual TLS: the PEM certificate chain and private key palaver presents when this
    /// trunk asks for a client certificate (both or neither; they may be `[sip] tls_cert` /
    /// `tls_key` when that certificate allows client authentication).
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// PEM certificate revocation list(s) of `ca_file`'s CAs: a revoked trunk certificate is
    /// refused (only the end-entity certificate is checked; an unknown status passes).
    #[serde(default)]
    pub crl_file: Option<PathBuf>,
    /// Source addresses accepted for inbound requests (packets from anyone else are counted
    /// and dropped before they are parsed).
    pub allow_from: Vec<IpAddr>,
    /// Digest credentials: inbound requests from the trunk must carry them (a 401
    /// challenge otherwise), and outbound requests answer the trunk's challenges with them.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Digest realm of the challenges this gateway sends.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// The digest algorithms of this gateway's challenges, in order of preference (one
    /// `WWW-Authenticate` each, on one nonce; RFC 8760 §2.4): `"SHA-256"`, `"MD5"`.
    /// Default `["MD5"]`: many trunks read only the first challenge and know only MD5.
    /// (Challenges the trunk sends palaver are answered in whichever of the two it asks.)
    #[serde(default = "default_digest_algorithms")]
    pub digest_algorithms: Vec<DigestAlgorithm>,
    /// Codecs in preference order: `PCMU`, `PCMA`, `G722`, `opus`.
    #[serde(default = "default_codecs")]
    pub codecs: Vec<String>,
    /// `optional`, `required`, `dtls` or `off`; unset: `optional` on a TLS trunk (SDES keys
    /// travel only inside TLS), `off` otherwise.
    #[serde(default)]
    pub srtp: Option<SrtpPolicy>,
    /// The number presented on outbound calls (caller-id policy): `None` presents the
    /// caller's own number when it has one, else the first owned number.
    #[serde(default)]
    pub caller_id: Option<String>,
    /// Inbound early media while the callee rings (a user, a queue, Call Automation, a
    /// meeting's lobby): `"us"`, `"eu"` or `"uk"` answer the trunk's offer in a 183 Session
    /// Progress (reliable when the trunk supports 100rel) and play that country's ringback
    /// tone on it until the answer continues on the same RTP session; `"off"` (default): 180
    /// without media.
    #[serde(default = "default_ringback")]
    pub ringback: String,
    /// The default hold audio (a WAV file, like `[sip] lobby_hold_audio`) of callers from
    /// this trunk who wait in a call queue or a meeting's lobby that has none of its own.
    #[serde(default)]
    pub hold_audio: Option<PathBuf>,
    /// Symmetric RTP to the source actually seen (an SBC behind NAT): the trunk's legs send
    /// to the address their packets come from once one authenticates (SRTP) or matches the
    /// call's stream (plain RTP) from the SDP's IP or one of `allow_from`. Off by default.
    /// See docs/sip.md "RTP latching".
    #[serde(default)]
    pub rtp_latching: bool,
}

impl TrunkConfig {
    /// The trunk's SRTP policy, with the transport's default when `srtp` is unset.
    pub fn srtp_policy(&self) -> SrtpPolicy {
        self.srtp.unwrap_or(match self.transport {
            TrunkTransport::Tls => SrtpPolicy::Optional,
            TrunkTransport::Udp | TrunkTransport::Tcp => SrtpPolicy::Off,
        })
    }

    /// The host of the URIs of requests to this trunk: `tls_server_name`, else `address`.
    pub fn uri_host(&self) -> String {
        match &self.tls_server_name {
            Some(name) => format!("{name}:{}", self.address.port()),
            None => self.address.to_string(),
        }
    }
}

/// A digest algorithm of palaver's challenges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DigestAlgorithm {
    #[serde(rename = "SHA-256")]
    Sha256,
    #[serde(rename = "MD5")]
    Md5,
}

impl DigestAlgorithm {
    /// The `algorithm=` value (RFC 8760 spelling).
    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "SHA-256",
            DigestAlgorithm::Md5 => "MD5",
        }
    }
}

fn default_digest_algorithms() -> Vec<DigestAlgorithm> {
    vec![DigestAlgorithm::Md5]
}

fn default_ringback() -> String {
    "off".to_owned()
}

fn default_realm() -> String {
    "palaver".to_owned()
}

fn default_codecs() -> Vec<String> {
    vec!["PCMU".to_owned(), "PCMA".to_owned()]
}

/// `[[phone_numbers]]`: a number the server owns and where its calls go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneNumberConfig {
    /// E.164 with the leading `+`.
    pub number: String,
    /// `call-automation`, `user:8:orgid:<oid>`, `queue:28:orgid:<appId>` or `meeting:<meetingId>`.
    pub route: String,
}

/// Where a call to an owned number goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Raise `IncomingCall` for the Call Automation backend.
    CallAutomation,
    /// Ring a directory user (the raw id `8:orgid:<oid>`).
    User(String),
    /// A call queue (the raw id `28:orgid:<appId>`).
    Queue(String),
    /// Join a meeting (through its lobby).
    Meeting(String),
}

/// Why the SIP configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SipConfigError {
    #[error("phone number `{0}` is not E.164 (`+` and 8 to 15 digits)")]
    BadNumber(String),
    #[error("phone number `{0}` is configured twice")]
    DuplicateNumber(String),
    #[error(
        "route `{0}`: expected `call-automation`, `user:8:orgid:<oid>`, `queue:28:orgid:<appId>` or `meeting:<id>`"
    )]
    BadRoute(String),
    #[error("trunk `{0}`: {1}")]
    Trunk(String, &'static str),
    #[error("[sip] listen_tls needs tls_cert and tls_key")]
    TlsFiles,
    #[error("[sip] tls_client_ca needs listen_tls (it is the CA of the clients of that listener)")]
    ClientCaWithoutTls,
    #[error("[sip] tls_client_crl needs tls_client_ca (it lists that CA's revoked certificates)")]
    ClientCrlWithoutCa,
    #[error("phone numbers are configured but there is no [sip] section")]
    NumbersWithoutSip,
}

impl Route {
    pub fn parse(route: &str) -> Result<Route, SipConfigError> {
        let bad = || SipConfigError::BadRoute(route.to_owned());
        if route == "call-automation" {
            return Ok(Route::CallAutomation);
        }
        if let Some(raw) = route.strip_prefix("user:") {
            let oid = raw.strip_prefix("8:orgid:").ok_or_else(bad)?;
            return if oid.is_empty() { Err(bad()) } else { Ok(Route::User(raw.to_owned())) };
        }
        if let Some(raw) = route.strip_prefix("queue:") {
            let app = raw.strip_prefix("28:orgid:").ok_or_else(bad)?;
            return if app.is_empty() { Err(bad()) } else { Ok(Route::Queue(raw.to_owned())) };
        }
        if let Some(id) = route.strip_prefix("meeting:") {
            return if id.is_empty() { Err(bad()) } else { Ok(Route::Meeting(id.to_owned())) };
        }
        Err(bad())
    }
}

/// True for `+` followed by 8 to 15 digits.
pub fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// A number as a trunk writes it in a URI user part (`+1425...`, `1425...`, `tel`-style
/// visual separators) in E.164 form, when it is one.
pub fn normalize_number(user: &str) -> Option<String> {
    let digits: String = user.chars().filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' ')).collect();
    let number = if digits.starts_with('+') { digits } else { format!("+{digits}") };
    is_e164(&number).then_some(number)
}

/// Checks the whole configuration and resolves the routes.
pub fn validate(
    sip: Option<&SipConfig>,
    numbers: &[PhoneNumberConfig],
) -> Result<Vec<(String, Route)>, SipConfigError> {
    let Some(sip) = sip else {
        return if numbers.is_empty() { Ok(Vec::new()) } else { Err(SipConfigError::NumbersWithoutSip) };
    };
    if sip.listen_tls.is_some() && (sip.tls_cert.is_none() || sip.tls_key.is_none()) {
        return Err(SipConfigError::TlsFiles);
    }
    if sip.tls_client_ca.is_some() && sip.listen_tls.is_none() {
        return Err(SipConfigError::ClientCaWithoutTls);
    }
    if sip.tls_client_crl.is_some() && sip.tls_client_ca.is_none() {
        return Err(SipConfigError::ClientCrlWithoutCa);
    }
    for trunk in &sip.trunks {
        let fail = |why| Err(SipConfigError::Trunk(trunk.name.clone(), why));
        if trunk.name.is_empty() {
            return fail("has no name");
        }
        if trunk.allow_from.is_empty() {
            return fail("allow_from is empty: no inbound request would be accepted");
        }
        if trunk.username.is_some() != trunk.password.is_some() {
            return fail("username and password go together");
        }
        if trunk.digest_algorithms.is_empty() {
            return fail("digest_algorithms must list SHA-256 and/or MD5");
        }
        if trunk.codecs.is_empty()
            || trunk
                .codecs
                .iter()
                .any(|c| !matches!(c.to_ascii_uppercase().as_str(), "PCMU" | "PCMA" | "G722" | "OPUS"))
        {
            return fail("codecs must be a non-empty list of PCMU, PCMA, G722, opus");
        }
        if let Some(id) = &trunk.caller_id
            && !is_e164(id)
        {
            return fail("caller_id must be E.164");
        }
        if !matches!(trunk.ringback.to_ascii_lowercase().as_str(), "off" | "us" | "eu" | "uk") {
            return fail("ringback must be off, us, eu or uk");
        }
        if trunk.transport == TrunkTransport::Tls {
            if trunk.ca_file.is_none() {
                return fail("transport = \"tls\" needs ca_file (the CA the trunk's certificate chains to)");
            }
            if sip.listen_tls.is_none() {
                return fail("transport = \"tls\" needs [sip] listen_tls (palaver's Contact on TLS)");
            }
        } else if trunk.tls_server_name.is_some() {
            return fail("tls_server_name needs transport = \"tls\"");
        } else if trunk.client_cert_file.is_some() || trunk.client_key_file.is_some() || trunk.crl_file.is_some() {
            return fail("client_cert_file, client_key_file and crl_file need transport = \"tls\"");
        }
        if trunk.client_cert_file.is_some() != trunk.client_key_file.is_some() {
            return fail("client_cert_file and client_key_file go together");
        }
        if let Some(name) = &trunk.tls_server_name
            && (name.is_empty()
                || name.parse::<IpAddr>().is_ok()
                || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
        {
            return fail("tls_server_name must be a DNS name");
        }
    }
    let mut routes = Vec::with_capacity(numbers.len());
    for n in numbers {
        if !is_e164(&n.number) {
            return Err(SipConfigError::BadNumber(n.number.clone()));
        }
        if routes.iter().any(|(number, _)| *number == n.number) {
            return Err(SipConfigError::DuplicateNumber(n.number.clone()));
        }
        routes.push((n.number.clone(), Route::parse(&n.route)?));
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        sip: Option<SipConfig>,
        #[serde(default)]
        phone_numbers: Vec<PhoneNumberConfig>,
    }

    const ISSUE_SHAPE: &str = r#"
[sip]
listen = "127.0.0.1:5060"
[[sip.trunks]]
name = "carrier"
address = "127.0.0.1:5080"
allow_from = ["127.0.0.1"]
username = "palaver"
password = "s3cret"
codecs = ["PCMA", "PCMU"]
srtp = "off"
[[sip.trunks]]
name = "tcp-sbc"
address = "127.0.0.1:5090"
transport = "tcp"
allow_from = ["127.0.0.2"]
[[phone_numbers]]
number = "+14255550100"
route = "call-automation"
[[phone_numbers]]
number = "+14255550101"
route = "user:8:orgid:0b000000-0000-4000-8000-00000000000b"
[[phone_numbers]]
number = "+14255550102"
route = "queue:28:orgid:support"
[[phone_numbers]]
number = "+14255550103"
route = "meeting:m1"
"#;

    #[test]
    fn the_issue_shape_parses_and_every_route_resolves() {
        let file: File = toml::from_str(ISSUE_SHAPE).unwrap();
        let sip = file.sip.unwrap();
        assert_eq!(sip.trunks[0].codecs, ["PCMA", "PCMU"]);
        assert_eq!(sip.trunks[0].transport, TrunkTransport::Udp, "UDP unless the trunk says otherwise");
        assert_eq!(sip.trunks[1].transport, TrunkTransport::Tcp);
        assert_eq!(sip.trunks[1].transport.uri_param(), Some("tcp"));
        assert_eq!(sip.options_interval_secs, 30);
        assert_eq!(sip.provisional_refresh_secs, 60);
        let routes = validate(Some(&sip), &file.phone_numbers).unwrap();
        assert_eq!(routes[0].1, Route::CallAutomation);
        assert_eq!(routes[1].1, Route::User("8:orgid:0b000000-0000-4000-8000-00000000000b".into()));
        assert_eq!(routes[2].1, Route::Queue("28:orgid:support".into()));
        assert_eq!(routes[3].1, Route::Meeting("m1".into()));
    }

    #[test]
    fn bad_numbers_routes_and_trunks_are_refused() {
        let file: File = toml::from_str(ISSUE_SHAPE).unwrap();
        let sip = file.sip.unwrap();
        let number = |n: &str, r: &str| vec![PhoneNumberConfig { number: n.into(), route: r.into() }];
        assert!(matches!(
            validate(Some(&sip), &number("14255550100", "call-automation")),
            Err(SipConfigError::BadNumber(_))
        ));
        assert!(matches!(
            validate(Some(&sip), &number("+14255550100", "user:8:acs:x")),
            Err(SipConfigError::BadRoute(_))
        ));
        assert!(matches!(validate(Some(&sip), &number("+14255550100", "queue:")), Err(SipConfigError::BadRoute(_))));
        let mut twice = number("+14255550100", "call-automation");
        twice.extend(number("+14255550100", "meeting:x"));
        assert!(matches!(validate(Some(&sip), &twice), Err(SipConfigError::DuplicateNumber(_))));
        assert_eq!(validate(None, &twice), Err(SipConfigError::NumbersWithoutSip));
        let mut open = sip.clone();
        open.trunks[0].allow_from.clear();
        assert!(matches!(validate(Some(&open), &[]), Err(SipConfigError::Trunk(..))));
        let mut lonely = sip.clone();
        lonely.trunks[0].password = None;
        assert!(matches!(validate(Some(&lonely), &[]), Err(SipConfigError::Trunk(..))));
        assert!(toml::from_str::<File>("[sip]\nlisten = \"127.0.0.1:5060\"\nbogus = 1\n").is_err());
        let sctp = ISSUE_SHAPE.replace("transport = \"tcp\"", "transport = \"sctp\"");
        assert!(toml::from_str::<File>(&sctp).is_err(), "only udp, tcp and tls");
    }

    #[test]
    fn a_tls_trunk_needs_a_ca_file_and_listen_tls_and_defaults_to_sdes() {
        let tls = ISSUE_SHAPE.replace(
            "transport = \"tcp\"",
            "transport = \"tls\"\nca_file = \"/etc/palaver/sbc-ca.pem\"\ntls_server_name = \"sbc.example\"",
        );
        let file: File = toml::from_str(&tls).unwrap();
        let mut sip = file.sip.unwrap();
        let trunk = &sip.trunks[1];
        assert_eq!((trunk.transport, trunk.transport.uri_param()), (TrunkTransport::Tls, Some("tls")));
        assert_eq!(trunk.srtp_policy(), SrtpPolicy::Optional, "SDES keys by default inside TLS");
        assert_eq!(trunk.uri_host(), "sbc.example:5090");
        assert_eq!(sip.trunks[0].srtp_policy(), SrtpPolicy::Off);
        assert_eq!(sip.trunks[0].uri_host(), "127.0.0.1:5080");
        let needs_listen_tls = validate(Some(&sip), &[]).unwrap_err().to_string();
        assert!(needs_listen_tls.contains("listen_tls"), "{needs_listen_tls}");
        sip.listen_tls = Some("127.0.0.1:5061".parse().unwrap());
        sip.tls_cert = Some("/c.pem".into());
        sip.tls_key = Some("/k.pem".into());
        assert!(validate(Some(&sip), &file.phone_numbers).is_ok());
        let mut no_ca = sip.clone();
        no_ca.trunks[1].ca_file = None;
        assert!(validate(Some(&no_ca), &[]).unwrap_err().to_string().contains("ca_file"));
        let mut ip_name = sip.clone();
        ip_name.trunks[1].tls_server_name = Some("10.0.0.1".into());
        assert!(validate(Some(&ip_name), &[]).unwrap_err().to_string().contains("DNS name"));
        let mut udp_name = sip.clone();
        udp_name.trunks[0].tls_server_name = Some("sbc.example".into());
        assert!(validate(Some(&udp_name), &[]).unwrap_err().to_string().contains("needs transport"));
        let mut no_digest = sip.clone();
        no_digest.trunks[0].digest_algorithms.clear();
        assert!(validate(Some(&no_digest), &[]).is_err());
        let sha: File = toml::from_str(
            &tls.replace("srtp = \"off\"", "srtp = \"off\"\ndigest_algorithms = [\"SHA-256\", \"MD5\"]"),
        )
        .unwrap();
        assert_eq!(sha.sip.unwrap().trunks[0].digest_algorithms, [DigestAlgorithm::Sha256, DigestAlgorithm::Md5]);
        assert!(toml::from_str::<File>(&tls.replace("srtp = \"off\"", "digest_algorithms = [\"SHA-1\"]")).is_err());
    }

    #[test]
    fn mutual_tls_and_crl_keys_need_tls_and_go_in_pairs() {
        let tls = ISSUE_SHAPE.replace(
            "transport = \"tcp\"",
            "transport = \"tls\"\nca_file = \"/ca.pem\"\nclient_cert_file = \"/c.pem\"\nclient_key_file = \"/k.pem\"\ncrl_file = \"/crl.pem\"",
        );
        let mut sip = toml::from_str::<File>(&tls).unwrap().sip.unwrap();
        sip.listen_tls = Some("127.0.0.1:5061".parse().unwrap());
        sip.tls_cert = Some("/c.pem".into());
        sip.tls_key = Some("/k.pem".into());
        sip.tls_client_ca = Some("/clients-ca.pem".into());
        assert!(validate(Some(&sip), &[]).is_ok());
        let mut half = sip.clone();
        half.trunks[1].client_key_file = None;
        assert!(validate(Some(&half), &[]).unwrap_err().to_string().contains("go together"));
        let mut udp = sip.clone();
        udp.trunks[0].crl_file = Some("/crl.pem".into());
        assert!(validate(Some(&udp), &[]).unwrap_err().to_string().contains("need transport"));
        let mut no_listener = sip.clone();
        no_listener.trunks.truncate(1);
        no_listener.listen_tls = None;
        assert_eq!(validate(Some(&no_listener), &[]), Err(SipConfigError::ClientCaWithoutTls));
        let mut crl_alone = sip.clone();
        crl_alone.tls_client_ca = None;
        crl_alone.tls_client_crl = Some("/clients.crl".into());
        assert_eq!(validate(Some(&crl_alone), &[]), Err(SipConfigError::ClientCrlWithoutCa));
    }

    #[test]
    fn numbers_from_uri_user_parts_become_e164() {
        assert_eq!(normalize_number("+14255550100").as_deref(), Some("+14255550100"));
        assert_eq!(normalize_number("14255550100").as_deref(), Some("+14255550100"));
        assert_eq!(normalize_number("+1-425-555-0100").as_deref(), Some("+14255550100"));
        assert_eq!(normalize_number("alice"), None);
        assert_eq!(normalize_number("123"), None);
    }
}
