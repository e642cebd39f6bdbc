//! Directory ("Teams"-style) users: validation of their IdP tokens against configured
//! tenants, the token exchange (`POST /teamsUser/:exchangeAccessToken`), the native
//! directory-client check, the binding of each directory user to its tenant
//! ([`tenant_binding`]), and the built-in development IdP.

pub mod config;
pub mod dev_idp;
pub mod jwks;
pub mod tenant_binding;
#[cfg(test)]
mod tests;
pub mod validate;

pub use config::{DirectoryConfig, TenantCloud, TenantConfig};
pub use dev_idp::{DevIdp, DevToken, DevTokenRequest};
pub use tenant_binding::TenantBindings;
pub use validate::{DirectoryUser, DirectoryValidator, check_exchange, exchange_token_refusal};

use crate::app::AppState;
use crate::auth::{IssuedToken, TokenGrant};
use crate::domain::Refusal;
use crate::store::identity_store::IdentityStore;
use palaver_core::{ErrorCode, Scope, ScopeSet};

/// The directory component of [`AppState`].
#[derive(Debug)]
pub struct Directory {
    pub validator: DirectoryValidator,
    pub dev_idp: Option<DevIdp>,
    /// Which tenant owns each directory oid on this server (checked at every door).
    pub bindings: TenantBindings,
    /// Development sign-in for the web client, when the operator turned it on.
    pub dev_sign_in: Option<crate::auth::dev_sign_in::DevSignInGate>,
}

impl Directory {
    /// Build from config; with the dev IdP on, its key is loaded (or generated) and its
    /// sample tenant trusted. The dev IdP and dev sign-in keys are `settings` of the identity
    /// store (shared by every node in a cluster); the tenant bindings live in `bindings`
    /// (SQLite's `directory_tenants`, or the cluster's PostgreSQL store).
    pub fn open(
        config: &DirectoryConfig,
        settings: &dyn IdentityStore,
        bindings: TenantBindings,
    ) -> Result<Self, String> {
        config.check_dev_sign_in()?;
        let dev_idp = if config.dev_idp_enabled() {
            Some(DevIdp::load_or_create(settings).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let validator = DirectoryValidator::new(config, dev_idp.as_ref().map(DevIdp::tenant_config))?;
        let dev_sign_in = if config.dev_sign_in {
            Some(crate::auth::dev_sign_in::DevSignInGate::load_or_create(settings).map_err(|e| e.to_string())?)
        } else {
            None
        };
        Ok(Self { validator, dev_idp, bindings, dev_sign_in })
    }
}

/// Scopes of an exchanged directory-user token.
pub fn directory_scopes() -> ScopeSet {
    ScopeSet::empty().with(Scope::Voip).with(Scope::Chat)
}

/// The exchange: validate `idp_token` (incl. appId/userId/permissions) and issue a palaver
/// access token for `8:orgid:<oid>` that expires with the IdP token.
pub async fn exchange(
    state: &AppState,
    idp_token: &str,
    app_id: &str,
    user_id: &str,
    now_ms: i64,
) -> Result<IssuedToken, Refusal> {
    if idp_token.is_empty() {
        return Err(Refusal::new(ErrorCode::InvalidAccessToken, "the IdP token is empty"));
    }
    let user = state
        .auth
        .directory
        .validator
        .validate(idp_token, now_ms.div_euclid(1000))
        .await
        .map_err(exchange_token_refusal)?;
    check_exchange(&user, app_id, user_id)?;
    state.auth.directory.bindings.bind(&user.oid, &user.tenant_id, now_ms).await?;
    issue_for(state, &user, false, now_ms)
}

/// Longest life of an exchanged directory-user token: it expires with the IdP token, but never
/// more than 24 hours after it was issued (an IdP token with a far `exp` cannot mint a token
/// that outlives every rotation).
pub const MAX_EXCHANGED_TOKEN_MS: i64 = 24 * 3600 * 1000;

/// Issue an access token for a validated directory user (`native` marks the unbilled path).
pub fn issue_for(state: &AppState, user: &DirectoryUser, native: bool, now_ms: i64) -> Result<IssuedToken, Refusal> {
    let raw_id = user.raw_id();
    let grant = TokenGrant {
        scopes: directory_scopes(),
        expires_at_ms: user.expires_at.saturating_mul(1000).min(now_ms.saturating_add(MAX_EXCHANGED_TOKEN_MS)),
        name: user.name.clone(),
        tid: Some(user.tenant_id.clone()),
        native,
        raw_id: raw_id.clone(),
    };
    let issued_at = state.auth.revocations.issue_time(&raw_id, now_ms);
    state.auth.tokens.issue(&grant, issued_at).map_err(|e| Refusal::internal(e.to_string()))
}
