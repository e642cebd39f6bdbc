//! Resume seam tests (issue #17, docs/cluster.md "Resume across a takeover"): with a cluster's
//! [`ConversationMirror`] plugged in, a conversation started after a takeover restores what the
//! old home carried before its first join (the joiner keeps its standing and gets the capture
//! notice again), and the home hands every change of its state to the mirror.

use super::placement::RouterFuture;
use super::resume::ConversationMirror;
use super::tests::Server;
use super::tests_joins::group_join;
use crate::domain::conversation::{CarriedConversation, CarriedParticipant};
use palaver_core::protocol::{CaptureState, CaptureStatus};
use palaver_core::{MeetingRole, Scope};
use serde_json::json;
use std::sync::{Arc, Mutex};

/// Restores `carried` for `taken_over` (once), records every mirrored state.
struct FakeMirror {
    taken_over: String,
    carried: Mutex<Option<CarriedConversation>>,
    mirrored: Mutex<Vec<(String, CarriedConversation)>>,
}

impl ConversationMirror for FakeMirror {
    fn restore<'a>(&'a self, key: &'a str) -> RouterFuture<'a, Option<CarriedConversation>> {
        Box::pin(async move { if key == self.taken_over { self.carried.lock().unwrap().take() } else { None } })
    }

    fn mirror(&self, key: &str, _conversation_id: &str, state: &CarriedConversation) {
        self.mirrored.lock().unwrap().push((key.to_string(), state.clone()));
    }
}

#[tokio::test]
async fn a_taken_over_call_restores_the_carried_state_and_mirrors_every_change() {
    let s = Server::start().await;
    let group = uuid::Uuid::new_v4().to_string();
    let key = format!("groupCall:{group}");
    let carried = CarriedConversation {
        capture: CaptureState { recording: CaptureStatus::Active, transcription: CaptureStatus::Inactive },
        participants: vec![CarriedParticipant {
            raw_id: "8:orgid:a".into(),
            participant_id: "old-a".into(),
            role: MeetingRole::Presenter,
            display_name: "Ada".into(),
            admitted: true,
            hand_raised: true,
        }],
    };
    let mirror = Arc::new(FakeMirror {
        taken_over: key.clone(),
        carried: Mutex::new(Some(carried)),
        mirrored: Mutex::new(Vec::new()),
    });
    assert!(s.state.gateway.set_conversation_mirror(mirror.clone()));

    let mut ada = s.connect(&s.token("8:orgid:a", Some("Ada"), &[Scope::Voip])).await;
    ada.send(group_join(&group, "j1")).await;
    let joined = ada.recv_type("joined").await;
    let me = joined["snapshot"]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["participantId"] == joined["snapshot"]["participantId"])
        .cloned()
        .unwrap();
    assert_eq!(me["handRaised"], true, "the raised hand came back: {me}");
    let notice = ada.recv_type("capture.changed").await;
    assert_eq!(notice["capture"]["recording"], "active", "the recording notice is sent again");

    // Every change reaches the mirror: the lowered hand is in the latest state.
    ada.send(json!({"type":"self.raiseHand","raised":false,"requestId":"h"})).await;
    ada.recv_type("ack").await;
    let lowered = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let last = mirror.mirrored.lock().unwrap().last().cloned();
            if let Some((k, state)) = last
                && k == key
                && state.participants.iter().any(|p| p.raw_id == "8:orgid:a" && !p.hand_raised)
            {
                return state;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the lowered hand was mirrored");
    assert_eq!(lowered.capture.recording, CaptureStatus::Active);
}

/// Every conversation is homed here; `dead-conv` (the old home's live id) maps to `key`.
struct HereRouter {
    key: String,
}

impl super::placement::HomeRouter for HereRouter {
    fn home_of<'a>(
        &'a self,
        _key: &'a str,
    ) -> RouterFuture<'a, Result<super::placement::HomeDecision, crate::domain::Refusal>> {
        Box::pin(async { Ok(super::placement::HomeDecision::Here) })
    }

    fn open_relay<'a>(
        &'a self,
        _home: &'a super::placement::RemoteHome,
        _credential: super::placement::RelayCredential,
    ) -> RouterFuture<'a, Result<super::placement::RelayLink, crate::domain::Refusal>> {
        Box::pin(async { Err(super::placement::home_unavailable("no relay in this test")) })
    }

    fn key_of<'a>(&'a self, conversation_id: &'a str) -> RouterFuture<'a, Option<String>> {
        Box::pin(async move { (conversation_id == "dead-conv").then(|| self.key.clone()) })
    }

    fn released(&self, _key: &str) {}
}

/// A `resume` that reaches the conversation's new home after a takeover seats the participant
/// again under its old participant id (its billing session continues), for its own identity
/// only; another identity claiming that id is refused `NotFound`.
#[tokio::test]
async fn a_resume_on_the_new_home_keeps_the_participant_id_of_its_own_identity() {
    let s = Server::start().await;
    let group = uuid::Uuid::new_v4().to_string();
    let key = format!("groupCall:{group}");
    let carried = CarriedConversation {
        capture: CaptureState::default(),
        participants: vec![CarriedParticipant {
            raw_id: "8:orgid:a".into(),
            participant_id: "old-a".into(),
            role: MeetingRole::Presenter,
            display_name: "Ada".into(),
            admitted: true,
            hand_raised: false,
        }],
    };
    let mirror = Arc::new(FakeMirror {
        taken_over: key.clone(),
        carried: Mutex::new(Some(carried)),
        mirrored: Mutex::new(Vec::new()),
    });
    assert!(s.state.gateway.set_conversation_mirror(mirror));
    assert!(s.state.gateway.set_home_router(Arc::new(HereRouter { key })));

    let resume = |pid: &str| json!({"type":"resume","requestId":"r","conversationId":"dead-conv","participantId":pid,"resumeToken":"old"});
    let mut ada = s.connect(&s.token("8:orgid:a", Some("Ada"), &[Scope::Voip])).await;
    ada.send(resume("old-a")).await;
    let joined = ada.recv_type("joined").await;
    assert_eq!(joined["snapshot"]["participantId"], "old-a", "{joined}");
    assert_ne!(joined["resumeToken"], "old", "a fresh resume token");

    let mut eve = s.connect(&s.token("8:orgid:e", Some("Eve"), &[Scope::Voip])).await;
    eve.send(resume("old-a")).await;
    let refused = eve.recv_type("error").await;
    assert_eq!(refused["code"], "NotFound", "{refused}");
    eve.send(resume("never-seated")).await;
    assert_eq!(eve.recv_type("error").await["code"], "NotFound");
    // Eve may still join afresh (a new participant).
    eve.send(group_join(&group, "e1")).await;
    let fresh = eve.recv_type("joined").await;
    assert_ne!(fresh["snapshot"]["participantId"], "old-a");
}
