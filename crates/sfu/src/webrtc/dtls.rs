//! DTLS-SRTP server side (RFC 5764) on the sans-IO `rtc-dtls` endpoint: the server's
//! certificate and SDP fingerprint ([`DtlsIdentity`], generated once per process) and one
//! handshake per transport ([`DtlsSession`]) that checks the peer's certificate against the
//! fingerprint from its SDP offer and exports the SRTP master keys. Handshake datagrams are
//! rare, so this path may allocate; the SRTP steady state never comes through here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use rtc_dtls::config::{ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::crypto_provider;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use sha2::{Digest, Sha256};

use crate::srtp::{Profile, SrtpKeys};

/// Why the DTLS layer refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtlsError {
    #[error("DTLS setup failed: {0}")]
    Setup(String),
    #[error("DTLS handshake failed: {0}")]
    Handshake(String),
    #[error("peer certificate does not match the SDP fingerprint")]
    FingerprintMismatch,
    #[error("negotiated SRTP profile is not supported")]
    UnsupportedProfile,
}

/// The server's DTLS certificate (ECDSA P-256) and its SHA-256 fingerprint for SDP.
#[derive(Clone)]
pub struct DtlsIdentity {
    config: Arc<HandshakeConfig>,
    /// The same certificate in the client role (a SIP trunk that answers `a=setup:passive`
    /// makes the server the DTLS client; the SDP fingerprint is the same either way).
    client_config: Arc<HandshakeConfig>,
    fingerprint: String,
}

impl std::fmt::Debug for DtlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsIdentity").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

/// `AA:BB:…` upper-case hex of the SHA-256 of a DER certificate (SDP `a=fingerprint`).
pub fn sha256_fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02X}"));
    }
    out
}

fn setup_err(e: impl std::fmt::Display) -> DtlsError {
    DtlsError::Setup(e.to_string())
}

impl DtlsIdentity {
    /// Generates a fresh self-signed certificate and the handshake configuration for one role.
    pub fn generate(is_client: bool) -> Result<Self, DtlsError> {
        let provider = crypto_provider::default_provider().map_err(setup_err)?;
        let certificate = Certificate::generate_self_signed_with_alg(
            vec!["palaver".to_owned()],
            &rcgen::PKCS_ECDSA_P256_SHA256,
            provider.crypto(),
        )
        .map_err(setup_err)?;
        let fingerprint = sha256_fingerprint(certificate.certificate[0].as_ref());
        let config = Arc::new(Self::handshake_config(provider.clone(), certificate.clone(), is_client)?);
        let client_config = match is_client {
            true => config.clone(),
            false => Arc::new(Self::handshake_config(provider, certificate, true)?),
        };
        Ok(Self { config, client_config, fingerprint })
    }

    fn handshake_config(
        provider: Arc<dyn crypto_provider::RTCCryptoProvider>,
        certificate: Certificate,
        is_client: bool,
    ) -> Result<HandshakeConfig, DtlsError> {
        ConfigBuilder::default()
            .with_crypto_provider(provider)
            .with_certificates(vec![certificate])
            .with_srtp_protection_profiles(vec![
                SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
                SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            ])
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            .with_client_auth(ClientAuthType::RequireAnyClientCert)
            // WebRTC authenticates the self-signed peer by its SDP fingerprint (checked below).
            .with_insecure_skip_verify(true)
            .build(is_client, None)
            .map_err(setup_err)
    }

    /// The server side used by every transport of the process.
    pub fn generate_server() -> Result<Self, DtlsError> {
        Self::generate(false)
    }

    /// SHA-256 fingerprint, `AA:BB:…`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub(crate) fn config(&self) -> Arc<HandshakeConfig> {
        self.config.clone()
    }

    pub(crate) fn client_config(&self) -> Arc<HandshakeConfig> {
        self.client_config.clone()
    }
}

/// The outcome of feeding one datagram to a [`DtlsSession`].
#[derive(Debug, Default)]
pub struct DtlsOutput {
    /// Datagrams to send back to the peer.
    pub transmit: Vec<BytesMut>,
    /// Set once, when the handshake completes and the peer is authenticated.
    pub keys: Option<SrtpKeys>,
}

/// One transport's DTLS association (server or client role).
pub struct DtlsSession {
    endpoint: Endpoint,
    expected_fingerprint: String,
    established: bool,
}

impl std::fmt::Debug for DtlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsSession").field("established", &self.established).finish_non_exhaustive()
    }
}

const LOCAL: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0));

impl DtlsSession {
    /// A server-side session expecting a peer whose certificate hashes to `remote_fingerprint`
    /// (`sha-256` value from the offer's `a=fingerprint`).
    pub fn server(identity: &DtlsIdentity, remote_fingerprint: &str) -> Self {
        Self {
            endpoint: Endpoint::new(LOCAL, Default::default(), Some(identity.config())),
            expected_fingerprint: remote_fingerprint.to_ascii_uppercase(),
            established: false,
        }
    }

    /// A client-side session (tests and the QUIC-free loopback tools) that starts the handshake.
    pub fn client(
        identity: &DtlsIdentity,
        remote_fingerprint: &str,
        now: Instant,
        remote: SocketAddr,
    ) -> Result<(Self, Vec<BytesMut>), DtlsError> {
        let mut endpoint = Endpoint::new(LOCAL, Default::default(), None);
        endpoint
            .connect(now, remote, identity.client_config(), None)
            .map_err(|e| DtlsError::Handshake(e.to_string()))?;
        let mut transmit = Vec::new();
        while let Some(t) = endpoint.poll_transmit() {
            transmit.push(t.message);
        }
        let session =
            Self { endpoint, expected_fingerprint: remote_fingerprint.to_ascii_uppercase(), established: false };
        Ok((session, transmit))
    }

    pub fn is_established(&self) -> bool {
        self.established
    }

    /// Feeds one DTLS datagram from `from`.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Result<DtlsOutput, DtlsError> {
        let result = self.endpoint.read(now, from, None, BytesMut::from(datagram));
        let mut out = DtlsOutput::default();
        while let Some(t) = self.endpoint.poll_transmit() {
            out.transmit.push(t.message);
        }
        let events = result.map_err(|e| DtlsError::Handshake(e.to_string()))?;
        if !self.established && events.iter().any(|e| matches!(e, EndpointEvent::HandshakeComplete)) {
            out.keys = Some(self.export_keys(from)?);
            self.established = true;
        }
        Ok(out)
    }

    /// When a handshake flight is due for retransmission (`None` once established).
    pub fn poll_timeout(&self, remote: SocketAddr) -> Option<Instant> {
        if self.established {
            return None;
        }
        self.endpoint.poll_timeout(&remote)
    }

    /// Retransmits handshake flights that are due (call from the worker's timer).
    pub fn poll(&mut self, now: Instant, remote: SocketAddr) -> Vec<BytesMut> {
        if self.established || self.endpoint.poll_timeout(&remote).is_none_or(|t| t > now) {
            return Vec::new();
        }
        let _ = self.endpoint.handle_timeout(remote, now);
        let mut transmit = Vec::new();
        while let Some(t) = self.endpoint.poll_transmit() {
            transmit.push(t.message);
        }
        transmit
    }

    fn export_keys(&self, remote: SocketAddr) -> Result<SrtpKeys, DtlsError> {
        let state =
            self.endpoint.get_connection_state(remote).ok_or_else(|| DtlsError::Handshake("no connection".into()))?;
        let peer = state.peer_certificates.first().ok_or(DtlsError::FingerprintMismatch)?;
        if sha256_fingerprint(peer) != self.expected_fingerprint {
            return Err(DtlsError::FingerprintMismatch);
        }
        let profile = match state.srtp_protection_profile() {
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => Profile::Aes128CmHmacSha1_80,
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => Profile::AeadAes128Gcm,
            _ => return Err(DtlsError::UnsupportedProfile),
        };
        let (key_len, salt_len) = match profile {
            Profile::AeadAes128Gcm => (16, 12),
            _ => (16, 14),
        };
        let material = state
            .export_keying_material("EXTRACTOR-dtls_srtp", &[], 2 * (key_len + salt_len))
            .map_err(|e| DtlsError::Handshake(e.to_string()))?;
        let m: &[u8] = material.as_ref();
        let client_key = m[..key_len].to_vec();
        let server_key = m[key_len..2 * key_len].to_vec();
        let client_salt = m[2 * key_len..2 * key_len + salt_len].to_vec();
        let server_salt = m[2 * key_len + salt_len..].to_vec();
        let keys = if state.is_client() {
            SrtpKeys {
                profile,
                local_master_key: client_key,
                local_master_salt: client_salt,
                remote_master_key: server_key,
                remote_master_salt: server_salt,
            }
        } else {
            SrtpKeys {
                profile,
                local_master_key: server_key,
                local_master_salt: server_salt,
                remote_master_key: client_key,
                remote_master_salt: client_salt,
            }
        };
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs both sides of a handshake in process until both have keys.
    #[test]
    fn handshake_keys_agree_and_fingerprints_are_checked() {
        let server_id = DtlsIdentity::generate_server().unwrap();
        let client_id = DtlsIdentity::generate(true).unwrap();
        let server_addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let client_addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let now = Instant::now();
        let mut server = DtlsSession::server(&server_id, client_id.fingerprint());
        let (mut client, mut to_server) =
            DtlsSession::client(&client_id, server_id.fingerprint(), now, server_addr).unwrap();
        let (mut server_keys, mut client_keys) = (None, None);
        for _ in 0..20 {
            let mut to_client = Vec::new();
            for d in to_server.drain(..) {
                let out = server.handle(now, client_addr, &d).unwrap();
                to_client.extend(out.transmit);
                server_keys = server_keys.or(out.keys);
            }
            for d in to_client {
                let out = client.handle(now, server_addr, &d).unwrap();
                to_server.extend(out.transmit);
                client_keys = client_keys.or(out.keys);
            }
            if server_keys.is_some() && client_keys.is_some() {
                break;
            }
        }
        let (s, c) = (server_keys.expect("server keys"), client_keys.expect("client keys"));
        assert_eq!(s.profile, c.profile);
        assert_eq!(s.local_master_key, c.remote_master_key);
        assert_eq!(s.local_master_salt, c.remote_master_salt);
        assert_eq!(s.remote_master_key, c.local_master_key);
        assert_ne!(s.local_master_key, s.remote_master_key);

        // SRTP protected with the client's keys passes the server's context.
        let mut tx = crate::srtp::SrtpContext::new(c.profile, &c.local_master_key, &c.local_master_salt).unwrap();
        let mut rx = crate::srtp::SrtpContext::new(s.profile, &s.remote_master_key, &s.remote_master_salt).unwrap();
        let mut buf = [0u8; 200];
        buf[..12].copy_from_slice(&[0x80, 111, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4]);
        buf[12..60].fill(7);
        let len = tx.protect_rtp(&mut buf, 60).unwrap();
        let plain = rx.unprotect_rtp(&mut buf[..len]).unwrap();
        assert_eq!(plain, 60);
        assert!(buf[12..60].iter().all(|&b| b == 7));
    }

    #[test]
    fn wrong_fingerprint_is_refused() {
        let server_id = DtlsIdentity::generate_server().unwrap();
        let client_id = DtlsIdentity::generate(true).unwrap();
        let server_addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let client_addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let now = Instant::now();
        let mut server = DtlsSession::server(&server_id, server_id.fingerprint());
        let (mut client, mut to_server) =
            DtlsSession::client(&client_id, server_id.fingerprint(), now, server_addr).unwrap();
        let mut refused = false;
        for _ in 0..20 {
            let mut to_client = Vec::new();
            for d in to_server.drain(..) {
                match server.handle(now, client_addr, &d) {
                    Ok(out) => to_client.extend(out.transmit),
                    Err(DtlsError::FingerprintMismatch) => refused = true,
                    Err(e) => panic!("{e}"),
                }
            }
            for d in to_client {
                if let Ok(out) = client.handle(now, server_addr, &d) {
                    to_server.extend(out.transmit);
                }
            }
            if refused {
                break;
            }
        }
        assert!(refused);
        assert!(!server.is_established());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let server_id = DtlsIdentity::generate_server().unwrap();
        let mut server = DtlsSession::server(&server_id, "00");
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        for d in [&[22u8][..], &[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200, 1, 2], &[20; 40]] {
            let _ = server.handle(Instant::now(), from, d);
        }
        assert!(!server.is_established());
    }
}
