//! Participant and endpoint types, as recorded in call summaries and billing.
//!
//! The seed's pricing rule: everyone connected through palaver's own APIs/client path
//! is billable, whatever the identity model; directory users on the native client
//! path are recorded but not billed.

use serde::{Deserialize, Serialize};

/// `ParticipantType` of an `ACSCallSummary` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ParticipantType {
    /// External user in a palaver-native conversation (group call, room).
    #[serde(rename = "ACS")]
    Acs,
    /// External user in a directory-style meeting.
    #[serde(rename = "ACS as Teams external user")]
    AcsAsTeamsExternalUser,
    /// Directory user connected through palaver's client path (exchanged token).
    #[serde(rename = "ACS as Microsoft 365 user")]
    AcsAsM365User,
    /// Directory user on the native directory-client path: recorded, never billed.
    #[serde(rename = "Teams")]
    Teams,
}

impl ParticipantType {
    pub const ALL: [ParticipantType; 4] = [Self::Acs, Self::AcsAsTeamsExternalUser, Self::AcsAsM365User, Self::Teams];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acs => "ACS",
            Self::AcsAsTeamsExternalUser => "ACS as Teams external user",
            Self::AcsAsM365User => "ACS as Microsoft 365 user",
            Self::Teams => "Teams",
        }
    }
    /// A short label-safe name (Prometheus labels, CSV filters).
    pub fn label(self) -> &'static str {
        match self {
            Self::Acs => "acs",
            Self::AcsAsTeamsExternalUser => "external_in_meeting",
            Self::AcsAsM365User => "directory_via_api",
            Self::Teams => "directory_native",
        }
    }
    /// Billed to the resource? Everything but the native directory client.
    pub fn is_billable(self) -> bool {
        !matches!(self, Self::Teams)
    }
}

/// `EndpointType` of an `ACSCallSummary` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EndpointType {
    #[serde(rename = "VoIP")]
    Voip,
    #[serde(rename = "PSTN")]
    Pstn,
    Server,
    Bot,
    Unknown,
}

impl EndpointType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Voip => "VoIP",
            Self::Pstn => "PSTN",
            Self::Server => "Server",
            Self::Bot => "Bot",
            Self::Unknown => "Unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_native_directory_clients_are_free() {
        for t in ParticipantType::ALL {
            assert_eq!(t.is_billable(), t != ParticipantType::Teams);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{}\"", t.as_str()));
        }
    }
}
