//! Test constructors shared by the crate's tests (compiled only for `cargo test`).

use palaver_core::{CallType, EndpointType, ParticipantType, SessionStarted};
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// A scratch SQLite file in a directory of its own under the system temp dir. The directory
/// goes when the value is dropped (also when the test fails), so test runs leave nothing behind.
/// Derefs to the file's path.
pub(crate) struct ScratchDb {
    dir: PathBuf,
    path: PathBuf,
}

impl ScratchDb {
    /// `<temp>/<prefix>-<pid>-<uuid>/<name>.sqlite`.
    pub(crate) fn new(prefix: &str, name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.sqlite"));
        Self { dir, path }
    }

    /// The directory the file lives in.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Deref for ScratchDb {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.path
    }
}

impl AsRef<Path> for ScratchDb {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A participant joining a group call over VoIP, without a meeting chat thread. Tests that need
/// another call type or a thread change it with struct update syntax.
pub(crate) fn session_started(
    session: &str,
    conversation: &str,
    raw_id: &str,
    participant_type: ParticipantType,
    at_ms: i64,
) -> SessionStarted {
    SessionStarted {
        session_id: session.into(),
        conversation_id: conversation.into(),
        call_type: CallType::Group,
        participant_raw_id: raw_id.into(),
        participant_type,
        endpoint_type: EndpointType::Voip,
        thread_id: None,
        at_ms,
        phone: None,
    }
}
