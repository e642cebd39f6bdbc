//! The meetings rules against an in-memory store and a scripted set of meetings in progress.

use super::limits::{CREATIONS_PER_MINUTE, MAX_CO_ORGANIZERS, MAX_MEETINGS_PER_ORGANIZER, MAX_PRESENTERS};
use super::passcode_guard::{FIRST_BACKOFF_MS, FREE_FAILURES};
use super::*;
use crate::store::Store;
use std::sync::Mutex;

/// Meetings in progress: the ids listed are live; every command is recorded.
#[derive(Default)]
struct Live {
    live: Vec<String>,
    commands: Mutex<Vec<(String, ServerCommand)>>,
}

impl LiveMeetings for Live {
    async fn command(&self, meeting_id: &str, _: Authority, command: ServerCommand) -> Option<Result<(), Refusal>> {
        if !self.live.iter().any(|m| m == meeting_id) {
            return None;
        }
        self.commands.lock().unwrap().push((meeting_id.to_string(), command));
        Some(Ok(()))
    }
}

fn meetings() -> Meetings {
    let store = Store::open_in_memory().unwrap();
    let chat = ChatService::open(store.clone(), None).unwrap();
    Meetings::new(MeetingDirectory::open(store).unwrap(), chat)
}

fn user(raw: &str) -> Requester {
    Requester::User { identifier: CommunicationIdentifier::parse(raw).unwrap(), tenant_id: Some("t1".into()) }
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("8:orgid:{prefix}-{i}")).collect()
}

const ORG: &str = "8:orgid:organizer";

#[tokio::test]
async fn lists_longer_than_the_limits_are_refused_before_anything_is_written() {
    let m = meetings();
    let too_many = CreateMeetingRequest { co_organizers: ids("c", MAX_CO_ORGANIZERS + 1), ..Default::default() };
    let e = m.create(&user(ORG), too_many, 1).await.unwrap_err();
    assert_eq!((e.code, e.target.as_deref()), (ErrorCode::InvalidParameter, Some("coOrganizers")), "{e}");
    let too_many = CreateMeetingRequest { presenters: ids("p", MAX_PRESENTERS + 1), ..Default::default() };
    let e = m.create(&user(ORG), too_many, 1).await.unwrap_err();
    assert_eq!((e.code, e.target.as_deref()), (ErrorCode::InvalidParameter, Some("presenters")), "{e}");
    // The probe's list: 21,000 entries, mostly repeats. Refused on its length alone.
    let probe = CreateMeetingRequest { co_organizers: vec![ORG.to_string(); 21_000], ..Default::default() };
    assert_eq!(m.create(&user(ORG), probe, 1).await.unwrap_err().code, ErrorCode::InvalidParameter);
    // At the limits, with repeats: accepted, repeats dropped in order.
    let mut co = ids("c", MAX_CO_ORGANIZERS - 1);
    co.insert(1, co[0].clone());
    let ok = CreateMeetingRequest { co_organizers: co, presenters: ids("p", MAX_PRESENTERS), ..Default::default() };
    let record = m.create(&user(ORG), ok, 1).await.unwrap();
    assert_eq!(record.co_organizers, ids("c", MAX_CO_ORGANIZERS - 1));
    assert_eq!(record.presenters.len(), MAX_PRESENTERS);
}

#[tokio::test]
async fn an_organizer_creates_at_most_the_per_minute_budget_and_the_standing_maximum() {
    let m = meetings();
    for _ in 0..CREATIONS_PER_MINUTE {
        m.create(&user(ORG), CreateMeetingRequest::default(), 1_000).await.unwrap();
    }
    let e = m.create(&user(ORG), CreateMeetingRequest::default(), 1_000).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::TooManyRequests);
    // The server API creating for the same organizer is held to the same budget; another
    // organizer is not.
    let for_org = CreateMeetingRequest { organizer: Some(ORG.into()), ..Default::default() };
    assert_eq!(m.create(&Requester::Server, for_org, 1_000).await.unwrap_err().code, ErrorCode::TooManyRequests);
    m.create(&user("8:orgid:other"), CreateMeetingRequest::default(), 1_000).await.unwrap();

    // Spread out in time, the standing maximum applies.
    let mut now = 1_000;
    for _ in CREATIONS_PER_MINUTE as usize..MAX_MEETINGS_PER_ORGANIZER {
        now += 3_000;
        m.create(&user(ORG), CreateMeetingRequest::default(), now).await.unwrap();
    }
    now += 3_000;
    let e = m.create(&user(ORG), CreateMeetingRequest::default(), now).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::CapacityReached, "{e}");
}

#[tokio::test]
async fn unknown_codes_and_wrong_passcodes_read_the_same_and_guessing_backs_off() {
    let m = meetings();
    let record = m.create(&user(ORG), CreateMeetingRequest::default(), 1).await.unwrap();
    let guest = "8:acs:r_guest";
    let wrong = m.by_code(&record.meeting_code, "nope00", guest, 10).await.unwrap_err();
    let unknown_code = if record.meeting_code == "999999999999" { "999999999998" } else { "999999999999" };
    let unknown = m.by_code(unknown_code, &record.passcode, "8:acs:r_other", 10).await.unwrap_err();
    let malformed = m.by_code("12", &record.passcode, "8:acs:r_third", 10).await.unwrap_err();
    assert_eq!(wrong, unknown, "the same code and message for both");
    assert_eq!(wrong, malformed);
    assert_eq!(wrong.code, ErrorCode::WrongPasscode);

    // Guessers on many identities: the code locks after its free failures, even for the
    // right passcode, then opens again after the back-off.
    for i in 1..=FREE_FAILURES {
        m.by_code(&record.meeting_code, "nope00", &format!("8:acs:r_g{i}"), 20).await.unwrap_err();
    }
    let code_with_spaces = format!("{} {}", &record.meeting_code[..6], &record.meeting_code[6..]);
    let locked = m.by_code(&code_with_spaces, &record.passcode, "8:acs:r_legit", 20).await.unwrap_err();
    assert_eq!(locked.code, ErrorCode::TooManyRequests, "{locked}");
    let joined = m.by_code(&record.meeting_code, &record.passcode, "8:acs:r_legit", 20 + FIRST_BACKOFF_MS).await;
    assert_eq!(joined.unwrap().id, record.id);
}

#[tokio::test]
async fn policy_changes_reach_a_meeting_in_progress_and_delete_ends_it() {
    let m = meetings();
    let record = m.create(&user(ORG), CreateMeetingRequest::default(), 1).await.unwrap();
    let idle = Live::default();
    let update = PolicyUpdate { external_dial_out: Some(true), ..Default::default() };
    let stored = m.update_policy(&record.id, &user(ORG), update, &idle).await.unwrap();
    assert!(stored.policy.external_dial_out, "not in progress: stored directly");

    let live = Live { live: vec![record.id.clone()], ..Default::default() };
    let stranger = m.update_policy(&record.id, &user("8:orgid:stranger"), update, &live).await.unwrap_err();
    assert_eq!(stranger.code, ErrorCode::Forbidden);
    m.update_policy(&record.id, &user(ORG), update, &live).await.unwrap();
    let capture = m.capture(&record.id, Authority::Server, ServerCommand::SetRecording(true), &idle).await;
    assert_eq!(capture.unwrap_err().code, ErrorCode::InvalidState);
    m.capture(&record.id, Authority::Server, ServerCommand::SetRecording(true), &live).await.unwrap();

    m.delete(&record.id, &user(ORG), &live).await.unwrap();
    let commands = live.commands.lock().unwrap().clone();
    assert!(
        matches!(
            commands.as_slice(),
            [(_, ServerCommand::UpdatePolicy(_)), (_, ServerCommand::SetRecording(true)), (_, ServerCommand::End)]
        ),
        "{commands:?}"
    );
    assert_eq!(m.managed(&record.id, &user(ORG)).await.unwrap_err().code, ErrorCode::MeetingNotFound);
}
