//! Invitations: who a call is ringing and why, and how a call target (raw id) is
//! checked against the seed's rules before anything rings.

use super::config::CallsConfig;
use super::model::CallError;
use palaver_core::{CommunicationIdentifier, ErrorCode};

/// A checked call target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A communication or directory user, or a phone number (all rung directly).
    Direct(String),
    /// A configured call queue, by app id.
    Queue(String),
}

/// Why an invitation exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Ring someone into the call (placing, adding a participant).
    Join,
    /// Ring someone to take the transferor's place.
    Transfer { transferor: String },
}

/// One pending invitation inside a call.
#[derive(Debug, Clone)]
pub(crate) struct Invite {
    /// Unique within the manager (timers refer to it).
    pub id: u64,
    /// The raw id that was invited (user, queue or phone number).
    pub target: String,
    /// Who issued it.
    pub by: String,
    pub purpose: Purpose,
    /// For a queue: its app id and the index of the next member to try.
    pub queue: Option<QueueCursor>,
    /// The user whose devices ring right now.
    pub ringing: String,
    /// When the current ring gives up (ms).
    pub deadline: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct QueueCursor {
    pub app_id: String,
    pub next_index: usize,
}

/// Check a target raw id for a call whose other side is `counterparts`.
pub(crate) fn resolve_target(
    config: &CallsConfig,
    target: &str,
    counterparts: &[CommunicationIdentifier],
) -> Result<Target, CallError> {
    let id = CommunicationIdentifier::parse(target)
        .map_err(|e| CallError::new(ErrorCode::InvalidIdentifier, format!("target: {e}")))?;
    match &id {
        CommunicationIdentifier::DirectoryUser { cloud, .. } | CommunicationIdentifier::DirectoryApp { cloud, .. }
            if cloud.is_government() =>
        {
            Err(CallError::new(
                ErrorCode::GovernmentCloudNotSupported,
                format!("`{target}` belongs to a government cloud, which is not supported"),
            ))
        }
        CommunicationIdentifier::DirectoryUser { is_anonymous: true, .. } => {
            Err(CallError::new(ErrorCode::InvalidParameter, format!("anonymous visitor `{target}` cannot be called")))
        }
        CommunicationIdentifier::DirectoryUser { .. } => {
            if counterparts.iter().any(CommunicationIdentifier::is_external_user) {
                return Err(CallError::new(
                    ErrorCode::ExternalUserCannotCallDirectoryUser,
                    format!("external users cannot be in a call with directory user `{target}`"),
                ));
            }
            Ok(Target::Direct(id.raw_id()))
        }
        CommunicationIdentifier::CommunicationUser { .. } => {
            if counterparts.iter().any(CommunicationIdentifier::is_directory_user) {
                return Err(CallError::new(
                    ErrorCode::ExternalUserCannotCallDirectoryUser,
                    format!("external user `{target}` cannot be in a call with directory users"),
                ));
            }
            Ok(Target::Direct(id.raw_id()))
        }
        CommunicationIdentifier::DirectoryApp { app_id, .. } => match config.queue(app_id) {
            Some(q) => Ok(Target::Queue(q.app_id.clone())),
            None => {
                Err(CallError::new(ErrorCode::CallQueueNotFound, format!("no call queue `{target}` is configured")))
            }
        },
        CommunicationIdentifier::PhoneNumber { value } if value == "anonymous" => {
            Err(CallError::new(ErrorCode::InvalidParameter, "`4:anonymous` cannot be called"))
        }
        CommunicationIdentifier::PhoneNumber { .. } => {
            if config.allow_phone_targets {
                Ok(Target::Direct(id.raw_id()))
            } else {
                Err(CallError::new(
                    ErrorCode::PhoneTargetNotAllowed,
                    "calling phone numbers is not enabled on this server",
                ))
            }
        }
        CommunicationIdentifier::Unknown { .. } => {
            Err(CallError::new(ErrorCode::InvalidIdentifier, format!("`{target}` is not a callable identifier")))
        }
    }
}

/// Check the identity placing a call (from its access token).
pub(crate) fn check_caller(raw_id: &str) -> Result<CommunicationIdentifier, CallError> {
    let id = CommunicationIdentifier::parse(raw_id)
        .map_err(|e| CallError::new(ErrorCode::InvalidIdentifier, format!("caller: {e}")))?;
    match &id {
        CommunicationIdentifier::DirectoryUser { cloud, .. } if cloud.is_government() => Err(CallError::new(
            ErrorCode::GovernmentCloudNotSupported,
            "government-cloud directory users are not supported",
        )),
        CommunicationIdentifier::DirectoryUser { is_anonymous: false, .. }
        | CommunicationIdentifier::CommunicationUser { .. } => Ok(id),
        // Only the SIP gateway places calls as a phone number (access tokens never carry one).
        CommunicationIdentifier::PhoneNumber { .. } => Ok(id),
        _ => Err(CallError::new(ErrorCode::Forbidden, format!("`{raw_id}` may not place calls"))),
    }
}
