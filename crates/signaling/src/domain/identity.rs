//! Identity rules, free of HTTP: validate, then write atomically through the store's async
//! door. [`Identities`] is built from its parts (the store, this resource's id, the token
//! issuer and the revocation marks) and answers domain values or a [`Refusal`]; the API
//! layer picks the status codes.
//!
//! Creating an identity (optionally with a token) and issuing a token may carry a
//! `Repeatability-Request-ID`: the first answer is stored with the request's fingerprint
//! in the same transaction as the write, and a repeat returns that answer without writing.

use crate::auth::{IssuedToken, RevocationList, TokenGrant, TokenService};
use crate::domain::{Refusal, Repeatability};
use crate::store::identity_store::{IdentityStore, IdentityWrite, RepeatKey, RevokeAction};
use palaver_core::{CommunicationIdentifier, ErrorCode, ScopeSet};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Allowed `expiresInMinutes`.
pub const EXPIRY_MINUTES: std::ops::RangeInclusive<i64> = 60..=1440;
/// Default token lifetime (24 h).
pub const DEFAULT_EXPIRY_MINUTES: i64 = 1440;
/// How long a repeatable request's first answer is kept.
pub use crate::store::identity_store::REPEATABILITY_WINDOW_MS;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateIdentityRequest {
    pub create_token_with_scopes: Option<Vec<String>>,
    pub expires_in_minutes: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueTokenRequest {
    pub scopes: Option<Vec<String>>,
    pub expires_in_minutes: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessTokenResponse {
    pub token: String,
    pub expires_on: String,
}

impl From<&IssuedToken> for AccessTokenResponse {
    fn from(t: &IssuedToken) -> Self {
        Self { token: t.token.clone(), expires_on: t.expires_on() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityId {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateIdentityResponse {
    pub identity: IdentityId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<AccessTokenResponse>,
}

/// A committed revocation: tokens of `raw_id` issued before `revoked_before_ms` stop working.
/// Live sessions holding such a token must be ended too (the gateway does it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub raw_id: String,
    pub revoked_before_ms: i64,
}

/// The identity rules over their parts. Borrowed, so it costs nothing to build per request
/// (`AppState::identities`).
#[derive(Debug, Clone, Copy)]
pub struct Identities<'a> {
    pub store: &'a dyn IdentityStore,
    /// This resource's id: identities are `8:acs:<resource_id>_<guid>`.
    pub resource_id: &'a str,
    pub tokens: &'a TokenService,
    pub revocations: &'a RevocationList,
}

/// Validate a scope list (non-empty, known names).
pub fn parse_scopes(names: &[String], target: &str) -> Result<ScopeSet, Refusal> {
    if names.is_empty() {
        return Err(Refusal::new(ErrorCode::InvalidScope, "at least one scope is required").with_target(target));
    }
    ScopeSet::parse_list(names.iter().map(String::as_str)).map_err(|bad| {
        Refusal::new(
            ErrorCode::InvalidScope,
            format!("unknown scope `{bad}`; valid scopes: chat, voip, chat.join, chat.join.limited, voip.join"),
        )
        .with_target(target)
    })
}

/// Validate `expiresInMinutes` (default 1440).
pub fn parse_expiry_minutes(minutes: Option<i64>) -> Result<i64, Refusal> {
    let m = minutes.unwrap_or(DEFAULT_EXPIRY_MINUTES);
    if EXPIRY_MINUTES.contains(&m) {
        Ok(m)
    } else {
        Err(Refusal::new(ErrorCode::InvalidExpiry, format!("expiresInMinutes must be between 60 and 1440, got {m}"))
            .with_target("expiresInMinutes"))
    }
}

/// Parse a path identity id: must be a communication user of resource `resource_id`.
pub fn parse_own_identity(resource_id: &str, raw: &str) -> Result<String, Refusal> {
    let id = CommunicationIdentifier::parse(raw)
        .map_err(|e| Refusal::new(ErrorCode::InvalidIdentifier, e.to_string()).with_target("id"))?;
    if !id.is_external_user() {
        return Err(Refusal::new(
            ErrorCode::InvalidIdentifier,
            format!("`{raw}` is not a communication user identity"),
        )
        .with_target("id"));
    }
    if id.resource_id() != Some(resource_id) {
        return Err(Refusal::new(ErrorCode::IdentityNotFound, format!("identity `{raw}` does not exist")));
    }
    Ok(raw.to_string())
}

fn to_json<T: Serialize>(value: &T) -> Result<String, Refusal> {
    serde_json::to_string(value).map_err(|e| Refusal::internal(format!("cannot serialise response: {e}")))
}

/// The typed answer of a repeatable write: a replay answers the stored first answer when the
/// fingerprint matches (a different request with the same id is a conflict).
fn finish<T: DeserializeOwned>(
    outcome: IdentityWrite,
    body: String,
    raw_id: &str,
    repeat: Option<&Repeatability>,
) -> Result<T, Refusal> {
    let body = match (outcome, repeat) {
        (IdentityWrite::Done, _) => body,
        (IdentityWrite::NotFound, _) => return Err(identity_not_found(raw_id)),
        (IdentityWrite::Replay(stored), Some(rep)) if stored.fingerprint == rep.fingerprint => stored.body,
        (IdentityWrite::Replay(_), rep) => {
            return Err(Refusal::new(
                ErrorCode::Conflict,
                format!(
                    "Repeatability-Request-ID `{}` was already used for a different request",
                    rep.map(|r| r.request_id.as_str()).unwrap_or_default()
                ),
            ));
        }
    };
    serde_json::from_str(&body).map_err(|e| Refusal::internal(format!("stored answer is unreadable: {e}")))
}

fn repeat_key(repeat: Option<&Repeatability>) -> Option<RepeatKey> {
    repeat.map(|r| RepeatKey { request_id: r.request_id.clone(), fingerprint: r.fingerprint.clone() })
}

impl Identities<'_> {
    /// `POST /identities`: create an identity, optionally with a token.
    pub async fn create(
        &self,
        req: &CreateIdentityRequest,
        repeat: Option<&Repeatability>,
        now_ms: i64,
    ) -> Result<CreateIdentityResponse, Refusal> {
        // Validate everything before touching the store.
        let token_request = match &req.create_token_with_scopes {
            Some(names) => {
                Some((parse_scopes(names, "createTokenWithScopes")?, parse_expiry_minutes(req.expires_in_minutes)?))
            }
            None => {
                if let Some(m) = req.expires_in_minutes {
                    parse_expiry_minutes(Some(m))?;
                }
                None
            }
        };
        let raw_id = format!("8:acs:{}_{}", self.resource_id, uuid::Uuid::new_v4());
        // Signed before the transaction (pure CPU); dropped if the request is a replay.
        let access_token = match token_request {
            Some((scopes, minutes)) => Some(self.sign(&raw_id, scopes, minutes, now_ms)?),
            None => None,
        };
        let with_token = access_token.is_some();
        let body = to_json(&CreateIdentityResponse { identity: IdentityId { id: raw_id.clone() }, access_token })?;
        let outcome = self.store.create_identity(&raw_id, now_ms, repeat_key(repeat).as_ref(), &body).await?;
        if outcome == IdentityWrite::Done {
            tracing::info!(identity = %raw_id, with_token, "identity created");
        }
        finish(outcome, body, &raw_id, repeat)
    }

    /// `POST /identities/{id}/:issueAccessToken`.
    pub async fn issue_token(
        &self,
        raw_id: &str,
        req: &IssueTokenRequest,
        repeat: Option<&Repeatability>,
        now_ms: i64,
    ) -> Result<AccessTokenResponse, Refusal> {
        let raw_id = parse_own_identity(self.resource_id, raw_id)?;
        let scopes = parse_scopes(
            req.scopes.as_deref().ok_or_else(|| {
                Refusal::new(ErrorCode::InvalidScope, "the `scopes` member is required").with_target("scopes")
            })?,
            "scopes",
        )?;
        let minutes = parse_expiry_minutes(req.expires_in_minutes)?;
        let issued_at = self.revocations.issue_time(&raw_id, now_ms);
        let grant = TokenGrant {
            raw_id: raw_id.clone(),
            scopes,
            expires_at_ms: issued_at + minutes * 60_000,
            name: None,
            tid: None,
            native: false,
        };
        let token =
            self.tokens.issue(&grant, issued_at).map_err(|_| Refusal::internal("cannot sign the access token"))?;
        let body = to_json(&AccessTokenResponse::from(&token))?;
        let outcome = self.store.answer_for_existing(&raw_id, now_ms, repeat_key(repeat).as_ref(), &body).await?;
        finish(outcome, body, &raw_id, repeat)
    }

    /// `POST /identities/{id}/:revokeAccessTokens`: every token issued so far stops working.
    pub async fn revoke_tokens(&self, raw_id: &str, now_ms: i64) -> Result<Revocation, Refusal> {
        let revocation = self.revoke_if(raw_id, now_ms, RevokeAction::Revoke).await?;
        tracing::info!(identity = %revocation.raw_id, "access tokens revoked");
        Ok(revocation)
    }

    /// `DELETE /identities/{id}`: remove the identity and revoke its tokens.
    pub async fn delete(&self, raw_id: &str, now_ms: i64) -> Result<Revocation, Refusal> {
        let revocation = self.revoke_if(raw_id, now_ms, RevokeAction::Delete).await?;
        tracing::info!(identity = %revocation.raw_id, "identity deleted");
        Ok(revocation)
    }

    /// An access token of `raw_id` with `scopes`, issued at `issued_at_ms`, valid `minutes`.
    fn sign(
        &self,
        raw_id: &str,
        scopes: ScopeSet,
        minutes: i64,
        issued_at_ms: i64,
    ) -> Result<AccessTokenResponse, Refusal> {
        let grant = TokenGrant {
            raw_id: raw_id.to_string(),
            scopes,
            expires_at_ms: issued_at_ms + minutes * 60_000,
            name: None,
            tid: None,
            native: false,
        };
        let token = self.tokens.issue(&grant, issued_at_ms).map_err(|e| Refusal::internal(e.to_string()))?;
        Ok(AccessTokenResponse::from(&token))
    }

    /// In one transaction: apply `action` to the identity (`None` = no such identity) and
    /// write a revocation mark at `now_ms`; then apply the mark in memory.
    async fn revoke_if(&self, raw_id: &str, now_ms: i64, action: RevokeAction) -> Result<Revocation, Refusal> {
        let raw_id = parse_own_identity(self.resource_id, raw_id)?;
        let mark = self.store.revoke(&raw_id, now_ms, action).await?;
        let mark = mark.ok_or_else(|| identity_not_found(&raw_id))?;
        self.revocations.apply(&raw_id, mark);
        Ok(Revocation { raw_id, revoked_before_ms: mark })
    }
}

/// Number of communication identities (tests and diagnostics; synchronous).
pub fn identity_count(store: &dyn IdentityStore) -> Result<i64, Refusal> {
    Ok(store.identity_count()?)
}

fn identity_not_found(raw_id: &str) -> Refusal {
    Refusal::new(ErrorCode::IdentityNotFound, format!("identity `{raw_id}` does not exist"))
}
