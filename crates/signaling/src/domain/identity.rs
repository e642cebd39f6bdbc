//! Identity operations, free of HTTP: validate, then write atomically.
//!
//! Creating an identity (optionally with a token) and issuing a token may carry a
//! `Repeatability-Request-ID`: the first answer is stored with the request's fingerprint
//! in the same transaction as the write, and a repeat returns that answer without writing.

use crate::app::AppState;
use crate::auth::{IssuedToken, RevocationList, TokenGrant};
use crate::domain::Refusal;
use crate::store::identities::{self, StoredAnswer};
use palaver_core::{CommunicationIdentifier, ErrorCode, ScopeSet};
use serde::{Deserialize, Serialize};

/// Allowed `expiresInMinutes`.
pub const EXPIRY_MINUTES: std::ops::RangeInclusive<i64> = 60..=1440;
/// Default token lifetime (24 h).
pub const DEFAULT_EXPIRY_MINUTES: i64 = 1440;
/// How long a repeatable request's first answer is kept.
pub const REPEATABILITY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

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

pub use crate::api::Repeatability;

/// A JSON answer: status and body (a stored first answer is replayed verbatim).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
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

/// Parse a path identity id: must be a communication user of this resource.
pub fn parse_own_identity(state: &AppState, raw: &str) -> Result<String, Refusal> {
    let id = CommunicationIdentifier::parse(raw)
        .map_err(|e| Refusal::new(ErrorCode::InvalidIdentifier, e.to_string()).with_target("id"))?;
    if !id.is_external_user() {
        return Err(Refusal::new(
            ErrorCode::InvalidIdentifier,
            format!("`{raw}` is not a communication user identity"),
        )
        .with_target("id"));
    }
    if id.resource_id() != Some(state.resource.resource_id.as_str()) {
        return Err(Refusal::new(ErrorCode::IdentityNotFound, format!("identity `{raw}` does not exist")));
    }
    Ok(raw.to_string())
}

fn to_json<T: Serialize>(value: &T) -> Result<String, Refusal> {
    serde_json::to_string(value).map_err(|e| Refusal::internal(format!("cannot serialise response: {e}")))
}

/// What a write transaction ended with.
enum Outcome {
    /// The request id was seen before: answer as the first time.
    Replay(StoredAnswer),
    Done(Answer),
    /// Refused inside the transaction (rolled back, nothing written).
    Failed(Refusal),
}

impl Outcome {
    fn finish(self, repeat: Option<&Repeatability>) -> Result<Answer, Refusal> {
        match (self, repeat) {
            (Outcome::Done(answer), _) => Ok(answer),
            (Outcome::Failed(e), _) => Err(e),
            (Outcome::Replay(stored), Some(rep)) if stored.fingerprint == rep.fingerprint => {
                Ok(Answer { status: stored.status, body: stored.body })
            }
            (Outcome::Replay(_), rep) => Err(Refusal::new(
                ErrorCode::Conflict,
                format!(
                    "Repeatability-Request-ID `{}` was already used for a different request",
                    rep.map(|r| r.request_id.as_str()).unwrap_or_default()
                ),
            )),
        }
    }
}

/// `POST /identities`: create an identity, optionally with a token.
pub fn create_identity(
    state: &AppState,
    req: &CreateIdentityRequest,
    repeat: Option<&Repeatability>,
    now_ms: i64,
) -> Result<Answer, Refusal> {
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
    let raw_id = format!("8:acs:{}_{}", state.resource.resource_id, uuid::Uuid::new_v4());
    let answer = state.store.with_conn(|conn| {
        let tx = conn.transaction()?;
        if let Some(rep) = repeat
            && let Some(stored) = identities::find_answer(&tx, &rep.request_id)?
        {
            return Ok(Outcome::Replay(stored));
        }
        identities::insert_identity(&tx, &raw_id, now_ms)?;
        let access_token = match token_request {
            Some((scopes, minutes)) => {
                let grant = TokenGrant {
                    raw_id: raw_id.clone(),
                    scopes,
                    expires_at_ms: now_ms + minutes * 60_000,
                    name: None,
                    tid: None,
                    native: false,
                };
                match state.auth.tokens.issue(&grant, now_ms) {
                    Ok(t) => Some(AccessTokenResponse::from(&t)),
                    Err(e) => return Ok(Outcome::Failed(Refusal::internal(e.to_string()))),
                }
            }
            None => None,
        };
        let body = CreateIdentityResponse { identity: IdentityId { id: raw_id.clone() }, access_token };
        let body = match to_json(&body) {
            Ok(b) => b,
            Err(e) => return Ok(Outcome::Failed(e)),
        };
        if let Some(rep) = repeat {
            let stored = StoredAnswer { fingerprint: rep.fingerprint.clone(), status: 201, body: body.clone() };
            identities::save_answer(&tx, &rep.request_id, &stored, now_ms)?;
            identities::prune_answers(&tx, now_ms - REPEATABILITY_WINDOW_MS)?;
        }
        tx.commit()?;
        Ok(Outcome::Done(Answer { status: 201, body }))
    })?;
    if matches!(answer, Outcome::Done(_)) {
        tracing::info!(identity = %raw_id, with_token = token_request.is_some(), "identity created");
    }
    answer.finish(repeat)
}

/// `POST /identities/{id}/:issueAccessToken`.
pub fn issue_token(
    state: &AppState,
    raw_id: &str,
    req: &IssueTokenRequest,
    repeat: Option<&Repeatability>,
    now_ms: i64,
) -> Result<Answer, Refusal> {
    let raw_id = parse_own_identity(state, raw_id)?;
    let scopes = parse_scopes(
        req.scopes.as_deref().ok_or_else(|| {
            Refusal::new(ErrorCode::InvalidScope, "the `scopes` member is required").with_target("scopes")
        })?,
        "scopes",
    )?;
    let minutes = parse_expiry_minutes(req.expires_in_minutes)?;
    let issued_at = state.auth.revocations.issue_time(&raw_id, now_ms);
    let grant = TokenGrant {
        raw_id: raw_id.clone(),
        scopes,
        expires_at_ms: issued_at + minutes * 60_000,
        name: None,
        tid: None,
        native: false,
    };
    let outcome = state.store.with_conn(|conn| {
        let tx = conn.transaction()?;
        if let Some(rep) = repeat
            && let Some(stored) = identities::find_answer(&tx, &rep.request_id)?
        {
            return Ok(Outcome::Replay(stored));
        }
        if !identities::identity_exists(&tx, &raw_id)? {
            return Ok(Outcome::Failed(identity_not_found(&raw_id)));
        }
        let Ok(token) = state.auth.tokens.issue(&grant, issued_at) else {
            return Ok(Outcome::Failed(Refusal::internal("cannot sign the access token")));
        };
        let body = match to_json(&AccessTokenResponse::from(&token)) {
            Ok(b) => b,
            Err(e) => return Ok(Outcome::Failed(e)),
        };
        if let Some(rep) = repeat {
            let stored = StoredAnswer { fingerprint: rep.fingerprint.clone(), status: 200, body: body.clone() };
            identities::save_answer(&tx, &rep.request_id, &stored, now_ms)?;
        }
        tx.commit()?;
        Ok(Outcome::Done(Answer { status: 200, body }))
    })?;
    outcome.finish(repeat)
}

/// A committed revocation: tokens of `raw_id` issued before `revoked_before_ms` stop working.
/// Live sessions holding such a token must be ended too (the gateway does it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub raw_id: String,
    pub revoked_before_ms: i64,
}

/// `POST /identities/{id}/:revokeAccessTokens`: every token issued so far stops working.
pub fn revoke_tokens(state: &AppState, raw_id: &str, now_ms: i64) -> Result<Revocation, Refusal> {
    let revocation = revoke_if(state, raw_id, now_ms, identities::identity_exists)?;
    tracing::info!(identity = %revocation.raw_id, "access tokens revoked");
    Ok(revocation)
}

/// `DELETE /identities/{id}`: remove the identity and revoke its tokens.
pub fn delete_identity(state: &AppState, raw_id: &str, now_ms: i64) -> Result<Revocation, Refusal> {
    let revocation = revoke_if(state, raw_id, now_ms, identities::delete_identity)?;
    tracing::info!(identity = %revocation.raw_id, "identity deleted");
    Ok(revocation)
}

/// In one transaction: run `change` on the identity (false = no such identity) and write a
/// revocation mark at `now_ms`; then apply the mark in memory.
fn revoke_if(
    state: &AppState,
    raw_id: &str,
    now_ms: i64,
    change: fn(&rusqlite::Connection, &str) -> rusqlite::Result<bool>,
) -> Result<Revocation, Refusal> {
    let raw_id = parse_own_identity(state, raw_id)?;
    let mark = state.store.with_conn(|conn| {
        let tx = conn.transaction()?;
        if !change(&tx, &raw_id)? {
            return Ok(None);
        }
        let mark = RevocationList::write_mark(&tx, &raw_id, now_ms)?;
        tx.commit()?;
        Ok(Some(mark))
    })?;
    let mark = mark.ok_or_else(|| identity_not_found(&raw_id))?;
    state.auth.revocations.apply(&raw_id, mark);
    Ok(Revocation { raw_id, revoked_before_ms: mark })
}

/// Number of communication identities (for tests and diagnostics).
pub fn identity_count(state: &AppState) -> Result<i64, Refusal> {
    Ok(state.store.with_conn(|c| identities::count_identities(c))?)
}

fn identity_not_found(raw_id: &str) -> Refusal {
    Refusal::new(ErrorCode::IdentityNotFound, format!("identity `{raw_id}` does not exist"))
}
