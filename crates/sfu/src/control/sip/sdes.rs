//! SDES keys for SRTP on a trunk leg (RFC 4568 `a=crypto`): reading the peer's crypto
//! attributes, making the server's own, and writing them back. The keys go into the engine's
//! in-place SRTP contexts (`srtp/`), the same as DTLS-SRTP's exported keys.
//!
//! Accepted suites: `AES_CM_128_HMAC_SHA1_80`, `AES_CM_128_HMAC_SHA1_32` (RFC 4568) and
//! `AEAD_AES_128_GCM` (RFC 7714 §12). Attributes with an MKI or with session parameters
//! (`UNENCRYPTED_SRTP`, `KDR=`, ...) are skipped: the contexts support neither, and
//! skipping lets the next attribute of the offer be taken instead.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::Rng;

use crate::srtp::{Profile, SrtpKeys};

/// One SDES crypto attribute: its tag, suite and master key and salt.
#[derive(Clone, PartialEq, Eq)]
pub struct SdesCrypto {
    pub tag: u32,
    pub profile: Profile,
    pub key: Vec<u8>,
    pub salt: Vec<u8>,
}

impl std::fmt::Debug for SdesCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdesCrypto").field("tag", &self.tag).field("profile", &self.profile).finish_non_exhaustive()
    }
}

/// The RFC 4568 / RFC 7714 suite name of a profile.
pub fn suite_name(profile: Profile) -> &'static str {
    match profile {
        Profile::Aes128CmHmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
        Profile::Aes128CmHmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        Profile::AeadAes128Gcm => "AEAD_AES_128_GCM",
    }
}

fn suite(name: &str) -> Option<Profile> {
    [Profile::Aes128CmHmacSha1_80, Profile::Aes128CmHmacSha1_32, Profile::AeadAes128Gcm]
        .into_iter()
        .find(|p| suite_name(*p).eq_ignore_ascii_case(name))
}

impl SdesCrypto {
    /// Reads the value of one `a=crypto:` attribute (`<tag> <suite> inline:<key||salt>[|lifetime]`);
    /// `None` for an unknown suite, a bad key, an MKI, several keys or session parameters.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split_whitespace();
        let tag: u32 = parts.next()?.parse().ok()?;
        let profile = suite(parts.next()?)?;
        let key_params = parts.next()?;
        if parts.next().is_some() || key_params.contains(';') {
            return None;
        }
        let mut inline = key_params.strip_prefix("inline:")?.split('|');
        let material = STANDARD.decode(inline.next()?).ok()?;
        // A lifetime (`2^31` or a number) is fine; an MKI (`1:4`) is not supported.
        if inline.any(|p| p.contains(':')) {
            return None;
        }
        if material.len() != profile.key_len() + profile.salt_len() {
            return None;
        }
        let (key, salt) = material.split_at(profile.key_len());
        Some(Self { tag, profile, key: key.to_vec(), salt: salt.to_vec() })
    }

    /// Fresh random master key and salt for `profile`, under `tag`.
    pub fn generate(tag: u32, profile: Profile, rng: &mut impl Rng) -> Self {
        let mut key = vec![0; profile.key_len()];
        let mut salt = vec![0; profile.salt_len()];
        rng.fill(&mut key[..]);
        rng.fill(&mut salt[..]);
        Self { tag, profile, key, salt }
    }

    /// The attribute's value (after `a=crypto:`).
    pub fn attribute(&self) -> String {
        let mut material = Vec::with_capacity(self.key.len() + self.salt.len());
        material.extend_from_slice(&self.key);
        material.extend_from_slice(&self.salt);
        format!("{} {} inline:{}", self.tag, suite_name(self.profile), STANDARD.encode(material))
    }

    /// The engine's keys: `local` protects what the server sends, `remote` unprotects the
    /// peer's packets (both of `remote`'s suite, which the answer repeats).
    pub fn keys(local: &SdesCrypto, remote: &SdesCrypto) -> SrtpKeys {
        SrtpKeys {
            profile: remote.profile,
            local_master_key: local.key.clone(),
            local_master_salt: local.salt.clone(),
            remote_master_key: remote.key.clone(),
            remote_master_salt: remote.salt.clone(),
        }
    }
}

/// The suites the server offers, in its preference order (tags 1, 2, ...): the HMAC-80
/// suite every SBC has, then AES-GCM.
pub const OFFERED_SUITES: [Profile; 2] = [Profile::Aes128CmHmacSha1_80, Profile::AeadAes128Gcm];
