//! Communication identifiers: the raw-id strings and their structured form.
//!
//! Raw ids follow the public ACS conventions:
//! `8:acs:<resourceId>_<guid>` (communication user), `8:orgid:<oid>` (directory user,
//! public cloud; `8:gcch:` / `8:dod:` for government clouds), `8:teamsvisitor:<id>`
//! (anonymous visitor), `28:orgid:<appId>` (directory app, e.g. a call queue),
//! `4:+<E.164>` (phone number, `4:anonymous`). [`IdentifierModel`] is the JSON wire
//! shape the SDKs send and receive.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Which directory cloud an `orgid`-style identifier belongs to. Written lower-case (the
/// REST spec's values); read in either case, as the Python SDKs send their own enum's
/// upper-case values (`"PUBLIC"`) inside `microsoftTeamsUser.cloud`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    #[serde(alias = "PUBLIC")]
    Public,
    #[serde(alias = "DOD")]
    Dod,
    #[serde(alias = "GCCH")]
    Gcch,
}

impl Cloud {
    fn user_prefix(self) -> &'static str {
        match self {
            Cloud::Public => "8:orgid:",
            Cloud::Dod => "8:dod:",
            Cloud::Gcch => "8:gcch:",
        }
    }
    fn app_prefix(self) -> &'static str {
        match self {
            Cloud::Public => "28:orgid:",
            Cloud::Dod => "28:dod:",
            Cloud::Gcch => "28:gcch:",
        }
    }
    /// Government clouds are not supported for interop (seed: "GCC ... not compatible").
    pub fn is_government(self) -> bool {
        !matches!(self, Cloud::Public)
    }
}

/// A participant identity, parsed from its raw id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CommunicationIdentifier {
    /// External (bring-your-own-identity) user: `8:acs:<resource>_<guid>`.
    CommunicationUser { id: String },
    /// Directory user (`8:orgid:`), or an anonymous visitor (`8:teamsvisitor:`).
    DirectoryUser { user_id: String, is_anonymous: bool, cloud: Cloud },
    /// Directory application such as a call queue or auto attendant (`28:orgid:`).
    DirectoryApp { app_id: String, cloud: Cloud },
    /// Phone number `4:+E.164` or `4:anonymous`; `value` excludes the `4:` prefix.
    PhoneNumber { value: String },
    /// Anything else: kept verbatim.
    Unknown { id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("identifier is empty")]
    Empty,
    #[error("identifier `{0}` is malformed: {1}")]
    Malformed(String, &'static str),
}

impl CommunicationIdentifier {
    /// Parse a raw id. Unknown prefixes become [`CommunicationIdentifier::Unknown`];
    /// known prefixes with a malformed body are an error.
    pub fn parse(raw: &str) -> Result<Self, IdentifierError> {
        if raw.is_empty() {
            return Err(IdentifierError::Empty);
        }
        let bad = |why| IdentifierError::Malformed(raw.to_string(), why);
        if let Some(rest) = raw.strip_prefix("8:acs:") {
            // exactly one `_` separating resource id and user guid
            let mut parts = rest.split('_');
            let (Some(res), Some(user), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad("expected 8:acs:<resourceId>_<id>"));
            };
            if res.is_empty() || user.is_empty() {
                return Err(bad("expected 8:acs:<resourceId>_<id>"));
            }
            return Ok(Self::CommunicationUser { id: raw.to_string() });
        }
        if let Some(v) = raw.strip_prefix("8:teamsvisitor:") {
            if v.is_empty() {
                return Err(bad("empty visitor id"));
            }
            return Ok(Self::DirectoryUser { user_id: v.to_string(), is_anonymous: true, cloud: Cloud::Public });
        }
        for cloud in [Cloud::Public, Cloud::Dod, Cloud::Gcch] {
            if let Some(v) = raw.strip_prefix(cloud.user_prefix()) {
                if v.is_empty() {
                    return Err(bad("empty directory user id"));
                }
                return Ok(Self::DirectoryUser { user_id: v.to_string(), is_anonymous: false, cloud });
            }
            if let Some(v) = raw.strip_prefix(cloud.app_prefix()) {
                if v.is_empty() {
                    return Err(bad("empty directory app id"));
                }
                return Ok(Self::DirectoryApp { app_id: v.to_string(), cloud });
            }
        }
        if let Some(v) = raw.strip_prefix("4:") {
            let ok =
                v == "anonymous" || (v.len() > 1 && v.starts_with('+') && v[1..].bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                return Err(bad("expected 4:+<E.164 digits> or 4:anonymous"));
            }
            return Ok(Self::PhoneNumber { value: v.to_string() });
        }
        Ok(Self::Unknown { id: raw.to_string() })
    }

    /// The raw id string (the inverse of [`parse`](Self::parse)).
    pub fn raw_id(&self) -> String {
        match self {
            Self::CommunicationUser { id } | Self::Unknown { id } => id.clone(),
            Self::DirectoryUser { user_id, is_anonymous: true, .. } => format!("8:teamsvisitor:{user_id}"),
            Self::DirectoryUser { user_id, cloud, .. } => format!("{}{user_id}", cloud.user_prefix()),
            Self::DirectoryApp { app_id, cloud } => format!("{}{app_id}", cloud.app_prefix()),
            Self::PhoneNumber { value } => format!("4:{value}"),
        }
    }

    /// The wire `kind` string.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::CommunicationUser { .. } => "communicationUser",
            Self::DirectoryUser { .. } => "microsoftTeamsUser",
            Self::DirectoryApp { .. } => "microsoftTeamsApp",
            Self::PhoneNumber { .. } => "phoneNumber",
            Self::Unknown { .. } => "unknown",
        }
    }

    /// An external (communication / bring-your-own-identity) user.
    pub fn is_external_user(&self) -> bool {
        matches!(self, Self::CommunicationUser { .. })
    }

    /// A signed-in (non-anonymous) directory user.
    pub fn is_directory_user(&self) -> bool {
        matches!(self, Self::DirectoryUser { is_anonymous: false, .. })
    }

    /// For a communication user: the resource id embedded in the raw id.
    pub fn resource_id(&self) -> Option<&str> {
        match self {
            Self::CommunicationUser { id } => id.strip_prefix("8:acs:")?.split('_').next(),
            _ => None,
        }
    }

    /// The structured JSON wire model the ACS SDKs use.
    pub fn to_model(&self) -> IdentifierModel {
        let mut m =
            IdentifierModel { kind: Some(self.kind().to_string()), raw_id: Some(self.raw_id()), ..Default::default() };
        match self {
            Self::CommunicationUser { id } => m.communication_user = Some(CommunicationUserModel { id: id.clone() }),
            Self::DirectoryUser { user_id, is_anonymous, cloud } => {
                m.microsoft_teams_user = Some(DirectoryUserModel {
                    user_id: user_id.clone(),
                    is_anonymous: Some(*is_anonymous),
                    cloud: Some(*cloud),
                })
            }
            Self::DirectoryApp { app_id, cloud } => {
                m.microsoft_teams_app = Some(DirectoryAppModel { app_id: app_id.clone(), cloud: Some(*cloud) })
            }
            Self::PhoneNumber { value } => m.phone_number = Some(PhoneNumberModel { value: value.clone() }),
            Self::Unknown { .. } => {}
        }
        m
    }

    /// Build from the wire model. `rawId` wins when present; otherwise the typed member.
    pub fn from_model(m: &IdentifierModel) -> Result<Self, IdentifierError> {
        if let Some(raw) = m.raw_id.as_deref().filter(|r| !r.is_empty()) {
            return Self::parse(raw);
        }
        if let Some(u) = &m.communication_user {
            return Self::parse(&u.id);
        }
        if let Some(p) = &m.phone_number {
            return Self::parse(&format!("4:{}", p.value));
        }
        if let Some(t) = &m.microsoft_teams_user {
            let cloud = t.cloud.unwrap_or(Cloud::Public);
            return Ok(Self::DirectoryUser {
                user_id: t.user_id.clone(),
                is_anonymous: t.is_anonymous.unwrap_or(false),
                cloud,
            });
        }
        if let Some(a) = &m.microsoft_teams_app {
            return Ok(Self::DirectoryApp { app_id: a.app_id.clone(), cloud: a.cloud.unwrap_or(Cloud::Public) });
        }
        Err(IdentifierError::Empty)
    }
}

impl fmt::Display for CommunicationIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw_id())
    }
}

impl std::str::FromStr for CommunicationIdentifier {
    type Err = IdentifierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// JSON wire model: `{"kind","rawId","communicationUser":{"id"},...}`. Null members are omitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentifierModel {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub communication_user: Option<CommunicationUserModel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<PhoneNumberModel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub microsoft_teams_user: Option<DirectoryUserModel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub microsoft_teams_app: Option<DirectoryAppModel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunicationUserModel {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneNumberModel {
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryUserModel {
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_anonymous: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud: Option<Cloud>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryAppModel {
    pub app_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud: Option<Cloud>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefix_round_trips() {
        for raw in [
            "8:acs:11111111-2222-3333-4444-555555555555_00000001-aaaa-bbbb-cccc-000000000001",
            "8:orgid:6a0b1b8e-0000-4000-8000-000000000001",
            "8:gcch:abc",
            "8:dod:abc",
            "8:teamsvisitor:visitor1",
            "28:orgid:queue-app",
            "28:gcch:queue-app",
            "4:+14255550123",
            "4:anonymous",
            "99:something-else",
        ] {
            let id = CommunicationIdentifier::parse(raw).unwrap();
            assert_eq!(id.raw_id(), raw);
            let back = CommunicationIdentifier::from_model(&id.to_model()).unwrap();
            assert_eq!(back, id, "{raw}");
        }
    }

    #[test]
    fn kinds_and_predicates() {
        let ext = CommunicationIdentifier::parse("8:acs:res_u1").unwrap();
        assert!(ext.is_external_user() && !ext.is_directory_user());
        assert_eq!(ext.resource_id(), Some("res"));
        assert_eq!(ext.kind(), "communicationUser");
        let dir = CommunicationIdentifier::parse("8:orgid:oid").unwrap();
        assert!(dir.is_directory_user());
        let visitor = CommunicationIdentifier::parse("8:teamsvisitor:v").unwrap();
        assert!(!visitor.is_directory_user());
        let gov = CommunicationIdentifier::parse("8:gcch:x").unwrap();
        assert!(matches!(gov, CommunicationIdentifier::DirectoryUser { cloud: Cloud::Gcch, .. }));
    }

    #[test]
    fn malformed_known_prefixes_are_errors() {
        for raw in ["", "8:acs:no-underscore", "8:acs:a_b_c", "8:acs:_x", "8:orgid:", "4:12345", "4:+12a", "28:orgid:"]
        {
            assert!(CommunicationIdentifier::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn wire_model_omits_nulls_and_uses_camel_case() {
        let id = CommunicationIdentifier::parse("8:orgid:oid").unwrap();
        let json = serde_json::to_value(id.to_model()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind":"microsoftTeamsUser","rawId":"8:orgid:oid",
                "microsoftTeamsUser":{"userId":"oid","isAnonymous":false,"cloud":"public"}})
        );
    }
}
