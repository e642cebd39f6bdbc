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
