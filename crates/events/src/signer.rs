//! Callback signing: an RSA-2048 key (generated once, kept in the events database) signs one
//! RS256 JWT per callback attempt (`aud` = the resource id, `iss` = the server, 5-minute
//! life), as ACS's secure webhook does; the public half is published as a JWKS.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, pkcs1v15::SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Lifetime of a callback token (ACS: 5 minutes).
pub const TOKEN_LIFETIME_SECS: i64 = 300;

/// The callback signer.
pub struct CallbackSigner {
    key: SigningKey<Sha256>,
    public: rsa::RsaPublicKey,
    kid: String,
}

impl std::fmt::Debug for CallbackSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackSigner").field("kid", &self.kid).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("the stored callback signing key is unreadable: {0}")]
    BadKey(String),
    #[error("cannot generate a callback signing key: {0}")]
    Generate(String),
}

/// A new RSA-2048 private key as PKCS#8 PEM.
pub fn generate_key_pem() -> Result<String, SignerError> {
    let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(|e| SignerError::Generate(e.to_string()))?;
    let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).map_err(|e| SignerError::Generate(e.to_string()))?;
    Ok(pem.to_string())
}

impl CallbackSigner {
    pub fn from_pem(pem: &str) -> Result<Self, SignerError> {
        let private = RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| SignerError::BadKey(e.to_string()))?;
        let public = private.to_public_key();
        let der = public.to_public_key_der().map_err(|e| SignerError::BadKey(e.to_string()))?;
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(der.as_bytes())[..16]);
        Ok(Self { key: SigningKey::new(private), public, kid })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A compact RS256 JWT for one callback to `audience` (the resource id), issued by
    /// `issuer` at `now_secs`.
    pub fn token(&self, audience: &str, issuer: &str, now_secs: i64) -> String {
        let header = json!({ "alg": "RS256", "typ": "JWT", "kid": self.kid });
        let claims = json!({
            "aud": audience,
            "iss": issuer,
            "iat": now_secs,
            "nbf": now_secs,
            "exp": now_secs + TOKEN_LIFETIME_SECS,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// The public key as a JWK Set.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [{
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(self.public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(self.public.e().to_bytes_be()),
        }]})
    }

    /// The OpenID configuration document pointing at the JWKS (`jwks_uri`).
    pub fn openid_configuration(issuer: &str, jwks_uri: &str) -> Value {
        json!({
            "issuer": issuer,
            "jwks_uri": jwks_uri,
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_against_the_published_jwks() {
        let pem = generate_key_pem().unwrap();
        let signer = CallbackSigner::from_pem(&pem).unwrap();
        let token = signer.token("res-1", "https://palaver.test", chrono::Utc::now().timestamp());
        let jwk = &signer.jwks()["keys"][0];
        let key =
            jsonwebtoken::DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())
                .unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&["res-1"]);
        validation.set_issuer(&["https://palaver.test"]);
        let decoded = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
        assert_eq!(decoded.header.kid.as_deref(), Some(signer.kid()));
        let exp = decoded.claims["exp"].as_i64().unwrap() - decoded.claims["iat"].as_i64().unwrap();
        assert_eq!(exp, TOKEN_LIFETIME_SECS);
        // the same key from the same PEM: same kid (persisted keys keep verifying)
        assert_eq!(CallbackSigner::from_pem(&pem).unwrap().kid(), signer.kid());
        let mut wrong = validation.clone();
        wrong.set_audience(&["other"]);
        assert!(jsonwebtoken::decode::<Value>(&token, &key, &wrong).is_err());
    }
}
