//! Meetings, free of HTTP: who may organize and manage a meeting, what a new meeting may
//! hold ([`limits`]), how a policy change reaches a meeting in progress, and how a join by
//! meeting code + passcode is checked ([`passcode_guard`]). [`Meetings`] is built once from
//! its parts (the meetings table, the chat service) and answers records or a [`Refusal`];
//! the API layer maps refusals to the ACS error body, the gateway to error frames.
//!
//! A meeting in progress lives in a conversation actor the domain cannot see; operations
//! that must reach it take a [`LiveMeetings`] (the gateway implements it).

pub mod limits;
pub mod passcode_guard;
#[cfg(test)]
mod tests;

use crate::domain::Refusal;
use crate::domain::chat::ChatService;
use crate::domain::chat::meeting::DEFAULT_MEETING_TOPIC;
use crate::domain::conversation::{Authority, ServerCommand, apply_policy_update};
use crate::store::meetings::{Created, MeetingDirectory, generate_meeting_code, generate_passcode, normalize_code};
use limits::{CreationLimiter, check_list_len, dedup_in_order};
use palaver_core::protocol::{MeetingPolicy, PolicyUpdate};
use palaver_core::{CommunicationIdentifier, ErrorCode};
use passcode_guard::PasscodeGuard;
use serde::Deserialize;
use std::future::Future;
use std::sync::Arc;

pub use crate::store::meetings::MeetingRecord;

/// `POST /meetings` body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateMeetingRequest {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub co_organizers: Vec<String>,
    #[serde(default)]
    pub presenters: Vec<String>,
    #[serde(default)]
    pub policy: PolicyUpdate,
    /// Server API only: the organizing directory user.
    #[serde(default)]
    pub organizer: Option<String>,
    /// Server API only: the organizer's tenant.
    #[serde(default)]
    pub organizer_tenant_id: Option<String>,
}

/// Who asks: the server API (HMAC), or a user with a verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requester {
    Server,
    User { identifier: CommunicationIdentifier, tenant_id: Option<String> },
}

impl Requester {
    fn raw_id(&self) -> Option<String> {
        match self {
            Requester::Server => None,
            Requester::User { identifier, .. } => Some(identifier.raw_id()),
        }
    }
}

/// The meetings in progress, as the domain needs them (implemented by the gateway).
pub trait LiveMeetings: Sync {
    /// Run `command` on the meeting's live conversation; `None` when it is not in progress.
    fn command(
        &self,
        meeting_id: &str,
        authority: Authority,
        command: ServerCommand,
    ) -> impl Future<Output = Option<Result<(), Refusal>>> + Send;
}

/// The meetings service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Meetings(Arc<MeetingsInner>);

#[derive(Debug)]
struct MeetingsInner {
    directory: MeetingDirectory,
    chat: ChatService,
    creations: CreationLimiter,
    passcodes: PasscodeGuard,
}

/// The one answer to a code join that did not match: an unknown code and a wrong passcode
/// read the same, so codes cannot be enumerated.
fn no_such_code_and_passcode() -> Refusal {
    Refusal::new(ErrorCode::WrongPasscode, "no meeting has that meeting id and passcode")
}

fn not_found(id: &str) -> Refusal {
    Refusal::new(ErrorCode::MeetingNotFound, format!("no meeting `{id}`"))
}

/// Parse and check a list of directory users: length first (before any entry is parsed),
/// then each entry, then repeats dropped in one pass.
fn directory_users(list: Vec<String>, max: usize, field: &str) -> Result<Vec<String>, Refusal> {
    check_list_len(&list, max, field)?;
    for raw in &list {
        let id = CommunicationIdentifier::parse(raw)
            .map_err(|e| Refusal::new(ErrorCode::InvalidIdentifier, e.to_string()).with_target(field))?;
        if !id.is_directory_user() {
            return Err(Refusal::new(ErrorCode::InvalidIdentifier, format!("`{raw}` is not a directory user"))
                .with_target(field));
        }
    }
    Ok(dedup_in_order(list))
}

impl Meetings {
    pub fn new(directory: MeetingDirectory, chat: ChatService) -> Self {
        Self(Arc::new(MeetingsInner {
            directory,
            chat,
            creations: CreationLimiter::default(),
            passcodes: PasscodeGuard::default(),
        }))
    }

    /// Create a meeting (and its chat thread). Users organize their own meetings (directory
    /// users only); the server API names the organizer.
    pub async fn create(
        &self,
        by: &Requester,
        req: CreateMeetingRequest,
        now_ms: i64,
    ) -> Result<MeetingRecord, Refusal> {
        let (organizer, tenant) = match by {
            Requester::User { identifier, tenant_id } => {
                if !identifier.is_directory_user() {
                    return Err(Refusal::new(ErrorCode::Forbidden, "only directory users can organize meetings"));
                }
                if req.organizer.is_some() || req.organizer_tenant_id.is_some() {
                    return Err(Refusal::new(ErrorCode::InvalidParameter, "organizer is taken from the access token")
                        .with_target("organizer"));
                }
                (identifier.raw_id(), tenant_id.clone())
            }
            Requester::Server => {
                let organizer = req.organizer.clone().ok_or_else(|| {
                    Refusal::new(ErrorCode::InvalidParameter, "the server API must name the organizer")
                        .with_target("organizer")
                })?;
                directory_users(vec![organizer.clone()], 1, "organizer")?;
                (organizer, req.organizer_tenant_id.clone())
            }
        };
        let subject = req.subject.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        if subject.as_ref().is_some_and(|s| s.chars().count() > limits::MAX_SUBJECT_CHARS) {
            return Err(Refusal::new(
                ErrorCode::InvalidParameter,
                format!("subject is longer than {} characters", limits::MAX_SUBJECT_CHARS),
            )
            .with_target("subject"));
        }
        let co_organizers = directory_users(req.co_organizers, limits::MAX_CO_ORGANIZERS, "coOrganizers")?;
        let presenters = directory_users(req.presenters, limits::MAX_PRESENTERS, "presenters")?;
        let policy = apply_policy_update(MeetingPolicy::default(), req.policy).map_err(|r| r.with_target("policy"))?;
        self.0.creations.take(&organizer, now_ms)?;
        let mut record = MeetingRecord {
            id: uuid::Uuid::new_v4().to_string(),
            meeting_code: generate_meeting_code(),
            passcode: generate_passcode(),
            subject,
            organizer_raw_id: organizer,
            organizer_tenant_id: tenant,
            co_organizers,
            presenters,
            policy,
            created_at_ms: now_ms,
        };
        if self.0.directory.create(&mut record, limits::MAX_MEETINGS_PER_ORGANIZER).await? == Created::OrganizerFull {
            return Err(Refusal::new(
                ErrorCode::CapacityReached,
                format!(
                    "an organizer holds at most {} meetings; delete some first",
                    limits::MAX_MEETINGS_PER_ORGANIZER
                ),
            ));
        }
        let topic = record.subject.clone().unwrap_or_else(|| DEFAULT_MEETING_TOPIC.to_string());
        self.0.chat.create_meeting_thread(&record.id, &topic, &record.organizer_raw_id, record.created_at_ms).await?;
        tracing::info!(meeting = %record.id, organizer = %record.organizer_raw_id, "meeting created");
        Ok(record)
    }

    /// The meeting, if `by` may manage it (organizer, co-organizer, or the server API).
    pub async fn managed(&self, id: &str, by: &Requester) -> Result<MeetingRecord, Refusal> {
        let record = self.0.directory.get(id).await?.ok_or_else(|| not_found(id))?;
        // A directory caller of another tenant is not the organizer whatever its raw id (issue #19).
        let other_tenant = matches!(by, Requester::User { identifier, tenant_id: Some(tid) }
            if identifier.is_directory_user()
                && record.organizer_tenant_id.as_ref().is_some_and(|organizer| organizer != tid));
        if let Some(raw) = by.raw_id()
            && (other_tenant || !record.is_organizer_like(&raw))
        {
            return Err(Refusal::new(ErrorCode::Forbidden, "only the organizer and co-organizers manage this meeting"));
        }
        Ok(record)
    }

    /// Change the policy: a meeting in progress applies it (participants are told, its actor
    /// stores it); otherwise it is stored here. Answers the meeting as stored afterwards.
    pub async fn update_policy(
        &self,
        id: &str,
        by: &Requester,
        update: PolicyUpdate,
        live: &impl LiveMeetings,
    ) -> Result<MeetingRecord, Refusal> {
        let record = self.managed(id, by).await?;
        let next = apply_policy_update(record.policy, update).map_err(|r| r.with_target("policy"))?;
        let applied_live =
            matches!(live.command(id, Authority::Server, ServerCommand::UpdatePolicy(update)).await, Some(Ok(())));
        if !applied_live {
            self.0.directory.set_policy(id, &next).await?;
        }
        self.managed(id, by).await
    }

    /// Delete a meeting (organizer or server API): a meeting in progress ends for everyone,
    /// then its definition goes, then its chat thread; returns the `chatThreadDeleted` event
    /// for the caller to deliver.
    pub async fn delete(
        &self,
        id: &str,
        by: &Requester,
        live: &impl LiveMeetings,
    ) -> Result<Option<crate::domain::chat::ChatEvent>, Refusal> {
        let record = self.managed(id, by).await?;
        if by.raw_id().is_some_and(|raw| raw != record.organizer_raw_id) {
            return Err(Refusal::new(ErrorCode::Forbidden, "only the organizer deletes a meeting"));
        }
        // An already-ending meeting is fine.
        let _ = live.command(id, Authority::Server, ServerCommand::End).await;
        self.0.directory.delete(id).await?;
        let event =
            self.0.chat.delete_meeting_thread(id, &record.organizer_raw_id, palaver_core::time::now_ms()).await?;
        tracing::info!(meeting = %id, "meeting deleted");
        Ok(event)
    }

    /// Recording or transcription on a meeting in progress; the conversation checks that
    /// `authority` may do it.
    pub async fn capture(
        &self,
        id: &str,
        authority: Authority,
        command: ServerCommand,
        live: &impl LiveMeetings,
    ) -> Result<(), Refusal> {
        self.0.directory.get(id).await?.ok_or_else(|| not_found(id))?;
        live.command(id, authority, command)
            .await
            .unwrap_or_else(|| Err(Refusal::new(ErrorCode::InvalidState, "the conversation is not in progress")))
    }

    /// The meeting a join link names (the link's id is unguessable; no passcode).
    pub async fn by_id(&self, id: &str) -> Result<MeetingRecord, Refusal> {
        self.0.directory.get(id).await?.ok_or_else(|| Refusal::new(ErrorCode::MeetingNotFound, "no such meeting"))
    }

    /// The meeting `who` joins by meeting code and passcode. An unknown code, a malformed one
    /// and a wrong passcode get the same refusal; failures count per code and per identity,
    /// and a locked code or identity is told when to retry (`TooManyRequests`).
    pub async fn by_code(&self, code: &str, passcode: &str, who: &str, now_ms: i64) -> Result<MeetingRecord, Refusal> {
        let code = normalize_code(code);
        // Only well-formed codes are remembered, so the counters stay small.
        let code_key = if code.len() == 12 && code.bytes().all(|b| b.is_ascii_digit()) { code.as_str() } else { "" };
        if let Err(wait_ms) = self.0.passcodes.check(code_key, who, now_ms) {
            let wait_s = (wait_ms + 999) / 1000;
            return Err(Refusal::new(
                ErrorCode::TooManyRequests,
                format!("too many failed joins by meeting id; retry in {wait_s} s"),
            ));
        }
        let found = match code_key {
            "" => None,
            key => self.0.directory.by_code(key).await?,
        };
        match found {
            Some(record) if record.passcode_matches(passcode) => Ok(record),
            _ => {
                self.0.passcodes.failed(code_key, who, now_ms);
                tracing::debug!(user = who, "meeting join by code refused");
                Err(no_such_code_and_passcode())
            }
        }
    }

    /// Store a policy a meeting in progress changed (from its actor).
    pub async fn store_policy(&self, id: &str, policy: &MeetingPolicy) -> Result<(), Refusal> {
        self.0.directory.set_policy(id, policy).await?;
        Ok(())
    }
}
