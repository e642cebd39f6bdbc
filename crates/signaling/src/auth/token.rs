//! Access tokens: compact JWTs signed with Ed25519 (`alg: EdDSA`) carrying
//! [`AccessTokenClaims`]. The signing key is generated on first start and persisted.
//!
//! The payload is serialised by hand so that it is pure ASCII and its base64url form
//! never contains `-` or `_`: the SDKs decode the payload with a *standard* base64
//! decoder. For ASCII input only a byte `>` `?` `~` or DEL in the third position of a
//! 3-byte group can produce those characters, so those bytes (and any non-ASCII) are
//! written as `\uXXXX` JSON escapes, which is guaranteed rather than retried.
//!
//! Revocation is not checked here (see [`crate::auth::revocation`]).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use palaver_core::{AccessTokenClaims, ScopeSet};

/// The numeric `scp` marker found on ACS access tokens.
pub const SCP_MARKER: u32 = 1792;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed palaver access token")]
    Malformed,
    #[error("the token signature is not valid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token was issued for another resource")]
    WrongResource,
    #[error("the identity `{0}` cannot hold an access token")]
    UnsupportedIdentity(String),
    #[error("the signing key is not valid")]
    BadKey,
}

/// What to put in a new token besides the fixed claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// Full raw id (`8:acs:...`, `8:orgid:...`).
    pub raw_id: String,
    pub scopes: ScopeSet,
    /// Expiry, milliseconds since the Unix epoch (the `exp` claim is its whole seconds).
    pub expires_at_ms: i64,
    pub name: Option<String>,
    pub tid: Option<String>,
    pub native: bool,
}

/// A freshly issued token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub claims: AccessTokenClaims,
}

impl IssuedToken {
    /// `expiresOn` as the Identity API writes it (RFC 3339, UTC, milliseconds).
    pub fn expires_on(&self) -> String {
        rfc3339_ms(self.claims.exp.saturating_mul(1000))
    }
}

/// RFC 3339 UTC timestamp with milliseconds, e.g. `2026-01-01T10:00:00.000Z`.
pub fn rfc3339_ms(epoch_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(epoch_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Issues and verifies access tokens for one resource.
pub struct TokenService {
    signing: SigningKey,
    verifying: VerifyingKey,
    kid: String,
    resource_id: String,
    resource_location: String,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService").field("kid", &self.kid).field("resource_id", &self.resource_id).finish()
    }
}

impl TokenService {
    /// From a base64 32-byte Ed25519 seed (as persisted).
    pub fn from_seed_base64(seed_b64: &str, resource_id: &str, resource_location: &str) -> Result<Self, TokenError> {
        let seed: [u8; 32] =
            B64.decode(seed_b64.trim()).ok().and_then(|v| v.try_into().ok()).ok_or(TokenError::BadKey)?;
        let signing = SigningKey::from_bytes(&seed);
        let verifying = signing.verifying_key();
        let kid = B64URL.encode(
            &sha2::Digest::finalize(sha2::Digest::chain_update(sha2::Sha256::default(), verifying.as_bytes()))[..12],
        );
        Ok(Self {
            signing,
            verifying,
            kid,
            resource_id: resource_id.to_string(),
            resource_location: resource_location.to_string(),
        })
    }

    /// A new random seed, base64 (persist it and pass it to [`from_seed_base64`](Self::from_seed_base64)).
    pub fn generate_seed_base64() -> String {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        B64.encode(seed)
    }

    pub fn resource_id(&self) -> &str {
        &self.resource_id
    }

    /// Key id written in the token header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Sign a token issued at `now_ms`. `now_ms` becomes `iatms` (revocation compares it).
    pub fn issue(&self, grant: &TokenGrant, now_ms: i64) -> Result<IssuedToken, TokenError> {
        let skypeid = grant
            .raw_id
            .strip_prefix("8:")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| TokenError::UnsupportedIdentity(grant.raw_id.clone()))?;
        let iat = now_ms.div_euclid(1000);
        let claims = AccessTokenClaims {
            skypeid: skypeid.to_string(),
            scp: SCP_MARKER,
            csi: iat.to_string(),
            iat,
            exp: grant.expires_at_ms.div_euclid(1000),
            acs_scope: grant.scopes.to_claim(),
            resource_id: self.resource_id.clone(),
            resource_location: self.resource_location.clone(),
            jti: uuid::Uuid::new_v4().simple().to_string(),
            iatms: now_ms,
            name: grant.name.clone(),
            tid: grant.tid.clone(),
            native: grant.native,
        };
        let header = format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{}"}}"#, self.kid);
        let payload = sdk_safe_json(&serde_json::to_string(&claims).map_err(|_| TokenError::Malformed)?);
        let signing_input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
        let signature = self.signing.sign(signing_input.as_bytes());
        let token = format!("{signing_input}.{}", B64URL.encode(signature.to_bytes()));
        Ok(IssuedToken { token, claims })
    }

    /// Check signature, resource and expiry at `now_ms`; returns the claims.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<AccessTokenClaims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed);
        };
        let header: serde_json::Value = serde_json::from_slice(&B64URL.decode(h).map_err(|_| TokenError::Malformed)?)
            .map_err(|_| TokenError::Malformed)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("EdDSA") {
            return Err(TokenError::Malformed);
        }
        let sig_bytes: [u8; 64] = B64URL.decode(s).ok().and_then(|v| v.try_into().ok()).ok_or(TokenError::Malformed)?;
        let signing_input = &token[..h.len() + 1 + p.len()];
        self.verifying
            .verify(signing_input.as_bytes(), &Signature::from_bytes(&sig_bytes))
            .map_err(|_| TokenError::BadSignature)?;
        let claims: AccessTokenClaims = serde_json::from_slice(&B64URL.decode(p).map_err(|_| TokenError::Malformed)?)
            .map_err(|_| TokenError::Malformed)?;
        if claims.resource_id != self.resource_id {
            return Err(TokenError::WrongResource);
        }
        // Saturating: a signed `exp` near i64::MAX must not wrap (or panic) into the past.
        if claims.exp.saturating_mul(1000) <= now_ms {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// Rewrite serde_json output so that it is ASCII and contains none of `>` `?` `~` DEL,
/// using `\uXXXX` escapes (valid because these can only occur inside JSON strings).
fn sdk_safe_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if c.is_ascii() && !matches!(c, '>' | '?' | '~' | '\u{7f}') {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_core::Scope;

    fn service() -> TokenService {
        TokenService::from_seed_base64(&TokenService::generate_seed_base64(), "res-1", "europe").unwrap()
    }

    fn grant(name: Option<&str>) -> TokenGrant {
        TokenGrant {
            raw_id: "8:acs:res-1_00000001-0000-0000-0000-000000000001".into(),
            scopes: ScopeSet::empty().with(Scope::Chat).with(Scope::Voip),
            expires_at_ms: 2_000_000_000_000,
            name: name.map(str::to_string),
            tid: None,
            native: false,
        }
    }

    #[test]
    fn issue_then_verify_round_trips_claims() {
        let svc = service();
        let issued = svc.issue(&grant(None), 1_700_000_000_123).unwrap();
        let claims = svc.verify(&issued.token, 1_700_000_000_200).unwrap();
        assert_eq!(claims, issued.claims);
        assert_eq!(claims.skypeid, "acs:res-1_00000001-0000-0000-0000-000000000001");
        assert_eq!((claims.iat, claims.iatms, claims.exp), (1_700_000_000, 1_700_000_000_123, 2_000_000_000));
        assert_eq!(claims.acs_scope, "chat,voip");
        assert_eq!(claims.scp, SCP_MARKER);
        assert_eq!(issued.expires_on(), "2033-05-18T03:33:20.000Z");
    }

    #[test]
    fn payload_decodes_with_standard_base64_even_for_awkward_names() {
        let svc = service();
        for name in ["Zoë ~ >>? 日本 \u{7f} 😀", "???", ">>>~~~", "plain"] {
            for _ in 0..20 {
                let issued = svc.issue(&grant(Some(name)), 1_700_000_000_000).unwrap();
                let payload = issued.token.split('.').nth(1).unwrap();
                assert!(!payload.contains('-') && !payload.contains('_'), "{payload}");
                // What the Python SDK does: standard base64 + "==", ASCII, JSON.
                let padded = format!("{payload}{}", "=".repeat((4 - payload.len() % 4) % 4));
                let bytes = B64.decode(padded).unwrap();
                assert!(bytes.is_ascii());
                let claims: AccessTokenClaims = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(claims.name.as_deref(), Some(name));
                assert_eq!(svc.verify(&issued.token, 0).unwrap().name.as_deref(), Some(name));
            }
        }
    }

    #[test]
    fn rejects_forged_expired_foreign_and_malformed_tokens() {
        let svc = service();
        let issued = svc.issue(&grant(None), 1_000).unwrap();
        assert_eq!(svc.verify(&issued.token, 2_000_000_000_000), Err(TokenError::Expired));
        let other = service();
        assert_eq!(other.verify(&issued.token, 0), Err(TokenError::BadSignature));
        let foreign = TokenService::from_seed_base64(&B64.encode([7u8; 32]), "res-2", "x").unwrap();
        let t = foreign.issue(&grant(None), 0).unwrap();
        let same_key_other_res = TokenService::from_seed_base64(&B64.encode([7u8; 32]), "res-1", "x").unwrap();
        assert_eq!(same_key_other_res.verify(&t.token, 0), Err(TokenError::WrongResource));
        // Tampered payload.
        let mut parts: Vec<&str> = issued.token.split('.').collect();
        let forged_payload = B64URL.encode(br#"{"skypeid":"acs:evil"}"#);
        parts[1] = &forged_payload;
        assert_eq!(svc.verify(&parts.join("."), 0), Err(TokenError::BadSignature));
        for junk in ["", "a.b", "a.b.c.d", "!!.!!.!!", "e30.e30.AAAA"] {
            assert_eq!(svc.verify(junk, 0), Err(TokenError::Malformed), "{junk}");
        }
        let mut bad = grant(None);
        bad.raw_id = "4:+1555".into();
        assert!(matches!(svc.issue(&bad, 0), Err(TokenError::UnsupportedIdentity(_))));
    }

    /// Found writing the `access_token` fuzz target (no overflow on any signed `exp`): a token whose `exp` is near
    /// `i64::MAX` overflowed `exp * 1000` (a panic in debug builds, a wrap into the past in
    /// release). It is simply unexpired now.
    #[test]
    fn huge_exp_does_not_overflow() {
        let seed = [7u8; 32];
        let svc = TokenService::from_seed_base64(&B64.encode(seed), "res-1", "x").unwrap();
        let mut claims = serde_json::to_value(svc.issue(&grant(None), 0).unwrap().claims).unwrap();
        for exp in [i64::MAX, i64::MAX / 999, i64::MIN] {
            claims["exp"] = exp.into();
            let input = format!("{}.{}", B64URL.encode(br#"{"alg":"EdDSA"}"#), B64URL.encode(claims.to_string()));
            let signature = SigningKey::from_bytes(&seed).sign(input.as_bytes());
            let token = format!("{input}.{}", B64URL.encode(signature.to_bytes()));
            let verdict = svc.verify(&token, 1_700_000_000_000);
            assert_eq!(verdict.map(|c| c.exp), if exp > 0 { Ok(exp) } else { Err(TokenError::Expired) });
        }
    }

    #[test]
    fn seed_must_be_32_bytes() {
        assert_eq!(TokenService::from_seed_base64("AAAA", "r", "l").unwrap_err(), TokenError::BadKey);
    }
}
