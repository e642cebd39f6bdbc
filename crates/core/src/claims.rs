//! Access-token claims and scopes.
//!
//! palaver's access tokens are JWTs whose payload mirrors the claims observed on ACS
//! tokens (`skypeid`, `scp`, `csi`, `iat`, `exp`, `acsScope`, `resourceId`,
//! `resourceLocation`) plus a few of palaver's own (`jti`, `iatms`, `name`, `tid`,
//! `native`). Which crate signs and verifies them is not this module's business.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A token scope, as named on the Identity API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "chat")]
    Chat,
    #[serde(rename = "voip")]
    Voip,
    #[serde(rename = "chat.join")]
    ChatJoin,
    #[serde(rename = "chat.join.limited")]
    ChatJoinLimited,
    #[serde(rename = "voip.join")]
    VoipJoin,
}

impl Scope {
    pub const ALL: [Scope; 5] = [Scope::Chat, Scope::Voip, Scope::ChatJoin, Scope::ChatJoinLimited, Scope::VoipJoin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Chat => "chat",
            Scope::Voip => "voip",
            Scope::ChatJoin => "chat.join",
            Scope::ChatJoinLimited => "chat.join.limited",
            Scope::VoipJoin => "voip.join",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|sc| sc.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A small set of scopes (bitset), printed as the comma list used in `acsScope`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(u8);

impl ScopeSet {
    pub fn empty() -> Self {
        Self(0)
    }
    pub fn with(mut self, s: Scope) -> Self {
        self.0 |= s.bit();
        self
    }
    pub fn contains(self, s: Scope) -> bool {
        self.0 & s.bit() != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }
    /// May this token take part in calls and meetings (`voip` or `voip.join`)?
    pub fn allows_calling(self) -> bool {
        self.contains(Scope::Voip) || self.contains(Scope::VoipJoin)
    }
    /// May this token use chat (`chat`, `chat.join` or `chat.join.limited`)?
    pub fn allows_chat(self) -> bool {
        self.contains(Scope::Chat) || self.contains(Scope::ChatJoin) || self.contains(Scope::ChatJoinLimited)
    }
    /// Parse a list of scope names; the first unknown name is returned as the error.
    pub fn parse_list<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut set = Self::empty();
        for n in names {
            set = set.with(Scope::parse(n).ok_or_else(|| n.to_string())?);
        }
        Ok(set)
    }
    /// The `acsScope` claim form: `chat,voip`.
    pub fn to_claim(self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(",")
    }
    pub fn from_claim(s: &str) -> Result<Self, String> {
        Self::parse_list(s.split(',').map(str::trim).filter(|x| !x.is_empty()))
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<T: IntoIterator<Item = Scope>>(iter: T) -> Self {
        iter.into_iter().fold(Self::empty(), Self::with)
    }
}

/// The payload of a palaver access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// Raw id without the leading `8:` (e.g. `acs:<res>_<guid>`, `orgid:<oid>`).
    pub skypeid: String,
    /// Numeric scope marker as on ACS tokens (constant 1792 there).
    pub scp: u32,
    /// Issued-at, seconds since epoch, as a string.
    pub csi: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(rename = "acsScope")]
    pub acs_scope: String,
    #[serde(rename = "resourceId")]
    pub resource_id: String,
    #[serde(rename = "resourceLocation")]
    pub resource_location: String,
    /// Unique token id; also varied to keep the base64url payload free of `-`/`_`.
    pub jti: String,
    /// Issued-at in milliseconds: revocation compares against this, not `iat`.
    pub iatms: i64,
    /// Display name carried for directory users (from the IdP `name` claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Directory tenant id for directory users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    /// True when the holder signed in on the native directory-client path (not billed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub native: bool,
}

impl AccessTokenClaims {
    /// The full raw id (`8:` + `skypeid`).
    pub fn raw_id(&self) -> String {
        format!("8:{}", self.skypeid)
    }
    pub fn scopes(&self) -> ScopeSet {
        ScopeSet::from_claim(&self.acs_scope).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_round_trip() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        assert_eq!(Scope::parse("voip.admin"), None);
    }

    #[test]
    fn scope_set_claim_form() {
        let set = ScopeSet::parse_list(["voip", "chat"]).unwrap();
        assert_eq!(set.to_claim(), "chat,voip");
        assert_eq!(ScopeSet::from_claim("chat,voip").unwrap(), set);
        assert!(set.allows_calling() && set.allows_chat());
        assert_eq!(ScopeSet::parse_list(["chat", "bogus"]), Err("bogus".to_string()));
        let join_only = ScopeSet::parse_list(["voip.join"]).unwrap();
        assert!(join_only.allows_calling() && !join_only.allows_chat());
    }
}
