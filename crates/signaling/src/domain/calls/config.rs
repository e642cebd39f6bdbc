//! Call configuration: ring timeouts, phone-target policy, participant cap and the
//! call queues (`28:orgid:<appId>` apps whose members are rung in turn).
//!
//! This is the `[calls]` table of the server's TOML configuration.

use palaver_core::{Cloud, CommunicationIdentifier};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// `[calls]` in the server configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// How long a called user's devices ring before the invitation fails with `noAnswer`.
    pub ring_timeout_secs: u64,
    /// May calls ring phone numbers (`4:+E.164`)? Off by default.
    pub allow_phone_targets: bool,
    /// Most participants (connected plus ringing) one call may hold.
    pub max_participants: usize,
    /// Call queues, addressed as `28:orgid:<app_id>`.
    pub queues: Vec<CallQueueConfig>,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self { ring_timeout_secs: 30, allow_phone_targets: false, max_participants: 350, queues: Vec::new() }
    }
}

/// `[[calls.queues]]`: a call queue and the directory users it rings, in list order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallQueueConfig {
    /// The app id: the queue is called as `28:orgid:<app_id>`.
    pub app_id: String,
    /// Shown to the rung member as the queue the call came through.
    #[serde(default)]
    pub name: Option<String>,
    /// Raw ids of directory users (`8:orgid:...`), rung one after another in this order.
    pub members: Vec<String>,
    /// How long each member rings before the queue moves to the next one.
    #[serde(default = "default_member_ring_timeout_secs")]
    pub member_ring_timeout_secs: u64,
    /// Music or an announcement phone callers hear, looped, while they wait in this queue
    /// (a 16-bit PCM WAV file, read at start by the server; see docs/sip.md "Hold audio").
    #[serde(default)]
    pub hold_audio: Option<std::path::PathBuf>,
}

fn default_member_ring_timeout_secs() -> u64 {
    15
}

impl CallQueueConfig {
    /// The raw id callers use for this queue.
    pub fn raw_id(&self) -> String {
        format!("28:orgid:{}", self.app_id)
    }
}

/// A configuration mistake, reported at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallsConfigError {
    #[error("calls.ring_timeout_secs must be between 1 and 600, got {0}")]
    RingTimeout(u64),
    #[error("calls.max_participants must be at least 2, got {0}")]
    MaxParticipants(usize),
    #[error("call queue app_id `{0}` is empty or malformed")]
    QueueAppId(String),
    #[error("call queue `{0}` is configured twice")]
    DuplicateQueue(String),
    #[error("call queue `{0}` has no members")]
    NoMembers(String),
    #[error("call queue `{queue}` member `{member}` is not a public-cloud directory user (8:orgid:...)")]
    BadMember { queue: String, member: String },
    #[error("call queue `{queue}` member_ring_timeout_secs must be between 1 and 600, got {secs}")]
    MemberRingTimeout { queue: String, secs: u64 },
}

impl CallsConfig {
    /// Check every value; the server refuses to start on an error.
    pub fn validate(&self) -> Result<(), CallsConfigError> {
        if !(1..=600).contains(&self.ring_timeout_secs) {
            return Err(CallsConfigError::RingTimeout(self.ring_timeout_secs));
        }
        if self.max_participants < 2 {
            return Err(CallsConfigError::MaxParticipants(self.max_participants));
        }
        let mut seen = HashSet::new();
        for q in &self.queues {
            let parsed = CommunicationIdentifier::parse(&q.raw_id());
            if !matches!(parsed, Ok(CommunicationIdentifier::DirectoryApp { cloud: Cloud::Public, .. }))
                || q.app_id.contains(char::is_whitespace)
            {
                return Err(CallsConfigError::QueueAppId(q.app_id.clone()));
            }
            if !seen.insert(q.app_id.as_str()) {
                return Err(CallsConfigError::DuplicateQueue(q.app_id.clone()));
            }
            if q.members.is_empty() {
                return Err(CallsConfigError::NoMembers(q.app_id.clone()));
            }
            for m in &q.members {
                let ok = CommunicationIdentifier::parse(m)
                    .map(|id| {
                        id.is_directory_user()
                            && matches!(id, CommunicationIdentifier::DirectoryUser { cloud: Cloud::Public, .. })
                    })
                    .unwrap_or(false);
                if !ok {
                    return Err(CallsConfigError::BadMember { queue: q.app_id.clone(), member: m.clone() });
                }
            }
            if !(1..=600).contains(&q.member_ring_timeout_secs) {
                return Err(CallsConfigError::MemberRingTimeout {
                    queue: q.app_id.clone(),
                    secs: q.member_ring_timeout_secs,
                });
            }
        }
        Ok(())
    }

    /// The queue addressed by `app_id`, if configured.
    pub fn queue(&self, app_id: &str) -> Option<&CallQueueConfig> {
        self.queues.iter().find(|q| q.app_id == app_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(app_id: &str, members: &[&str]) -> CallQueueConfig {
        CallQueueConfig {
            app_id: app_id.into(),
            name: None,
            members: members.iter().map(|m| m.to_string()).collect(),
            member_ring_timeout_secs: 15,
            hold_audio: None,
        }
    }

    #[test]
    fn toml_shape_with_defaults() {
        let text = r#"
            ring_timeout_secs = 20
            [[queues]]
            app_id = "support"
            name = "Support line"
            members = ["8:orgid:a", "8:orgid:b"]
        "#;
        let cfg: CallsConfig = toml::from_str(text).unwrap();
        assert_eq!(cfg.ring_timeout_secs, 20);
        assert!(!cfg.allow_phone_targets);
        assert_eq!(cfg.max_participants, 350);
        assert_eq!(cfg.queues[0].member_ring_timeout_secs, 15);
        assert_eq!(cfg.queues[0].raw_id(), "28:orgid:support");
        cfg.validate().unwrap();
        assert!(toml::from_str::<CallsConfig>("ring_timeout = 3").is_err(), "unknown keys are refused");
    }

    #[test]
    fn signaling_config_holds_the_calls_section_and_startup_checks_it() {
        let cfg: crate::app::SignalingConfig = toml::from_str(
            r#"
            [calls]
            ring_timeout_secs = 20
            [[calls.queues]]
            app_id = "support"
            members = ["8:orgid:a"]
        "#,
        )
        .unwrap();
        assert_eq!((cfg.calls.ring_timeout_secs, cfg.calls.queues[0].app_id.as_str()), (20, "support"));
        let store = crate::store::Store::open_in_memory().unwrap();
        crate::app::AppState::open(cfg.clone(), store.clone(), Default::default()).expect("valid calls config");
        let mut bad = cfg;
        bad.calls.queues[0].members = vec!["8:acs:r_u".into()];
        let err = crate::app::AppState::open(bad, store, Default::default()).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("member"), "{err}");
    }

    #[test]
    fn validation_errors() {
        let base = CallsConfig::default();
        base.validate().unwrap();
        let bad = |f: &dyn Fn(&mut CallsConfig)| {
            let mut c = base.clone();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert_eq!(bad(&|c| c.ring_timeout_secs = 0), CallsConfigError::RingTimeout(0));
        assert_eq!(bad(&|c| c.max_participants = 1), CallsConfigError::MaxParticipants(1));
        assert!(matches!(bad(&|c| c.queues = vec![queue("", &["8:orgid:a"])]), CallsConfigError::QueueAppId(_)));
        assert!(matches!(bad(&|c| c.queues = vec![queue("q", &[])]), CallsConfigError::NoMembers(_)));
        assert!(matches!(
            bad(&|c| c.queues = vec![queue("q", &["8:orgid:a"]), queue("q", &["8:orgid:b"])]),
            CallsConfigError::DuplicateQueue(_)
        ));
        for member in ["8:acs:r_u", "8:gcch:x", "8:teamsvisitor:v", "4:+1555", "junk"] {
            assert!(
                matches!(bad(&|c| c.queues = vec![queue("q", &[member])]), CallsConfigError::BadMember { .. }),
                "{member}"
            );
        }
        let mut q = queue("q", &["8:orgid:a"]);
        q.member_ring_timeout_secs = 0;
        assert!(matches!(bad(&|c| c.queues = vec![q.clone()]), CallsConfigError::MemberRingTimeout { .. }));
    }
}
