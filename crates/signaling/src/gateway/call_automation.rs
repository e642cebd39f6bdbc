//! The gateway's Call Automation glue: the registry of live call connections
//! ([`CallAutomation`]) that the REST handlers (`api/call_automation`), the media operations
//! and the call actor share. The rules live in `domain/call_automation`; this file only
//! holds the shared state and does the I/O around it.

use crate::domain::call_automation::{CallAutomationError, CallConnectionView};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The live call connections; cheap to clone.
#[derive(Clone, Default)]
pub struct CallAutomation(Arc<CallAutomationInner>);

#[derive(Default)]
pub struct CallAutomationInner {
    connections: Mutex<HashMap<String, CallConnectionView>>,
}

impl std::fmt::Debug for CallAutomation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallAutomation").finish_non_exhaustive()
    }
}

impl CallAutomation {
    /// The call connection `ccid` (`404/8522` when unknown).
    pub fn connection(&self, ccid: &str) -> Result<CallConnectionView, CallAutomationError> {
        let connections = self.0.connections.lock().unwrap_or_else(|e| e.into_inner());
        connections.get(ccid).cloned().ok_or_else(|| CallAutomationError::call_not_found(ccid))
    }
}
