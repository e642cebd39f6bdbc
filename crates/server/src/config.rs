//! Server configuration: embedded defaults, an optional TOML file, then `PALAVER_*`
//! environment variables and command-line flags (both handled by clap), in that order.

use palaver_signaling::app::SignalingConfig;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The whole configuration file. Every section and key is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub server: ServerSection,
    pub tls: TlsSection,
    /// Resource identity, access keys, directory tenants, dev IdP.
    pub signaling: SignalingConfig,
    /// Usage ledger, price, webhooks and the `/metrics` listener (`[usage]`).
    pub usage: palaver_billing::UsageConfig,
    /// WebRTC media workers (`[media]`).
    pub media: MediaSection,
    /// Event Grid subscriptions and event/callback delivery (`[events]`, `[[events.subscriptions]]`).
    pub events: palaver_events::EventsConfig,
    /// Development switches (`[dev]`).
    pub dev: DevSection,
    /// The SIP trunk gateway (`[sip]`, `[[sip.trunks]]`; absent: none). See docs/sip.md.
    pub sip: Option<palaver_sip::SipConfig>,
    /// Phone numbers the server owns and their routes (`[[phone_numbers]]`).
    pub phone_numbers: Vec<palaver_sip::PhoneNumberConfig>,
    /// Cluster mode (`[cluster]`: `postgres_url`, `node_id`; absent: SQLite). docs/cluster.md.
    pub cluster: palaver_cluster::ClusterConfig,
}

/// `[dev]`: switches for local development only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevSection {
    /// The web client's development sign-in (`/dev/web/*`): anyone who reaches the server gets
    /// new identities and tokens without a credential (rate limited, never an existing
    /// identity). Off unless chosen (`--dev-sign-in`; `make run` chooses it); refused while
    /// directory tenants are configured. Logged loudly at start and shown as a banner.
    pub sign_in: bool,
}

/// `[media]`: the WebRTC media plane (ICE-lite, DTLS-SRTP, one UDP port per worker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaSection {
    /// Serve media at all; when false, offers are answered `MediaUnavailable`.
    pub enabled: bool,
    /// Worker threads, each with its own UDP socket; 0 = one per CPU core.
    pub workers: usize,
    /// Address the UDP sockets bind to.
    pub bind_ip: IpAddr,
    /// First UDP port (worker i binds `port + i`); 0 picks free ports.
    pub port: u16,
    /// Address put into the SDP host candidate (what browsers send to).
    pub announced_ip: IpAddr,
    /// Send runs of datagrams to one destination as one UDP GSO message (when the kernel has
    /// `UDP_SEGMENT`; refused runs fall back to single datagrams).
    pub gso: bool,
    /// `[media.mixer]`: every room's audio mixer.
    pub mixer: MixerSection,
}

impl Default for MediaSection {
    fn default() -> Self {
        Self {
            enabled: true,
            workers: 0,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            announced_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            gso: true,
            mixer: MixerSection::default(),
        }
    }
}

/// `[media.mixer]`: the room audio mixer (every participant sends one Opus stream and
/// receives one mix). Encoder settings apply to the shared listener mix; talkers' mix-minus
/// streams use the same bitrate/FEC with complexity 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MixerSection {
    /// Simultaneous talkers mixed (K), 1..=16.
    pub talkers: usize,
    /// Opus bitrate of every mixed output, bits/s (6000..=510000).
    pub bitrate: i32,
    /// libopus complexity of the shared mix encoder, 0..=10.
    pub complexity: i32,
    /// In-band FEC (LBRR) in the mixed outputs.
    pub fec: bool,
    /// Packet loss the encoder provisions FEC for, percent (FEC needs > 0).
    pub expected_loss_percent: i32,
    /// With a single talker, forward its packets to listeners instead of re-encoding.
    pub passthrough: bool,
    /// Skip the ticks of a silent room that would send nothing (docs/mixer.md "Resting");
    /// `false` ticks every room in full every 20 ms (same output, more CPU: for comparisons).
    pub rest_when_silent: bool,
}

impl Default for MixerSection {
    fn default() -> Self {
        let mixer = palaver_sfu::mixer::MixerConfig::default();
        Self {
            talkers: mixer.talkers.max_talkers,
            bitrate: mixer.encoder.bitrate_bps,
            complexity: mixer.encoder.complexity,
            fec: mixer.encoder.inband_fec,
            expected_loss_percent: mixer.encoder.expected_loss_percent,
            passthrough: mixer.passthrough,
            rest_when_silent: mixer.rest_when_silent,
        }
    }
}

impl MixerSection {
    /// The sfu mixer configuration these settings describe.
    pub fn to_mixer_config(self) -> palaver_sfu::mixer::MixerConfig {
        let mut config = palaver_sfu::mixer::MixerConfig::default();
        config.talkers.max_talkers = self.talkers;
        config.encoder.bitrate_bps = self.bitrate;
        config.encoder.complexity = self.complexity;
        config.encoder.inband_fec = self.fec;
        config.encoder.expected_loss_percent = self.expected_loss_percent;
        config.talker_encoder = palaver_sfu::mixer::EncoderSettings { complexity: 1, ..config.encoder };
        config.passthrough = self.passthrough;
        config.pair_passthrough = self.passthrough;
        config.rest_when_silent = self.rest_when_silent;
        config
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: &str| Err(ConfigError::Invalid(format!("media.mixer.{what}")));
        if !(1..=16).contains(&self.talkers) {
            return bad("talkers must be between 1 and 16");
        }
        if !(6_000..=510_000).contains(&self.bitrate) {
            return bad("bitrate must be between 6000 and 510000 bits/s");
        }
        if !(0..=10).contains(&self.complexity) {
            return bad("complexity must be between 0 and 10");
        }
        if !(0..=100).contains(&self.expected_loss_percent) {
            return bad("expected_loss_percent must be between 0 and 100");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Address of the HTTPS (REST + WebSocket) listener. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Where the database, keys and certificates live.
    pub data_dir: PathBuf,
    /// Externally visible base URL (e.g. behind a proxy); default derived from `listen`.
    pub public_url: Option<String>,
    pub log_format: LogFormat,
    /// `tracing` filter, e.g. `info` or `palaver_signaling=debug,info`.
    pub log_level: String,
    /// `[server.quic]`: the native QUIC transport.
    pub quic: crate::quic::QuicSection,
    /// `[server.http]`: connection caps and timeouts of the HTTPS listener.
    pub http: crate::http_listener::HttpLimits,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8443),
            data_dir: PathBuf::from("data"),
            public_url: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            quic: crate::quic::QuicSection::default(),
            http: crate::http_listener::HttpLimits::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Generate a private CA and a server certificate in `<data_dir>/tls` on first start.
    #[default]
    SelfSigned,
    /// Use `cert` and `key` (PEM files).
    Files,
    /// Plain HTTP (only behind a TLS-terminating proxy; the SDKs' connection strings
    /// always use https).
    Off,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    pub mode: TlsMode,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Extra DNS names / IPs for the self-signed certificate (besides localhost, 127.0.0.1, ::1).
    pub extra_names: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl ServerConfig {
    /// Defaults, overlaid with the TOML file when given.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else { return Ok(Self::default()) };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::parse(&text).map_err(|source| ConfigError::Parse { path: path.into(), source: Box::new(source) })
    }

    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Check cross-field rules after all overrides.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.media.mixer.validate()?;
        palaver_sip::validate(self.sip.as_ref(), &self.phone_numbers)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.signaling_config().directory.check_dev_sign_in().map_err(ConfigError::Invalid)?;
        if self.tls.mode == TlsMode::Files && (self.tls.cert.is_none() || self.tls.key.is_none()) {
            return Err(ConfigError::Invalid("tls.mode = \"files\" needs tls.cert and tls.key".into()));
        }
        if let Some(url) = &self.server.public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError::Invalid(format!("server.public_url `{url}` must start with https:// or http://")));
        }
        Ok(())
    }

    /// The control plane's settings, with the `[dev]` switches applied.
    pub fn signaling_config(&self) -> SignalingConfig {
        let mut signaling = self.signaling.clone();
        signaling.directory.dev_sign_in = self.dev.sign_in;
        signaling.recordings_dir = Some(self.cluster.recordings_dir(&self.server.data_dir));
        signaling
    }

    pub fn database_path(&self) -> PathBuf {
        self.server.data_dir.join("palaver.db")
    }

    /// The events outbox, subscriptions and callback signing key.
    pub fn events_database_path(&self) -> PathBuf {
        self.server.data_dir.join("events.db")
    }

    pub fn tls_dir(&self) -> PathBuf {
        self.server.data_dir.join("tls")
    }

    /// The base URL clients use, given the port actually bound.
    pub fn base_url(&self, bound: SocketAddr) -> String {
        if let Some(url) = &self.server.public_url {
            return url.trim_end_matches('/').to_string();
        }
        let scheme = if self.tls.mode == TlsMode::Off { "http" } else { "https" };
        let ip = match bound.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("{scheme}://{}", SocketAddr::new(ip, bound.port()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_embedded_default() {
        assert_eq!(ServerConfig::parse("").unwrap(), ServerConfig::default());
        let d = ServerConfig::default();
        assert_eq!(d.server.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(d.tls.mode, TlsMode::SelfSigned);
        assert!(d.signaling.directory.dev_idp_enabled());
    }

    #[test]
    fn full_file_parses() {
        let cfg = ServerConfig::parse(
            r#"
            [server]
            listen = "0.0.0.0:9443"
            data_dir = "/var/lib/palaver"
            log_format = "json"
            [tls]
            mode = "files"
            cert = "/etc/palaver/cert.pem"
            key = "/etc/palaver/key.pem"
            [signaling]
            resource_id = "contoso-res"
            access_key = "c2VjcmV0"
            [[signaling.directory.tenants]]
            tenant_id = "t1"
            issuer = "https://idp.example.com/t1/v2.0"
            audiences = ["api://palaver"]
            jwks_uri = "https://idp.example.com/t1/keys"
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.server.log_format, LogFormat::Json);
        assert_eq!(cfg.signaling.directory.tenants.len(), 1);
        assert!(!cfg.signaling.directory.dev_idp_enabled());
        assert_eq!(cfg.base_url("0.0.0.0:9443".parse().unwrap()), "https://127.0.0.1:9443");
    }

    #[test]
    fn quic_section_parses() {
        let cfg = ServerConfig::parse("[server.quic]\nenabled = false\nlisten = \"127.0.0.1:0\"").unwrap();
        assert!(!cfg.server.quic.enabled);
        assert_eq!(cfg.server.quic.listen, Some("127.0.0.1:0".parse().unwrap()));
        assert!(ServerConfig::default().server.quic.enabled);
        assert!(ServerConfig::parse("[server.quic]\nport = 1").is_err());
    }

    #[test]
    fn mixer_section_parses_and_is_validated() {
        let cfg = ServerConfig::parse("[media.mixer]\ntalkers = 5\nbitrate = 48000\nfec = false\npassthrough = false")
            .unwrap();
        let mixer = cfg.media.mixer.to_mixer_config();
        assert_eq!(
            (mixer.talkers.max_talkers, mixer.encoder.bitrate_bps, mixer.encoder.inband_fec),
            (5, 48_000, false)
        );
        assert!(!mixer.passthrough && !mixer.pair_passthrough);
        assert!(mixer.rest_when_silent, "rests by default");
        let ticking = ServerConfig::parse("[media.mixer]\nrest_when_silent = false").unwrap();
        assert!(!ticking.media.mixer.to_mixer_config().rest_when_silent);
        assert_eq!(mixer.talker_encoder.complexity, 1);
        assert_eq!(ServerConfig::default().media.mixer.to_mixer_config(), palaver_sfu::mixer::MixerConfig::default());
        assert!(cfg.validate().is_ok());
        for bad in ["talkers = 0", "talkers = 17", "bitrate = 100", "complexity = 11", "expected_loss_percent = -1"] {
            let cfg = ServerConfig::parse(&format!("[media.mixer]\n{bad}")).unwrap();
            assert!(cfg.validate().is_err(), "{bad}");
        }
        assert!(ServerConfig::parse("[media.mixer]\nvolume = 3").is_err());
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(ServerConfig::parse("[server]\nlisten = \"nope\"").is_err());
        assert!(ServerConfig::parse("[server]\nunknown = 1").is_err());
        let files_without_paths = ServerConfig::parse("[tls]\nmode = \"files\"").unwrap();
        assert!(files_without_paths.validate().is_err());
        let bad_url = ServerConfig::parse("[server]\npublic_url = \"ftp://x\"").unwrap();
        assert!(bad_url.validate().is_err());
    }

    #[test]
    fn base_url_follows_tls_mode_and_public_url() {
        let mut cfg = ServerConfig::default();
        assert_eq!(cfg.base_url("[::]:1".parse().unwrap()), "https://[::1]:1");
        cfg.tls.mode = TlsMode::Off;
        assert_eq!(cfg.base_url("127.0.0.1:2".parse().unwrap()), "http://127.0.0.1:2");
        cfg.server.public_url = Some("https://rtc.example.com/".into());
        assert_eq!(cfg.base_url("127.0.0.1:2".parse().unwrap()), "https://rtc.example.com");
    }
}
