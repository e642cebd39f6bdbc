//! Validation of a directory user's IdP token (an RS256 JWT): signature against the tenant's
//! JWKS, issuer, audience, `exp`/`nbf`, tenant (`tid`), government-cloud refusal; then, for
//! the token exchange, `appid` == appId, `oid` == userId and the delegated permissions.

use super::config::{DirectoryConfig, TenantConfig};
use super::jwks::{KeySet, TenantKeys};
use crate::domain::Refusal;
use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use palaver_core::ErrorCode;
use serde::Deserialize;

/// Delegated permissions an exchanged token must carry (space-separated `scp` claim).
pub const REQUIRED_PERMISSIONS: [&str; 2] = ["Teams.ManageCalls", "Teams.ManageChats"];
/// Clock skew tolerated on `exp` / `nbf`.
pub const LEEWAY_SECS: i64 = 60;

/// Issuer hosts of government-cloud authorities.
const GOVERNMENT_ISSUER_HOSTS: [&str; 3] = ["login.microsoftonline.us", "login.windows.us", "sts.windows.us"];

/// A validated directory user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    pub oid: String,
    pub tenant_id: String,
    /// Display name from the `name` claim.
    pub name: Option<String>,
    /// `appid` (v1 tokens) or `azp` (v2 tokens).
    pub app_id: Option<String>,
    /// Delegated permissions from `scp`.
    pub permissions: Vec<String>,
    /// `exp`, seconds since epoch.
    pub expires_at: i64,
}

impl DirectoryUser {
    /// `8:orgid:<oid>`.
    pub fn raw_id(&self) -> String {
        format!("8:orgid:{}", self.oid)
    }
}

#[derive(Debug, Deserialize)]
struct IdpClaims {
    #[serde(default)]
    iss: Option<String>,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    tid: Option<String>,
    #[serde(default)]
    oid: Option<String>,
    #[serde(default)]
    appid: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    scp: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tenant_region_scope: Option<String>,
    #[serde(default)]
    tenant_region_sub_scope: Option<String>,
}

#[derive(Debug)]
struct Tenant {
    config: TenantConfig,
    keys: TenantKeys,
}

/// Validates IdP tokens against the configured tenants.
#[derive(Debug)]
pub struct DirectoryValidator {
    tenants: Vec<Tenant>,
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::InvalidIdpToken, message)
}

fn government(message: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::GovernmentCloudNotSupported, message)
}

impl DirectoryValidator {
    /// Build from config plus extra tenants (the dev IdP's). Configuration errors are fatal.
    pub fn new(config: &DirectoryConfig, extra: impl IntoIterator<Item = TenantConfig>) -> Result<Self, String> {
        let mut tenants = Vec::new();
        for t in config.tenants.iter().cloned().chain(extra) {
            if t.tenant_id.is_empty() || t.issuer.is_empty() || t.audiences.is_empty() {
                return Err(format!("tenant `{}` needs tenant_id, issuer and audiences", t.tenant_id));
            }
            let keys = match (&t.jwks, &t.jwks_uri) {
                (Some(json), None) => {
                    TenantKeys::Inline(KeySet::parse(json).map_err(|e| format!("tenant `{}`: {e}", t.tenant_id))?)
                }
                (None, Some(uri)) => TenantKeys::remote(uri)?,
                _ => return Err(format!("tenant `{}` needs exactly one of jwks or jwks_uri", t.tenant_id)),
            };
            tenants.push(Tenant { config: t, keys });
        }
        Ok(Self { tenants })
    }

    pub fn tenant_ids(&self) -> impl Iterator<Item = &str> {
        self.tenants.iter().map(|t| t.config.tenant_id.as_str())
    }

    /// Validate an IdP token at `now` (seconds since epoch): signature, issuer, audience,
    /// expiry, not-before, tenant, cloud. This is also the native directory-client check.
    pub async fn validate(&self, token: &str, now: i64) -> Result<DirectoryUser, Refusal> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| invalid(format!("the IdP token is malformed: {e}")))?;
        if header.alg != Algorithm::RS256 {
            return Err(invalid(format!("the IdP token must be signed with RS256, not {:?}", header.alg)));
        }
        // Unverified look at the claims, only to pick the tenant whose keys must verify it.
        let unverified = jsonwebtoken::dangerous::insecure_decode::<IdpClaims>(token)
            .map_err(|e| invalid(format!("the IdP token payload is malformed: {e}")))?
            .claims;
        if let Some(iss) = &unverified.iss
            && is_government_issuer(iss)
        {
            return Err(government(format!("tokens from the government-cloud authority `{iss}` are not supported")));
        }
        let tid = unverified.tid.clone().ok_or_else(|| invalid("the IdP token has no `tid` claim"))?;
        let tenant = self
            .tenants
            .iter()
            .find(|t| t.config.tenant_id == tid)
            .ok_or_else(|| Refusal::new(ErrorCode::UnknownTenant, format!("tenant `{tid}` is not configured")))?;
        if tenant.config.cloud.is_government() {
            return Err(government(format!(
                "tenant `{tid}` is in a government cloud ({:?}); government clouds are not supported",
                tenant.config.cloud
            )));
        }

        let candidates =
            tenant.keys.candidates(header.kid.as_deref(), std::time::Instant::now()).await.map_err(|e| {
                tracing::warn!(tenant = %tid, error = %e, "cannot obtain tenant signing keys");
                Refusal::new(ErrorCode::StorageUnavailable, "the tenant's signing keys are unavailable, retry later")
            })?;
        if candidates.is_empty() {
            return Err(invalid("the IdP token is signed with a key the tenant does not publish"));
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&tenant.config.issuer]);
        validation.set_audience(&tenant.config.audiences);
        // exp/nbf are checked below against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims = ["exp", "iss", "aud"].iter().map(|s| s.to_string()).collect();
        let mut last_error = invalid("the IdP token signature is not valid");
        let mut verified = None;
        for key in &candidates {
            match jsonwebtoken::decode::<IdpClaims>(token, key, &validation) {
                Ok(data) => {
                    verified = Some(data.claims);
                    break;
                }
                Err(e) => {
                    last_error = match e.kind() {
                        ErrorKind::InvalidIssuer => invalid("the IdP token issuer does not match the tenant"),
                        ErrorKind::InvalidAudience => invalid("the IdP token audience is not accepted"),
                        ErrorKind::MissingRequiredClaim(c) => invalid(format!("the IdP token lacks the `{c}` claim")),
                        _ => invalid("the IdP token signature is not valid"),
                    };
                    if !matches!(e.kind(), ErrorKind::InvalidSignature) {
                        break;
                    }
                }
            }
        }
        let claims = verified.ok_or(last_error)?;
        // Saturating: `exp`/`nbf` are signed but arbitrary; near i64::MAX/MIN they must not wrap.
        if claims.exp.saturating_add(LEEWAY_SECS) <= now {
            return Err(Refusal::new(ErrorCode::IdpTokenExpired, "the IdP token has expired"));
        }
        if let Some(nbf) = claims.nbf
            && nbf.saturating_sub(LEEWAY_SECS) > now
        {
            return Err(invalid("the IdP token is not valid yet (nbf)"));
        }
        if claims.tid.as_deref() != Some(tenant.config.tenant_id.as_str()) {
            return Err(Refusal::new(ErrorCode::UnknownTenant, "the IdP token tenant does not match"));
        }
        let region_is_gov = claims.tenant_region_scope.as_deref().is_some_and(|s| matches!(s, "USGov" | "USG"))
            || claims.tenant_region_sub_scope.as_deref().is_some_and(|s| matches!(s, "GCC" | "DODCON" | "DOD"));
        if region_is_gov {
            return Err(government("the IdP token belongs to a government-cloud tenant; not supported"));
        }
        let oid = claims.oid.filter(|o| !o.is_empty()).ok_or_else(|| invalid("the IdP token has no `oid` claim"))?;
        Ok(DirectoryUser {
            oid,
            tenant_id: tid,
            name: claims.name,
            app_id: claims.appid.or(claims.azp),
            permissions: claims.scp.unwrap_or_default().split_whitespace().map(str::to_string).collect(),
            expires_at: claims.exp,
        })
    }
}

/// The token exchange's checks after the IdP token itself was accepted, in ACS's order and
/// with ACS's answers: `appId` and `userId` must be GUIDs (`400 ValidationError` "... has
/// invalid format.", naming the member), must match the token's application and user
/// (`400 ValidationError`), and the token must carry both delegated permissions.
pub fn check_exchange(user: &DirectoryUser, app_id: &str, user_id: &str) -> Result<(), Refusal> {
    if uuid::Uuid::try_parse(app_id).is_err() {
        return Err(Refusal::new(ErrorCode::ValidationError, "Provided AppId has invalid format.").with_target("appId"));
    }
    if uuid::Uuid::try_parse(user_id).is_err() {
        return Err(
            Refusal::new(ErrorCode::ValidationError, "Provided UserId has invalid format.").with_target("userId")
        );
    }
    if !user.app_id.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(app_id)) {
        return Err(Refusal::new(ErrorCode::ValidationError, "AAD application is not the expected one."));
    }
    if !user.oid.eq_ignore_ascii_case(user_id) {
        return Err(Refusal::new(ErrorCode::ValidationError, "Provided AAD token issued for unexpected user."));
    }
    let missing: Vec<&str> =
        REQUIRED_PERMISSIONS.iter().copied().filter(|p| !user.permissions.iter().any(|have| have == p)).collect();
    if !missing.is_empty() {
        return Err(Refusal::new(
            ErrorCode::MissingDelegatedPermission,
            format!("the IdP token lacks the delegated permission(s) {}", missing.join(", ")),
        ));
    }
    Ok(())
}

/// How the exchange door answers a refused IdP token: ACS checks the token before anything
/// else and answers an unusable one (empty, malformed, badly signed, expired) with
/// `401 InvalidAccessToken`; palaver keeps its specific reason in the message. Tenant and
/// cloud refusals keep their own codes.
pub fn exchange_token_refusal(refusal: Refusal) -> Refusal {
    match refusal.code {
        ErrorCode::InvalidIdpToken | ErrorCode::IdpTokenExpired => {
            Refusal::new(ErrorCode::InvalidAccessToken, refusal.message)
        }
        _ => refusal,
    }
}

fn is_government_issuer(iss: &str) -> bool {
    let host = iss.split("://").nth(1).unwrap_or(iss).split('/').next().unwrap_or("");
    GOVERNMENT_ISSUER_HOSTS.iter().any(|g| host.eq_ignore_ascii_case(g))
}
