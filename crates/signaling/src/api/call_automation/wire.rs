//! Request bodies of the call-connection operations (reference §3.3), as the SDK sends them.
//! Required members are `Option`s here: the SDK checks nothing (`client_side_validation =
//! False`), so a missing one is answered `400/8523` naming it ([`required`]).

use crate::domain::call_automation::{CallAutomationError, OperationRoute};
use palaver_core::{CommunicationIdentifier, IdentifierModel};
use serde::Deserialize;
use serde_json::Value;

/// A bare `CommunicationUserIdentifierModel` (`source`, `answeredBy`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UserModel {
    pub id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateCallRequest {
    pub targets: Option<Vec<IdentifierModel>>,
    pub source_caller_id_number: Option<Value>,
    pub source_display_name: Option<String>,
    pub source: Option<UserModel>,
    pub operation_context: Option<String>,
    pub callback_uri: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnswerCallRequest {
    pub incoming_call_context: Option<String>,
    pub callback_uri: Option<String>,
    pub operation_context: Option<String>,
    pub answered_by: Option<UserModel>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedirectCallRequest {
    pub incoming_call_context: Option<String>,
    pub target: Option<IdentifierModel>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectCallRequest {
    pub incoming_call_context: Option<String>,
    pub call_reject_reason: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallLocator {
    pub kind: Option<String>,
    pub group_call_id: Option<String>,
    pub server_call_id: Option<String>,
    pub room_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectRequest {
    pub call_locator: Option<CallLocator>,
    pub callback_uri: Option<String>,
    pub operation_context: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferRequest {
    pub target_participant: Option<IdentifierModel>,
    pub operation_context: Option<String>,
    pub transferee: Option<IdentifierModel>,
    pub operation_callback_uri: Option<String>,
    pub custom_calling_context: Option<Value>,
    pub source_caller_id_number: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddParticipantRequest {
    pub participant_to_add: Option<IdentifierModel>,
    pub invitation_timeout_in_seconds: Option<i64>,
    pub operation_context: Option<String>,
    pub operation_callback_uri: Option<String>,
    pub custom_calling_context: Option<Value>,
    pub source_caller_id_number: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveParticipantRequest {
    pub participant_to_remove: Option<IdentifierModel>,
    pub operation_context: Option<String>,
    pub operation_callback_uri: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MuteParticipantsRequest {
    pub target_participants: Option<Vec<IdentifierModel>>,
    pub operation_context: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelAddParticipantRequest {
    pub invitation_id: Option<String>,
    pub operation_context: Option<String>,
    pub operation_callback_uri: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveParticipantsRequest {
    pub target_participants: Option<Vec<IdentifierModel>>,
    pub operation_context: Option<String>,
    pub operation_callback_uri: Option<String>,
    pub from_call: Option<String>,
}

/// A required member (`400/8523` naming it when absent or empty).
pub fn required<T>(value: Option<T>, name: &str) -> Result<T, CallAutomationError> {
    value.ok_or_else(|| CallAutomationError::invalid_argument(format!("The field {name} is required.")))
}

/// A required, non-empty string member.
pub fn required_str(value: Option<String>, name: &str) -> Result<String, CallAutomationError> {
    required(value.filter(|v| !v.trim().is_empty()), name)
}

/// The raw id of an identifier member (`400/8523` when it does not parse).
pub fn raw_id(model: &IdentifierModel, name: &str) -> Result<String, CallAutomationError> {
    CommunicationIdentifier::from_model(model)
        .map(|id| id.raw_id())
        .map_err(|e| CallAutomationError::invalid_argument(format!("The field {name} is invalid: {e}")))
}

/// A callable target. A phone number (`4:+E.164`) is dialled out through the SIP trunk
/// when the server allows phone targets (`[signaling.calls] allow_phone_targets`); the call
/// machinery refuses it otherwise (answered 400/8523 by `call_automation_error`).
pub fn target(model: &IdentifierModel, name: &str) -> Result<String, CallAutomationError> {
    raw_id(model, name)
}

/// `sourceCallerIdNumber` (a `PhoneNumberIdentifierModel`, `{"value": "+E.164"}`): the
/// number, or `None` when absent or null.
pub fn caller_id_number(value: Option<Value>) -> Result<Option<String>, CallAutomationError> {
    let Some(value) = value.filter(|v| !v.is_null()) else { return Ok(None) };
    let number = value.get("value").and_then(Value::as_str).unwrap_or_default();
    let digits = number.strip_prefix('+').unwrap_or_default();
    let e164 =
        (2..=15).contains(&digits.len()) && !digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit());
    if !e164 {
        return Err(CallAutomationError::invalid_argument(
            "The field SourceCallerIdNumber must be a phone number in E.164 format (+ and up to 15 digits).",
        ));
    }
    Ok(Some(number.to_owned()))
}

/// A callback URI: absolute `https://` or `http://` (loopback and tests), kept verbatim.
pub fn callback_uri(value: Option<String>, name: &str) -> Result<String, CallAutomationError> {
    let uri = required_str(value, name)?;
    let ok = reqwest::Url::parse(&uri).is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some());
    if !ok {
        return Err(CallAutomationError::invalid_argument(format!("The field {name} is invalid.")));
    }
    Ok(uri)
}

/// `operationContext` and `operationCallbackUri` of an operation.
pub fn route(
    operation_context: Option<String>,
    operation_callback_uri: Option<String>,
) -> Result<OperationRoute, CallAutomationError> {
    let operation_callback_uri = match operation_callback_uri.filter(|u| !u.is_empty()) {
        Some(u) => Some(callback_uri(Some(u), "OperationCallbackUri")?),
        None => None,
    };
    Ok(OperationRoute { operation_context, operation_callback_uri })
}
