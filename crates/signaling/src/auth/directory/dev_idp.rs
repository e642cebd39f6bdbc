//! The built-in development identity provider: a sample tenant with its own RSA key
//! (generated on first start, persisted), whose JWKS palaver serves and trusts, and which
//! mints IdP tokens for any user so the directory exchange works out of the box.
//! Never enable it where untrusted parties hold the access key.

use super::config::{TenantCloud, TenantConfig};
use crate::store::StoreError;
use crate::store::identity_store::IdentityStore;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};

/// The sample tenant's id (`tid`).
pub const DEV_TENANT_ID: &str = "0d0d0d0d-0000-4000-8000-00000000d0d0";
/// The sample client application id (`appid`).
pub const DEV_APP_ID: &str = "0d0d0d0d-0000-4000-8000-0000000a0001";
/// Audience of dev IdP tokens.
pub const DEV_AUDIENCE: &str = "api://palaver-communication";
/// Issuer of dev IdP tokens.
pub const DEV_ISSUER: &str = "https://dev-idp.palaver.invalid/0d0d0d0d-0000-4000-8000-00000000d0d0/v2.0";
/// Default delegated permissions of minted tokens.
pub const DEV_PERMISSIONS: &str = "Teams.ManageCalls Teams.ManageChats";

const KEY_SETTING: &str = "dev_idp_rsa_key";

#[derive(Debug, thiserror::Error)]
pub enum DevIdpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("dev IdP key: {0}")]
    Key(String),
}

/// What to put in a minted IdP token. Overrides exist so tests can mint deliberately bad
/// tokens (other tenant, missing permission, expired).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DevTokenRequest {
    pub oid: String,
    pub name: String,
    pub app_id: Option<String>,
    /// Space-separated delegated permissions (default: both required ones).
    pub scp: Option<String>,
    pub tid: Option<String>,
    /// Lifetime in seconds from now (default 3600; negative mints an expired token).
    pub lifetime_seconds: Option<i64>,
}

/// A minted IdP token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevToken {
    pub token: String,
    pub tenant_id: String,
    pub app_id: String,
    pub oid: String,
    pub expires_at: i64,
}

pub struct DevIdp {
    encoding: EncodingKey,
    public: RsaPublicKey,
    kid: String,
}

impl std::fmt::Debug for DevIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIdp").field("kid", &self.kid).finish()
    }
}

impl DevIdp {
    /// Load the persisted key, generating it (2048-bit RSA) on first use. The key is a
    /// setting of the identity store, so in a cluster every node shares the one PostgreSQL
    /// holds (the first node to start generates it) and a token minted by one node's dev IdP
    /// is accepted by every node.
    pub fn load_or_create(settings: &dyn IdentityStore) -> Result<Self, DevIdpError> {
        let mut failed = None;
        let pem = settings.setting_or_create(KEY_SETTING, &mut || {
            let generated = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
                .map_err(|e| e.to_string())
                .and_then(|key| key.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).map_err(|e| e.to_string()));
            match generated {
                Ok(pem) => pem.to_string(),
                Err(e) => {
                    failed = Some(e);
                    String::new()
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(DevIdpError::Key(e));
        }
        Self::from_pem(&pem)
    }

    /// From a PKCS#1 PEM RSA private key.
    pub fn from_pem(pem: &str) -> Result<Self, DevIdpError> {
        let key = RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| DevIdpError::Key(e.to_string()))?;
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| DevIdpError::Key(e.to_string()))?;
        let public = key.to_public_key();
        let digest = <sha2::Sha256 as sha2::Digest>::digest(public.n().to_bytes_be());
        let kid = B64URL.encode(&digest[..9]);
        Ok(Self { encoding, public, kid })
    }

    /// The JWKS document (`{"keys":[...]}`) with the public key.
    pub fn jwks_json(&self) -> String {
        serde_json::json!({"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
            "n": B64URL.encode(self.public.n().to_bytes_be()),
            "e": B64URL.encode(self.public.e().to_bytes_be()),
        }]})
        .to_string()
    }

    /// The tenant entry palaver trusts for the dev IdP.
    pub fn tenant_config(&self) -> TenantConfig {
        TenantConfig {
            tenant_id: DEV_TENANT_ID.into(),
            issuer: DEV_ISSUER.into(),
            audiences: vec![DEV_AUDIENCE.into()],
            jwks_uri: None,
            jwks: Some(self.jwks_json()),
            cloud: TenantCloud::Public,
        }
    }

    /// Sign arbitrary claims with the dev IdP key (RS256, with its `kid`).
    pub fn sign_claims(&self, claims: &serde_json::Value) -> Result<String, DevIdpError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| DevIdpError::Key(e.to_string()))
    }

    /// Mint an IdP token at `now` (seconds since epoch).
    pub fn mint(&self, req: &DevTokenRequest, now: i64) -> Result<DevToken, DevIdpError> {
        let tid = req.tid.clone().unwrap_or_else(|| DEV_TENANT_ID.to_string());
        let app_id = req.app_id.clone().unwrap_or_else(|| DEV_APP_ID.to_string());
        // Saturating: `lifetimeSeconds` near i64::MAX (or MIN, a deliberately expired token)
        // panicked in debug builds and wrapped in release (issue #19, low).
        let exp = now.saturating_add(req.lifetime_seconds.unwrap_or(3600));
        let claims = serde_json::json!({
            "aud": DEV_AUDIENCE,
            "iss": DEV_ISSUER,
            "iat": now,
            "nbf": now.min(exp).saturating_sub(60),
            "exp": exp,
            "appid": app_id,
            "name": req.name,
            "oid": req.oid,
            "scp": req.scp.clone().unwrap_or_else(|| DEV_PERMISSIONS.to_string()),
            "tid": tid,
            "ver": "1.0",
        });
        let token = self.sign_claims(&claims)?;
        Ok(DevToken { token, tenant_id: tid, app_id, oid: req.oid.clone(), expires_at: exp })
    }
}
