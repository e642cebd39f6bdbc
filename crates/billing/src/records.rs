//! The ledger's record shapes: usage records (`ACSBillingUsage`), per-participant call
//! summaries (`ACSCallSummary`), and the session/call spans they are derived from.
//!
//! Also the pure rules that turn a closed participant session into usage records:
//! split at UTC midnight, deterministic RecordIds (UUIDv5 of session id + segment), price
//! fixed at close time.

use crate::pricing::{MS_PER_MINUTE, Price, format_minutes, format_usd};
use palaver_core::{CallType, EndReason, EndpointType, ParticipantType, PhoneLeg, SessionStarted};
use serde::Serialize;
use uuid::Uuid;

/// Milliseconds in one UTC day.
pub const MS_PER_DAY: i64 = 86_400_000;

/// `OperationName` on every participant usage record.
pub const OPERATION_NAME: &str = "CallParticipantUsage";
/// `UsageType`: voice, video and screen share cost the same, so one usage type.
pub const USAGE_TYPE: &str = "ParticipantMinutes";
/// `UnitType` of `Quantity`.
pub const UNIT_TYPE: &str = "Minute";

/// What a usage record meters: participant minutes of a call, or one chat message sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub enum UsageKind {
    ParticipantMinutes,
    ChatMessage,
    /// Minutes of a phone participant (a SIP trunk leg, endpoint type `PSTN`): metered apart
    /// from VoIP participant-minutes, as direct routing is (SBC ↔ service, $0.004/min).
    PhoneMinutes,
    /// Call recording minutes (Call Automation `startRecording`, mixed audio).
    RecordingMinutes,
    /// Call Automation media streaming minutes (audio to the application's WebSocket).
    StreamingMinutes,
}

/// `UsageType` of a phone participant's minutes (a SIP trunk leg through direct routing):
/// ACS's usage logs name the mode of usage `PSTN` (their examples: "Chat, PSTN, NAT").
pub const PHONE_USAGE_TYPE: &str = "PSTN";
/// What palaver stored for phone minutes before it used ACS's name (still read back).
pub const LEGACY_PHONE_USAGE_TYPE: &str = "DirectRouting";

/// `OperationName` of a chat usage record.
pub const CHAT_OPERATION_NAME: &str = "ChatMessageSent";
/// `UsageType` of a chat usage record: one per message sent, as ACS meters chat.
pub const CHAT_USAGE_TYPE: &str = "ChatMessage";
/// `UnitType` of a chat usage record (`Quantity` is always 1).
pub const CHAT_UNIT_TYPE: &str = "Message";

/// `OperationName` / `UsageType` of a recording usage record (ACS bills call recording per
/// recorded minute, separately from participant minutes).
pub const RECORDING_OPERATION_NAME: &str = "CallRecording";
pub const RECORDING_USAGE_TYPE: &str = "CallRecordingMixedAudio";
/// `OperationName` / `UsageType` of a media streaming usage record (ACS logs each streaming
/// session between its start and stop, `ACSCallAutomationStreamingUsage`).
pub const STREAMING_OPERATION_NAME: &str = "CallAutomationMediaStreaming";
pub const STREAMING_USAGE_TYPE: &str = "AudioStreaming";

impl UsageKind {
    /// The `UsageType` column (stored as is).
    pub fn usage_type(self) -> &'static str {
        match self {
            Self::ParticipantMinutes => USAGE_TYPE,
            Self::ChatMessage => CHAT_USAGE_TYPE,
            Self::PhoneMinutes => PHONE_USAGE_TYPE,
            Self::RecordingMinutes => RECORDING_USAGE_TYPE,
            Self::StreamingMinutes => STREAMING_USAGE_TYPE,
        }
    }

    pub fn operation_name(self) -> &'static str {
        match self {
            Self::ParticipantMinutes | Self::PhoneMinutes => OPERATION_NAME,
            Self::ChatMessage => CHAT_OPERATION_NAME,
            Self::RecordingMinutes => RECORDING_OPERATION_NAME,
            Self::StreamingMinutes => STREAMING_OPERATION_NAME,
        }
    }

    pub fn unit_type(self) -> &'static str {
        match self {
            Self::ParticipantMinutes | Self::PhoneMinutes | Self::RecordingMinutes | Self::StreamingMinutes => {
                UNIT_TYPE
            }
            Self::ChatMessage => CHAT_UNIT_TYPE,
        }
    }

    /// Back from the stored `UsageType`.
    pub fn parse(usage_type: &str) -> Option<Self> {
        if usage_type == LEGACY_PHONE_USAGE_TYPE {
            return Some(Self::PhoneMinutes);
        }
        [
            Self::ParticipantMinutes,
            Self::ChatMessage,
            Self::PhoneMinutes,
            Self::RecordingMinutes,
            Self::StreamingMinutes,
        ]
        .into_iter()
        .find(|k| k.usage_type() == usage_type)
    }
}

/// The usage record of one chat message: correlated by thread, `ParticipantId` is the
/// message id, instant (start = end), priced per message when the sender is billable.
pub fn chat_usage_record(event: &palaver_core::ChatMessageSent, price: crate::pricing::ChatPrice) -> UsageRecord {
    let billable = event.participant_type.is_billable();
    let unit = if billable { price.micro_usd_per_message } else { 0 };
    UsageRecord {
        record_id: deterministic_id("chat", &format!("{}/{}", event.thread_id, event.message_id)),
        kind: UsageKind::ChatMessage,
        correlation_id: event.thread_id.clone(),
        participant_id: event.message_id.clone(),
        segment: 0,
        start_ms: event.at_ms,
        end_ms: event.at_ms,
        user_id_a: event.sender_raw_id.clone(),
        participant_type: event.participant_type,
        // A chat message has no call endpoint.
        endpoint_type: EndpointType::Unknown,
        billable,
        unit_price_micro_usd: unit,
        cost_micro_usd: unit,
        phone: None,
    }
}

/// The usage record of a finished recording or media stream: correlated by the call,
/// `ParticipantId` is the recording id (stream id), `UserIdA` the application; the record's
/// span ends when the feature ended and lasts its metered time (a recording's paused time is
/// not billed); priced per minute.
pub fn media_usage_record(event: &palaver_core::MediaUsed, prices: crate::pricing::MediaPrices) -> UsageRecord {
    let (kind, price, prefix) = match event.kind {
        palaver_core::MediaUsageKind::Recording => (UsageKind::RecordingMinutes, prices.recording, "recording"),
        palaver_core::MediaUsageKind::Streaming => (UsageKind::StreamingMinutes, prices.streaming, "streaming"),
    };
    let metered_ms = event.metered_ms.max(0);
    UsageRecord {
        record_id: deterministic_id(prefix, &event.id),
        kind,
        correlation_id: event.correlation_id.clone(),
        participant_id: event.id.clone(),
        segment: 0,
        start_ms: event.end_ms - metered_ms,
        end_ms: event.end_ms,
        user_id_a: event.user_raw_id.clone(),
        participant_type: ParticipantType::Acs,
        endpoint_type: EndpointType::Server,
        billable: true,
        unit_price_micro_usd: price.micro_usd_per_minute,
        cost_micro_usd: price.cost_micro_usd(metered_ms),
        phone: None,
    }
}

/// The namespace of every palaver record id (UUIDv5 names are `<kind>/<key>`).
pub const RECORD_NAMESPACE: Uuid = Uuid::from_u128(0x6a1d_3c52_8f0e_4b7a_9d21_5e4c_0b7f_a9e3);

/// A deterministic id: the same `kind` and `key` always give the same UUID.
pub fn deterministic_id(kind: &str, key: &str) -> String {
    Uuid::new_v5(&RECORD_NAMESPACE, format!("{kind}/{key}").as_bytes()).to_string()
}

/// A participant session that has ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ClosedSession {
    pub started: SessionStarted,
    pub end_ms: i64,
    pub reason: EndReason,
}

impl ClosedSession {
    pub fn duration_ms(&self) -> i64 {
        (self.end_ms - self.started.at_ms).max(0)
    }
}

/// One `ACSBillingUsage`-shaped row: a participant's usage within one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct UsageRecord {
    pub record_id: String,
    pub kind: UsageKind,
    /// The conversation id.
    pub correlation_id: String,
    /// The participant session id (`ParticipantId`, links to the call summary).
    pub participant_id: String,
    /// 0-based index of the day segment within the session.
    pub segment: u32,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Raw id of the participant (`UserIdA`).
    pub user_id_a: String,
    pub participant_type: ParticipantType,
    pub endpoint_type: EndpointType,
    pub billable: bool,
    /// Price in effect when the session closed (µUSD per participant-minute).
    pub unit_price_micro_usd: i64,
    /// Cost of this record in µUSD (0 when not billable).
    pub cost_micro_usd: i64,
    /// A phone participant's trunk leg: palaver's number on the call, the trunk and the
    /// direction (phone minutes are metered per number, trunk and direction).
    pub phone: Option<PhoneLeg>,
}

impl UsageRecord {
    pub fn duration_ms(&self) -> i64 {
        self.end_ms - self.start_ms
    }
    pub fn billable_ms(&self) -> i64 {
        if self.billable { self.duration_ms() } else { 0 }
    }
}

/// Split `[start, end)` at every UTC midnight it crosses. Always returns at least one
/// segment (a zero-length session still gets its record).
pub fn split_at_utc_midnight(start_ms: i64, end_ms: i64) -> Vec<(i64, i64)> {
    let end_ms = end_ms.max(start_ms);
    let mut segments = Vec::new();
    let mut cursor = start_ms;
    loop {
        let next_midnight = (cursor.div_euclid(MS_PER_DAY) + 1) * MS_PER_DAY;
        if end_ms <= next_midnight {
            segments.push((cursor, end_ms));
            return segments;
        }
        segments.push((cursor, next_midnight));
        cursor = next_midnight;
    }
}

/// The usage records of a closed session, one per UTC day it touched.
pub fn usage_records_for(session: &ClosedSession, price: Price) -> Vec<UsageRecord> {
    let s = &session.started;
    let billable = s.participant_type.is_billable();
    split_at_utc_midnight(s.at_ms, session.end_ms)
        .into_iter()
        .enumerate()
        .map(|(index, (start_ms, end_ms))| {
            let segment = index as u32;
            let billable_ms = if billable { end_ms - start_ms } else { 0 };
            UsageRecord {
                record_id: deterministic_id("usage", &format!("{}/{segment}", s.session_id)),
                kind: if s.endpoint_type == EndpointType::Pstn {
                    UsageKind::PhoneMinutes
                } else {
                    UsageKind::ParticipantMinutes
                },
                correlation_id: s.conversation_id.clone(),
                participant_id: s.session_id.clone(),
                segment,
                start_ms,
                end_ms,
                user_id_a: s.participant_raw_id.clone(),
                participant_type: s.participant_type,
                endpoint_type: s.endpoint_type,
                billable,
                unit_price_micro_usd: if billable { price.micro_usd_per_minute } else { 0 },
                cost_micro_usd: price.cost_micro_usd(billable_ms),
                phone: s.phone.clone(),
            }
        })
        .collect()
}

/// A conversation's call as the ledger knows it (one per continuous period with at least
/// one participant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CallSpan {
    pub conversation_id: String,
    pub started_ms: i64,
    pub call_type: CallType,
    /// Raw id of the first participant.
    pub started_by: String,
    pub thread_id: Option<String>,
    pub ended_ms: Option<i64>,
}

impl CallSpan {
    /// Stable id of this call instance (a conversation may have several calls over time).
    pub fn call_id(&self) -> String {
        deterministic_id("call", &format!("{}/{}", self.conversation_id, self.started_ms))
    }
}

/// One `ACSCallSummary`-shaped row: a participant session within a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSummary {
    pub correlation_id: String,
    pub call_type: CallType,
    pub call_start_ms: i64,
    /// `None` while the call is still running.
    pub call_duration_ms: Option<i64>,
    pub participant_id: String,
    pub identifier: String,
    pub endpoint_type: EndpointType,
    pub participant_type: ParticipantType,
    pub participant_start_ms: i64,
    /// `None` while the participant is still connected.
    pub participant_duration_ms: Option<i64>,
    pub participant_end_reason: Option<EndReason>,
    pub thread_id: Option<String>,
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

/// The JSON export form of a usage record (field names as in `ACSBillingUsage`, plus
/// palaver's exact and pricing columns).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UsageRecordView {
    pub record_id: String,
    pub correlation_id: String,
    pub start_time: String,
    pub end_time: String,
    pub operation_name: &'static str,
    pub usage_type: &'static str,
    pub unit_type: &'static str,
    /// Minutes, 6 decimals; `1` for a chat message.
    pub quantity: String,
    pub participant_id: String,
    pub user_id_a: String,
    pub user_id_b: Option<String>,
    pub participant_type: &'static str,
    pub endpoint_type: &'static str,
    pub billable: bool,
    pub duration_ms: i64,
    pub unit_price_usd: String,
    pub cost_usd: String,
    /// Phone minutes: palaver's number on the call (called or presented), the SIP trunk and
    /// `inbound`/`outbound`; absent on every other record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trunk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
}

impl From<&UsageRecord> for UsageRecordView {
    fn from(r: &UsageRecord) -> Self {
        Self {
            record_id: r.record_id.clone(),
            correlation_id: r.correlation_id.clone(),
            start_time: rfc3339_ms(r.start_ms),
            end_time: rfc3339_ms(r.end_ms),
            operation_name: r.kind.operation_name(),
            usage_type: r.kind.usage_type(),
            unit_type: r.kind.unit_type(),
            quantity: match r.kind {
                UsageKind::ParticipantMinutes
                | UsageKind::PhoneMinutes
                | UsageKind::RecordingMinutes
                | UsageKind::StreamingMinutes => format_minutes(r.duration_ms()),
                UsageKind::ChatMessage => "1".to_string(),
            },
            participant_id: r.participant_id.clone(),
            user_id_a: r.user_id_a.clone(),
            user_id_b: None,
            participant_type: r.participant_type.as_str(),
            endpoint_type: r.endpoint_type.as_str(),
            billable: r.billable,
            duration_ms: r.duration_ms(),
            unit_price_usd: format_usd(r.unit_price_micro_usd),
            cost_usd: format_usd(r.cost_micro_usd),
            phone_number: r.phone.as_ref().map(|p| p.number.clone()),
            trunk: r.phone.as_ref().map(|p| p.trunk.clone()),
            direction: r.phone.as_ref().map(|p| p.direction.as_str()),
        }
    }
}

/// The JSON export form of a call summary (`ACSCallSummary` field names; durations in
/// whole seconds as there, plus exact milliseconds).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CallSummaryView {
    pub correlation_id: String,
    pub call_type: CallType,
    pub call_start_time: String,
    pub call_duration: Option<i64>,
    pub participant_id: String,
    pub identifier: String,
    pub endpoint_type: &'static str,
    pub participant_type: &'static str,
    pub participant_start_time: String,
    pub participant_duration: Option<i64>,
    pub participant_duration_ms: Option<i64>,
    pub participant_end_reason: Option<&'static str>,
    pub teams_thread_id: Option<String>,
}

impl From<&CallSummary> for CallSummaryView {
    fn from(s: &CallSummary) -> Self {
        Self {
            correlation_id: s.correlation_id.clone(),
            call_type: s.call_type,
            call_start_time: rfc3339_ms(s.call_start_ms),
            call_duration: s.call_duration_ms.map(|ms| ms / 1000),
            participant_id: s.participant_id.clone(),
            identifier: s.identifier.clone(),
            endpoint_type: s.endpoint_type.as_str(),
            participant_type: s.participant_type.as_str(),
            participant_start_time: rfc3339_ms(s.participant_start_ms),
            participant_duration: s.participant_duration_ms.map(|ms| ms / 1000),
            participant_duration_ms: s.participant_duration_ms,
            participant_end_reason: s.participant_end_reason.map(EndReason::as_str),
            teams_thread_id: s.thread_id.clone(),
        }
    }
}

/// Consumed and billed totals of one participant type over a time range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeTotals {
    pub participant_type: ParticipantType,
    pub records: u64,
    pub consumed_ms: i64,
    pub billed_ms: i64,
    pub cost_micro_usd: i64,
}

impl TypeTotals {
    pub fn zero(participant_type: ParticipantType) -> Self {
        Self { participant_type, records: 0, consumed_ms: 0, billed_ms: 0, cost_micro_usd: 0 }
    }
    pub fn consumed_minutes(&self) -> f64 {
        self.consumed_ms as f64 / MS_PER_MINUTE as f64
    }
}

/// Parse the wire names stored in the ledger back into core enums.
pub fn parse_participant_type(s: &str) -> Option<ParticipantType> {
    ParticipantType::ALL.into_iter().find(|t| t.as_str() == s)
}

pub fn parse_endpoint_type(s: &str) -> Option<EndpointType> {
    [EndpointType::Voip, EndpointType::Pstn, EndpointType::Server, EndpointType::Bot, EndpointType::Unknown]
        .into_iter()
        .find(|t| t.as_str() == s)
}

pub fn parse_call_type(s: &str) -> Option<CallType> {
    match s {
        "P2P" => Some(CallType::P2P),
        "Group" => Some(CallType::Group),
        _ => None,
    }
}

pub fn call_type_str(t: CallType) -> &'static str {
    match t {
        CallType::P2P => "P2P",
        CallType::Group => "Group",
    }
}

pub fn parse_end_reason(s: &str) -> Option<EndReason> {
    EndReason::ALL.into_iter().find(|r| r.as_str() == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(at_ms: i64, participant_type: ParticipantType) -> SessionStarted {
        SessionStarted {
            session_id: "s1".into(),
            conversation_id: "c1".into(),
            call_type: CallType::Group,
            participant_raw_id: "8:acs:r_u1".into(),
            participant_type,
            endpoint_type: EndpointType::Voip,
            thread_id: None,
            at_ms,
            phone: None,
        }
    }

    #[test]
    fn split_crosses_midnight_once_per_day() {
        let day = MS_PER_DAY;
        assert_eq!(split_at_utc_midnight(10, 20), vec![(10, 20)]);
        assert_eq!(split_at_utc_midnight(day - 5, day + 5), vec![(day - 5, day), (day, day + 5)]);
        assert_eq!(split_at_utc_midnight(day - 5, day), vec![(day - 5, day)]);
        assert_eq!(split_at_utc_midnight(day, day), vec![(day, day)]);
        assert_eq!(split_at_utc_midnight(day - 1, 3 * day + 1).len(), 4);
        // end before start is clamped to a zero-length segment
        assert_eq!(split_at_utc_midnight(50, 40), vec![(50, 50)]);
    }

    #[test]
    fn phone_minutes_are_metered_apart_as_pstn_per_number_trunk_and_direction() {
        let mut phone = started(0, ParticipantType::Acs);
        phone.participant_raw_id = "4:+14255550100".into();
        phone.endpoint_type = EndpointType::Pstn;
        let closed = ClosedSession { started: phone, end_ms: 90_000, reason: EndReason::Left };
        let records = usage_records_for(&closed, Price::default());
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].kind, UsageKind::PhoneMinutes);
        assert_eq!(records[0].cost_micro_usd, 6_000, "1.5 min at $0.004");
        let view = UsageRecordView::from(&records[0]);
        assert_eq!((view.usage_type, view.endpoint_type), ("PSTN", "PSTN"));
        assert_eq!(UsageKind::parse("PSTN"), Some(UsageKind::PhoneMinutes));
        assert_eq!(UsageKind::parse("DirectRouting"), Some(UsageKind::PhoneMinutes), "rows written before");
        assert_eq!((view.phone_number, view.trunk, view.direction), (None, None, None), "no leg named");
        let mut named = started(0, ParticipantType::Acs);
        named.endpoint_type = EndpointType::Pstn;
        named.phone = Some(palaver_core::PhoneLeg {
            number: "+14255550100".into(),
            trunk: "carrier".into(),
            direction: palaver_core::PhoneDirection::Inbound,
        });
        let closed = ClosedSession { started: named, end_ms: 90_000, reason: EndReason::Left };
        let view = UsageRecordView::from(&usage_records_for(&closed, Price::default())[0]);
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(
            (&json["PhoneNumber"], &json["Trunk"], &json["Direction"]),
            (&serde_json::json!("+14255550100"), &serde_json::json!("carrier"), &serde_json::json!("inbound"))
        );
        let voip = ClosedSession { started: started(0, ParticipantType::Acs), end_ms: 90_000, reason: EndReason::Left };
        assert_eq!(usage_records_for(&voip, Price::default())[0].kind, UsageKind::ParticipantMinutes);
    }

    #[test]
    fn record_ids_are_deterministic_and_distinct_per_segment() {
        let s = ClosedSession {
            started: started(MS_PER_DAY - 1000, ParticipantType::Acs),
            end_ms: MS_PER_DAY + 1000,
            reason: EndReason::Left,
        };
        let a = usage_records_for(&s, Price::default());
        let b = usage_records_for(&s, Price::default());
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
        assert_ne!(a[0].record_id, a[1].record_id);
        assert_eq!(a.iter().map(UsageRecord::duration_ms).sum::<i64>(), 2000);
    }

    #[test]
    fn native_directory_client_is_recorded_at_zero_price() {
        let s = ClosedSession { started: started(0, ParticipantType::Teams), end_ms: 600_000, reason: EndReason::Left };
        let r = usage_records_for(&s, Price::default());
        assert_eq!(r.len(), 1);
        assert!(!r[0].billable);
        assert_eq!(
            (r[0].duration_ms(), r[0].billable_ms(), r[0].cost_micro_usd, r[0].unit_price_micro_usd),
            (600_000, 0, 0, 0)
        );
        let view = UsageRecordView::from(&r[0]);
        assert_eq!((view.quantity.as_str(), view.cost_usd.as_str()), ("10.000000", "0.000000"));
    }

    #[test]
    fn stored_names_parse_back() {
        for t in ParticipantType::ALL {
            assert_eq!(parse_participant_type(t.as_str()), Some(t));
        }
        for t in [CallType::P2P, CallType::Group] {
            assert_eq!(parse_call_type(call_type_str(t)), Some(t));
        }
        assert_eq!(parse_end_reason("ServerFailure"), Some(EndReason::ServerFailure));
        assert_eq!(parse_endpoint_type("PSTN"), Some(EndpointType::Pstn));
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    }
}
