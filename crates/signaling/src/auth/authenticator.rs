//! [`Authenticator`]: the one check of every door. The REST bearer extractor, the WebSocket
//! upgrade, the QUIC `auth` frame and the native directory-client socket all hand it a
//! [`Credential`] and get back a [`Principal`] (who it is, with which scopes, until when) or a
//! [`Refusal`] with the same code and message whichever door asked.
//!
//! An access token is checked for signature, resource, expiry, revocation, a well-formed
//! subject and, for directory users, the tenant that owns the oid
//! ([`TenantBindings`](crate::auth::directory::TenantBindings)); an IdP token (native
//! directory client) against its tenant's keys and the same binding. The one
//! `Authorization` header parser, [`bearer_token`], ignores the scheme's case.

use crate::auth::directory::{Directory, directory_scopes};
use crate::auth::{RevocationList, TokenError, TokenService};
use crate::domain::Refusal;
use palaver_core::{CommunicationIdentifier, ErrorCode, Scope, ScopeSet};

/// What a client presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// A palaver access token (no `Bearer ` prefix).
    AccessToken(&'a str),
    /// An identity provider's token, presented by a native directory client.
    IdpToken(&'a str),
}

/// Which kind of credential a principal proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// A palaver access token.
    AccessToken,
    /// An IdP token on the native directory-client path (unbilled participants).
    NativeIdp,
}

/// The holder of a verified credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub identifier: CommunicationIdentifier,
    pub scopes: ScopeSet,
    /// Display name the credential carries (directory users), if any.
    pub display_name: Option<String>,
    /// Directory tenant (`tid`), if any.
    pub tenant_id: Option<String>,
    /// The access token was exchanged on the native directory-client path (`native` claim).
    pub native: bool,
    /// When the credential stops being valid, ms since the Unix epoch.
    pub expires_at_ms: i64,
    /// When the access token was issued (`iatms`), to compare with revocation marks; `None`
    /// for IdP tokens (palaver cannot revoke those).
    pub issued_at_ms: Option<i64>,
    pub door: Door,
}

impl Principal {
    pub fn raw_id(&self) -> String {
        self.identifier.raw_id()
    }

    /// `InsufficientScope` unless the credential carries `scope`.
    pub fn require_scope(&self, scope: Scope) -> Result<(), Refusal> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(Refusal::new(ErrorCode::InsufficientScope, format!("the access token lacks the `{scope}` scope")))
        }
    }
}

/// Verifies credentials; owns the token service, the revocation marks and the directory.
#[derive(Debug)]
pub struct Authenticator {
    pub tokens: TokenService,
    pub revocations: RevocationList,
    pub directory: Directory,
}

impl Authenticator {
    pub fn new(tokens: TokenService, revocations: RevocationList, directory: Directory) -> Self {
        Self { tokens, revocations, directory }
    }

    /// Verify any credential at `now_ms`.
    pub async fn verify(&self, credential: Credential<'_>, now_ms: i64) -> Result<Principal, Refusal> {
        match credential {
            Credential::AccessToken(token) => self.verify_access_token(token, now_ms),
            Credential::IdpToken(token) => self.verify_idp_token(token, now_ms).await,
        }
    }

    /// An access token: signature, resource, expiry, revocation, subject (no I/O, so the REST
    /// extractor need not await).
    pub fn verify_access_token(&self, token: &str, now_ms: i64) -> Result<Principal, Refusal> {
        let claims = self.tokens.verify(token.trim(), now_ms).map_err(token_refusal)?;
        if self.revocations.is_revoked(&claims) {
            return Err(Refusal::new(ErrorCode::TokenRevoked, "the access token has been revoked"));
        }
        let identifier = CommunicationIdentifier::parse(&claims.raw_id())
            .map_err(|e| Refusal::new(ErrorCode::InvalidToken, format!("token subject is not valid: {e}")))?;
        if let (CommunicationIdentifier::DirectoryUser { user_id, .. }, Some(tid)) = (&identifier, &claims.tid) {
            self.directory
                .bindings
                .check(user_id, tid)
                .map_err(|r| Refusal::new(ErrorCode::InvalidToken, r.message))?;
        }
        Ok(Principal {
            identifier,
            scopes: claims.scopes(),
            display_name: claims.name,
            tenant_id: claims.tid,
            native: claims.native,
            expires_at_ms: claims.exp.saturating_mul(1000),
            issued_at_ms: Some(claims.iatms),
            door: Door::AccessToken,
        })
    }

    /// An IdP token of a native directory client: the tenant's signature, issuer, audience,
    /// expiry (may fetch the tenant's keys).
    async fn verify_idp_token(&self, token: &str, now_ms: i64) -> Result<Principal, Refusal> {
        let user = self.directory.validator.validate(token, now_ms.div_euclid(1000)).await?;
        self.directory.bindings.bind(&user.oid, &user.tenant_id, now_ms).await?;
        let identifier = CommunicationIdentifier::parse(&user.raw_id())
            .map_err(|e| Refusal::new(ErrorCode::InvalidIdpToken, format!("bad directory user id: {e}")))?;
        Ok(Principal {
            identifier,
            scopes: directory_scopes(),
            display_name: user.name,
            tenant_id: Some(user.tenant_id),
            native: true,
            expires_at_ms: user.expires_at.saturating_mul(1000),
            issued_at_ms: None,
            door: Door::NativeIdp,
        })
    }
}

/// Map a token check failure to its refusal.
fn token_refusal(e: TokenError) -> Refusal {
    let code = match e {
        TokenError::Expired => ErrorCode::TokenExpired,
        _ => ErrorCode::InvalidToken,
    };
    Refusal::new(code, e.to_string())
}

/// The token of an `Authorization` header value `Bearer <token>` (scheme in any case).
pub fn bearer_token(header: &str) -> Result<&str, Refusal> {
    match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(token.trim()),
        _ => Err(Refusal::new(ErrorCode::InvalidAuthentication, "the Authorization scheme must be Bearer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_needs_a_token() {
        for ok in ["Bearer abc", "bearer abc", "BEARER  abc "] {
            assert_eq!(bearer_token(ok).unwrap(), "abc", "{ok}");
        }
        for bad in ["Basic abc", "Bearer", "Bearer   ", "abc", "Bearerabc"] {
            assert_eq!(bearer_token(bad).unwrap_err().code, ErrorCode::InvalidAuthentication, "{bad}");
        }
    }
}
