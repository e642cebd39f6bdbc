//! Rooms API data and rules, without HTTP or SQL: the JSON wire shapes the official SDK
//! sends and reads, the validity-window rules, participant ids and roles, paging tokens.

use crate::domain::Refusal;

mod directory;
use chrono::{DateTime, SecondsFormat, TimeDelta, TimeZone, Utc};
pub use directory::{RoomAccess, RoomDirectory};
use palaver_core::{CommunicationIdentifier, ErrorCode, RoomRole};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest validity window of a room, and the default when `validUntil` is absent.
pub const MAX_VALIDITY_DAYS: i64 = 180;
/// Most participants a room may list.
pub const MAX_PARTICIPANTS: usize = 350;
/// Default and largest page size of `GET /rooms` and `GET /rooms/{id}/participants`.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// A stored room. Times are microseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub id: String,
    pub created_at_us: i64,
    pub valid_from_us: i64,
    pub valid_until_us: i64,
    pub pstn_dial_out_enabled: bool,
}

/// The `CommunicationRoom` JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomJson {
    pub id: String,
    pub created_at: String,
    pub valid_from: String,
    pub valid_until: String,
    pub pstn_dial_out_enabled: bool,
}

impl Room {
    pub fn to_json(&self) -> RoomJson {
        RoomJson {
            id: self.id.clone(),
            created_at: format_time(self.created_at_us),
            valid_from: format_time(self.valid_from_us),
            valid_until: format_time(self.valid_until_us),
            pstn_dial_out_enabled: self.pstn_dial_out_enabled,
        }
    }
    /// Is the room open for joining at `now_us`?
    pub fn is_active_at(&self, now_us: i64) -> bool {
        self.valid_from_us <= now_us && now_us < self.valid_until_us
    }
}

/// One participant entry: `{"rawId","role"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantJson {
    pub raw_id: String,
    pub role: RoomRole,
}

/// A page of a list: `{"value":[...],"nextLink"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub value: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

/// `{"role": "..."}` in a participants map; `role` may be absent or null (Attendee).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ParticipantProperties {
    #[serde(default)]
    pub role: Option<String>,
}

/// Body of `POST /rooms`. Null members mean "use the default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRoomRequest {
    #[serde(default)]
    pub valid_from: Option<String>,
    #[serde(default)]
    pub valid_until: Option<String>,
    #[serde(default)]
    pub pstn_dial_out_enabled: Option<bool>,
    #[serde(default)]
    pub participants: Option<BTreeMap<String, Option<ParticipantProperties>>>,
}

/// Body of `PATCH /rooms/{id}` (merge patch). Null or absent members stay unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRoomRequest {
    #[serde(default)]
    pub valid_from: Option<String>,
    #[serde(default)]
    pub valid_until: Option<String>,
    #[serde(default)]
    pub pstn_dial_out_enabled: Option<bool>,
}

/// Body of `PATCH /rooms/{id}/participants`: a `null` value removes that participant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UpdateParticipantsRequest {
    #[serde(default)]
    pub participants: Option<BTreeMap<String, Option<ParticipantProperties>>>,
}

/// A checked participant change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParticipantChange {
    Upsert { raw_id: String, role: RoomRole },
    Remove { raw_id: String },
}

/// RFC 3339 in UTC with a `Z` (fractional seconds only when present).
pub fn format_time(us: i64) -> String {
    Utc.timestamp_micros(us).single().map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true)).unwrap_or_default()
}

/// Parse an RFC 3339 timestamp (`2024-05-01T10:00:00Z`, offsets and fractions allowed;
/// a missing offset is read as UTC, as the SDK's serializer writes naive times as UTC).
pub fn parse_time(value: &str, target: &str) -> Result<i64, Refusal> {
    let parsed = DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc()))
        .map_err(|_| {
            Refusal::new(ErrorCode::InvalidParameter, format!("`{value}` is not an RFC 3339 date-time"))
                .with_target(target)
        })?;
    Ok(parsed.timestamp_micros())
}

fn days_us(days: i64) -> i64 {
    TimeDelta::days(days).num_microseconds().expect("180 days fit in i64 microseconds")
}

/// Digits in a room id: palaver issues 17, and ACS's own ids have 17 or 18.
pub const ROOM_ID_DIGITS: std::ops::RangeInclusive<usize> = 17..=18;

/// A room id in a request path must look like one before it is looked up, as ACS checks:
/// the wrong length is `400 InvalidInput` "Invalid room ID length.", the right length with
/// anything but digits `400 InvalidInput` "Room ID is invalid.".
pub fn check_room_id(id: &str) -> Result<(), Refusal> {
    if !ROOM_ID_DIGITS.contains(&id.len()) {
        return Err(Refusal::new(ErrorCode::InvalidInput, "Invalid room ID length."));
    }
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::new(ErrorCode::InvalidInput, "Room ID is invalid."));
    }
    Ok(())
}

/// How far ahead a room may start.
pub const MAX_START_AHEAD_DAYS: i64 = 180;

/// The top-level message of ACS's `400 BadRequest` answers to a bad room window (recorded
/// from live ACS; docs/acs-errors.md, Rooms).
const BAD_REQUEST_MESSAGE: &str = "The request could not be understood by the server due to malformed syntax.";

/// ACS's answer to a bad room window: `400 BadRequest` carrying one `BadArgument` detail that
/// names the member (`ValidFrom` or `ValidUntil`, capitalised as ACS writes them).
fn bad_window(message: &str, target: &str) -> Refusal {
    Refusal::new(ErrorCode::BadRequest, BAD_REQUEST_MESSAGE).with_detail("BadArgument", message, Some(target))
}

/// A `validFrom` more than 180 days ahead.
fn start_too_far_ahead() -> Refusal {
    bad_window("Value is incorrect or more than 180 days in the future.", "ValidFrom")
}

/// The validity window of a new room: `validFrom` defaults to now, `validUntil` to
/// `validFrom` + 180 days; `validUntil` must be after `validFrom` and in the future, and the
/// window at most 180 days.
pub fn create_window(req: &CreateRoomRequest, now_us: i64) -> Result<(i64, i64), Refusal> {
    let from = match &req.valid_from {
        Some(v) => parse_time(v, "validFrom")?,
        None => now_us,
    };
    let until = match &req.valid_until {
        Some(v) => parse_time(v, "validUntil")?,
        None => from + days_us(MAX_VALIDITY_DAYS),
    };
    if req.valid_from.is_some() && from > now_us + days_us(MAX_START_AHEAD_DAYS) {
        return Err(start_too_far_ahead());
    }
    check_window(from, until, now_us, true)?;
    Ok((from, until))
}

/// The window after a merge patch of `room`.
pub fn updated_window(room: &Room, req: &UpdateRoomRequest, now_us: i64) -> Result<(i64, i64), Refusal> {
    let from = match &req.valid_from {
        Some(v) => parse_time(v, "validFrom")?,
        None => room.valid_from_us,
    };
    let until = match &req.valid_until {
        Some(v) => parse_time(v, "validUntil")?,
        None => room.valid_until_us,
    };
    if req.valid_from.is_some() && from > now_us + days_us(MAX_START_AHEAD_DAYS) {
        return Err(start_too_far_ahead());
    }
    check_window(from, until, now_us, req.valid_until.is_some())?;
    Ok((from, until))
}

fn check_window(from: i64, until: i64, now_us: i64, until_given: bool) -> Result<(), Refusal> {
    // An end in the past is checked first: ACS answers so for a create with only a past
    // `validUntil` (its start defaults to now, so that window also ends before it starts).
    if until_given && until <= now_us {
        return Err(bad_window("The time range end is in the past.", "ValidUntil"));
    }
    // A window that ends before it starts and one over 180 days get the same answer: ACS's
    // recorded message covers both ("incorrect, or larger than").
    if until <= from || until - from > days_us(MAX_VALIDITY_DAYS) {
        return Err(bad_window("The time range is incorrect, or larger than 180 days.", "ValidUntil"));
    }
    Ok(())
}

/// Check a participant raw id: a communication user of this resource, or a public-cloud
/// directory user.
pub fn check_participant_id(raw: &str, resource_id: &str) -> Result<String, Refusal> {
    let bad = |code, msg: String| Err(Refusal::new(code, msg).with_target("participants"));
    match CommunicationIdentifier::parse(raw) {
        Err(e) => bad(ErrorCode::InvalidInput, format!("Identifier format is invalid: {e}")),
        Ok(CommunicationIdentifier::Unknown { .. }) => {
            bad(ErrorCode::InvalidInput, format!("Identifier format is invalid: `{raw}`"))
        }
        Ok(id @ CommunicationIdentifier::CommunicationUser { .. }) => {
            if id.resource_id() == Some(resource_id) {
                Ok(id.raw_id())
            } else {
                bad(ErrorCode::InvalidIdentifier, format!("`{raw}` belongs to another resource"))
            }
        }
        Ok(CommunicationIdentifier::DirectoryUser { cloud, .. }) if cloud.is_government() => {
            bad(ErrorCode::GovernmentCloudNotSupported, format!("`{raw}` belongs to a government cloud"))
        }
        Ok(id @ CommunicationIdentifier::DirectoryUser { is_anonymous: false, .. }) => Ok(id.raw_id()),
        Ok(_) => bad(
            ErrorCode::InvalidIdentifier,
            format!("`{raw}` cannot be a room participant (communication or directory users only)"),
        ),
    }
}

fn parse_role(props: &ParticipantProperties, raw: &str) -> Result<RoomRole, Refusal> {
    match props.role.as_deref() {
        None => Ok(RoomRole::Attendee),
        // ACS's shape (a recorded answer): 400 BadRequest with a BadArgument detail whose
        // target is the JSON path of the role; the detail's text is palaver's own.
        Some(r) => RoomRole::parse(r).ok_or_else(|| {
            Refusal::new(ErrorCode::BadRequest, BAD_REQUEST_MESSAGE).with_detail(
                "BadArgument",
                format!("role `{r}` of `{raw}` is not one of Presenter, Attendee, Consumer, Collaborator"),
                Some(&format!("$.participants.{raw}.role")),
            )
        }),
    }
}

/// Check a participants map. `allow_remove`: `null` values remove (PATCH); on create
/// they are an error.
pub fn participant_changes(
    map: &BTreeMap<String, Option<ParticipantProperties>>,
    resource_id: &str,
    allow_remove: bool,
) -> Result<Vec<ParticipantChange>, Refusal> {
    let mut changes = Vec::with_capacity(map.len());
    for (raw, props) in map {
        let raw_id = check_participant_id(raw, resource_id)?;
        match props {
            Some(p) => changes.push(ParticipantChange::Upsert { role: parse_role(p, raw)?, raw_id }),
            None if allow_remove => changes.push(ParticipantChange::Remove { raw_id }),
            None => {
                return Err(Refusal::new(
                    ErrorCode::InvalidParameter,
                    format!("participant `{raw}` has no properties"),
                )
                .with_target("participants"));
            }
        }
    }
    Ok(changes)
}

/// Paging: `maxPageSize` (1..=100, default 100) and the opaque `skipToken` from a `nextLink`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub size: usize,
    /// Return items strictly after this position.
    pub after: i64,
}

pub fn page_request(query: Option<&str>) -> Result<PageRequest, Refusal> {
    let mut req = PageRequest { size: DEFAULT_PAGE_SIZE, after: 0 };
    for (k, v) in query.unwrap_or("").split('&').filter_map(|p| p.split_once('=')) {
        match k {
            "maxPageSize" => {
                req.size = v.parse().ok().filter(|n| (1..=DEFAULT_PAGE_SIZE).contains(n)).ok_or_else(|| {
                    Refusal::new(ErrorCode::InvalidParameter, format!("maxPageSize must be 1..={DEFAULT_PAGE_SIZE}"))
                        .with_target("maxPageSize")
                })?
            }
            "skipToken" => {
                req.after = v.parse().ok().filter(|n: &i64| *n > 0).ok_or_else(|| {
                    Refusal::new(ErrorCode::InvalidPageToken, "skipToken is not a token this server issued")
                        .with_target("skipToken")
                })?
            }
            _ => {}
        }
    }
    Ok(req)
}

/// The relative `nextLink` for the page after position `last` (the SDK resolves it
/// against its endpoint and re-adds `api-version`).
pub fn next_link(path: &str, api_version: &str, req: &PageRequest, last: i64) -> String {
    let size = if req.size == DEFAULT_PAGE_SIZE { String::new() } else { format!("&maxPageSize={}", req.size) };
    format!("{path}?api-version={api_version}&skipToken={last}{size}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const RES: &str = "res1";
    const NOW: i64 = 1_800_000_000_000_000;

    fn create(from: Option<&str>, until: Option<&str>) -> CreateRoomRequest {
        CreateRoomRequest {
            valid_from: from.map(str::to_string),
            valid_until: until.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn times_parse_and_format_as_rfc3339_utc() {
        let us = parse_time("2027-01-15T10:00:00Z", "x").unwrap();
        assert_eq!(format_time(us), "2027-01-15T10:00:00Z");
        assert_eq!(parse_time("2027-01-15T12:00:00+02:00", "x").unwrap(), us);
        assert_eq!(parse_time("2027-01-15T10:00:00", "x").unwrap(), us, "naive is UTC");
        assert_eq!(format_time(parse_time("2027-01-15T10:00:00.123456Z", "x").unwrap()), "2027-01-15T10:00:00.123456Z");
        for bad in ["", "tomorrow", "2027-13-01T00:00:00Z", "2027-01-15"] {
            assert_eq!(parse_time(bad, "validFrom").unwrap_err().code, ErrorCode::InvalidParameter, "{bad}");
        }
    }

    #[test]
    fn window_defaults_and_limits() {
        let (from, until) = create_window(&create(None, None), NOW).unwrap();
        assert_eq!((from, until - from), (NOW, days_us(180)));
        let from_s = format_time(NOW + 1_000_000);
        let (f, u) = create_window(&create(Some(&from_s), None), NOW).unwrap();
        assert_eq!(u - f, days_us(180));
        let code = |f: Option<String>, u: Option<String>| {
            create_window(&create(f.as_deref(), u.as_deref()), NOW).map(|_| ()).map_err(|e| e.code)
        };
        assert_eq!(code(None, Some(format_time(NOW - 1))), Err(ErrorCode::BadRequest), "until before from");
        assert_eq!(code(None, Some(format_time(NOW))), Err(ErrorCode::BadRequest), "until == from");
        assert_eq!(code(None, Some(format_time(NOW + days_us(180) + 1))), Err(ErrorCode::BadRequest));
        assert_eq!(code(None, Some(format_time(NOW + days_us(180)))), Ok(()));
        assert_eq!(
            code(Some(format_time(NOW - days_us(2))), Some(format_time(NOW - days_us(1)))),
            Err(ErrorCode::BadRequest),
            "already over"
        );
    }

    /// ACS's recorded answers (azure-sdk-for-python's Rooms session records
    /// `test_create_room_validUntil_7Months`, `test_update_room_exceed_max_timerange`,
    /// `test_create_room_valid_until_in_past`): `400 BadRequest` with one `BadArgument` detail.
    #[test]
    fn bad_windows_get_acs_recorded_answers() {
        let detail = |f: Option<String>, u: Option<String>| {
            let e = create_window(&create(f.as_deref(), u.as_deref()), NOW).unwrap_err();
            assert_eq!((e.code, e.message.as_str()), (ErrorCode::BadRequest, BAD_REQUEST_MESSAGE));
            assert_eq!(e.details.len(), 1);
            let d = &e.details[0];
            (d.code, d.message.clone(), d.target.clone())
        };
        let too_long = (
            "BadArgument",
            "The time range is incorrect, or larger than 180 days.".to_string(),
            Some("ValidUntil".to_string()),
        );
        assert_eq!(detail(None, Some(format_time(NOW + days_us(181)))), too_long);
        assert_eq!(detail(Some(format_time(NOW + days_us(2))), Some(format_time(NOW + days_us(1)))), too_long);
        let past = ("BadArgument", "The time range end is in the past.".to_string(), Some("ValidUntil".to_string()));
        assert_eq!(detail(Some(format_time(NOW - days_us(2))), Some(format_time(NOW - days_us(1)))), past);
        assert_eq!(
            detail(None, Some(format_time(NOW - days_us(1)))),
            past,
            "the recorded request: only a past validUntil"
        );
        assert_eq!(
            detail(Some(format_time(NOW + days_us(181))), Some(format_time(NOW + days_us(190)))),
            (
                "BadArgument",
                "Value is incorrect or more than 180 days in the future.".to_string(),
                Some("ValidFrom".to_string())
            )
        );
    }

    #[test]
    fn update_keeps_unset_members_and_rechecks_the_window() {
        let room = Room {
            id: "1".into(),
            created_at_us: NOW,
            valid_from_us: NOW,
            valid_until_us: NOW + days_us(1),
            pstn_dial_out_enabled: false,
        };
        let same = updated_window(&room, &UpdateRoomRequest::default(), NOW).unwrap();
        assert_eq!(same, (NOW, NOW + days_us(1)));
        let later_from = UpdateRoomRequest { valid_from: Some(format_time(NOW + days_us(2))), ..Default::default() };
        assert_eq!(updated_window(&room, &later_from, NOW).unwrap_err().code, ErrorCode::BadRequest);
        // A room whose window is over can still get other changes.
        assert!(updated_window(&room, &UpdateRoomRequest::default(), NOW + days_us(5)).is_ok());
    }

    #[test]
    fn participant_ids_and_roles() {
        let ok = [("8:acs:res1_u1", "8:acs:res1_u1"), ("8:orgid:oid-1", "8:orgid:oid-1")];
        for (raw, want) in ok {
            assert_eq!(check_participant_id(raw, RES).unwrap(), want);
        }
        let bad = [
            ("8:acs:other_u1", ErrorCode::InvalidIdentifier),
            ("8:gcch:x", ErrorCode::GovernmentCloudNotSupported),
            ("8:teamsvisitor:v", ErrorCode::InvalidIdentifier),
            ("4:+14255550123", ErrorCode::InvalidIdentifier),
            ("28:orgid:app", ErrorCode::InvalidIdentifier),
            ("nonsense", ErrorCode::InvalidInput),
            ("", ErrorCode::InvalidInput),
        ];
        for (raw, code) in bad {
            assert_eq!(check_participant_id(raw, RES).unwrap_err().code, code, "{raw}");
        }
        let map: BTreeMap<String, Option<ParticipantProperties>> = serde_json::from_str(
            r#"{"8:acs:res1_a":{"role":"presenter"},"8:acs:res1_b":{},"8:acs:res1_c":{"role":null},"8:acs:res1_d":null}"#,
        )
        .unwrap();
        let changes = participant_changes(&map, RES, true).unwrap();
        assert_eq!(changes[0], ParticipantChange::Upsert { raw_id: "8:acs:res1_a".into(), role: RoomRole::Presenter });
        assert_eq!(changes[1], ParticipantChange::Upsert { raw_id: "8:acs:res1_b".into(), role: RoomRole::Attendee });
        assert_eq!(changes[2], ParticipantChange::Upsert { raw_id: "8:acs:res1_c".into(), role: RoomRole::Attendee });
        assert_eq!(changes[3], ParticipantChange::Remove { raw_id: "8:acs:res1_d".into() });
        assert_eq!(participant_changes(&map, RES, false).unwrap_err().code, ErrorCode::InvalidParameter);
        let bad_role: BTreeMap<String, Option<ParticipantProperties>> =
            serde_json::from_str(r#"{"8:acs:res1_a":{"role":"Owner"}}"#).unwrap();
        let refused = participant_changes(&bad_role, RES, true).unwrap_err();
        assert_eq!(refused.code, ErrorCode::BadRequest);
        assert_eq!(refused.details[0].target.as_deref(), Some("$.participants.8:acs:res1_a.role"));
    }

    #[test]
    fn paging_query_and_next_link() {
        assert_eq!(page_request(None).unwrap(), PageRequest { size: 100, after: 0 });
        let req = page_request(Some("api-version=2025-03-13&maxPageSize=2&skipToken=17")).unwrap();
        assert_eq!(req, PageRequest { size: 2, after: 17 });
        assert_eq!(
            next_link("/rooms", "2025-03-13", &req, 19),
            "/rooms?api-version=2025-03-13&skipToken=19&maxPageSize=2"
        );
        for (q, code) in [
            ("maxPageSize=0", ErrorCode::InvalidParameter),
            ("maxPageSize=101", ErrorCode::InvalidParameter),
            ("maxPageSize=x", ErrorCode::InvalidParameter),
            ("skipToken=abc", ErrorCode::InvalidPageToken),
            ("skipToken=-3", ErrorCode::InvalidPageToken),
        ] {
            assert_eq!(page_request(Some(q)).unwrap_err().code, code, "{q}");
        }
    }

    #[test]
    fn room_json_shape() {
        let room = Room {
            id: "12345678901234567".into(),
            created_at_us: NOW,
            valid_from_us: NOW,
            valid_until_us: NOW + days_us(1),
            pstn_dial_out_enabled: true,
        };
        let json = serde_json::to_value(room.to_json()).unwrap();
        assert_eq!(json["id"], "12345678901234567");
        assert_eq!(json["pstnDialOutEnabled"], true);
        assert!(json["validUntil"].as_str().unwrap().ends_with('Z'));
        assert!(room.is_active_at(NOW) && !room.is_active_at(NOW + days_us(1)) && !room.is_active_at(NOW - 1));
    }
}
