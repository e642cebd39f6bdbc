//! Configuration of the directory (IdP) tenants whose users may exchange their tokens,
//! and of the built-in development identity provider.

use serde::{Deserialize, Serialize};

/// `[directory]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Tenants whose IdP tokens are accepted.
    pub tenants: Vec<TenantConfig>,
    /// Built-in development IdP. Unset: on when no tenants are configured, off otherwise.
    pub dev_idp: Option<bool>,
    /// Development sign-in for the web client (`/dev/web/*`: tokens without a credential).
    /// Not a key of this section: the binary sets it from `[dev] sign_in` / `--dev-sign-in`.
    /// Refused at start while tenants are configured or the development IdP is off.
    #[serde(skip)]
    pub dev_sign_in: bool,
}

impl DirectoryConfig {
    pub fn dev_idp_enabled(&self) -> bool {
        self.dev_idp.unwrap_or(self.tenants.is_empty())
    }

    /// Development sign-in may only run beside the development IdP and no real tenant.
    pub fn check_dev_sign_in(&self) -> Result<(), String> {
        if !self.dev_sign_in {
            return Ok(());
        }
        if !self.tenants.is_empty() {
            return Err("development sign-in (`[dev] sign_in`, `--dev-sign-in`) hands out tokens without a \
                        credential and cannot be on while directory tenants are configured"
                .into());
        }
        if !self.dev_idp_enabled() {
            return Err("development sign-in (`[dev] sign_in`, `--dev-sign-in`) needs the development IdP".into());
        }
        Ok(())
    }
}

/// Which cloud a tenant lives in. Only `public` tenants are supported (seed: government
/// clouds are not compatible); the others are recognised so they can be refused clearly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantCloud {
    #[default]
    Public,
    Gcc,
    Gcch,
    Dod,
}

impl TenantCloud {
    pub fn is_government(self) -> bool {
        !matches!(self, TenantCloud::Public)
    }
}

/// `[[directory.tenants]]`: one IdP tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantConfig {
    /// The `tid` claim value.
    pub tenant_id: String,
    /// Exact `iss` claim value, e.g. `https://login.example.com/<tenant>/v2.0`.
    pub issuer: String,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// Where the tenant publishes its signing keys (JWKS). Fetched lazily, cached for an hour,
    /// refreshed when a token names an unknown key.
    pub jwks_uri: Option<String>,
    /// Inline JWKS JSON (`{"keys":[...]}`), instead of `jwks_uri`.
    pub jwks: Option<String>,
    pub cloud: TenantCloud,
}
