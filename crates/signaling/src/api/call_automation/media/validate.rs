//! The body checks of each media operation without a call connection: the same parsing and
//! validators `run` applies (play sources, recognize options, tones, participants, operation
//! tags), in its order, stopping where `run` hands the request to the leg. For the fuzz target
//! `ca_request` through [`super::super::validate::check_body`]; the handlers do not call it.

use super::{
    CallRequest, HoldBody, MAX_SEND_TONES, OperationBody, PlayBody, RecognizeBody, SendDtmfBody, TargetBody,
    participant, play_request, recognize_request, source, tag, tone, wire,
};
use crate::domain::call_automation::CallAutomationError;

/// Checks `request`'s body as media operation `action` would (`Ok` for an action that is not a
/// media operation: the caller checks the name).
pub fn check_body(action: &str, request: &CallRequest) -> Result<(), CallAutomationError> {
    match action {
        "play" => {
            let body: PlayBody = request.json()?;
            play_request(body)?;
        }
        "recognize" => {
            let body: RecognizeBody = request.json()?;
            recognize_request(body)?;
        }
        "cancelAllMediaOperations" | "startMediaStreaming" | "stopMediaStreaming" => {
            let body: OperationBody = request.json_or_default()?;
            tag(body.operation_context, body.operation_callback_uri)?;
        }
        "startContinuousDtmfRecognition" | "stopContinuousDtmfRecognition" => {
            let body: TargetBody = request.json()?;
            participant(body.target_participant, "TargetParticipant")?;
            tag(body.operation_context, body.operation_callback_uri)?;
        }
        "sendDtmfTones" => {
            let body: SendDtmfBody = request.json()?;
            participant(body.target_participant, "TargetParticipant")?;
            let tones = wire::required(body.tones, "Tones")?;
            if tones.is_empty() || tones.len() > MAX_SEND_TONES {
                return Err(CallAutomationError::invalid_argument(format!(
                    "The field Tones must hold 1 to {MAX_SEND_TONES} tones."
                )));
            }
            for t in &tones {
                tone(t, "Tones")?;
            }
            tag(body.operation_context, body.operation_callback_uri)?;
        }
        "hold" | "unhold" => {
            let body: HoldBody = request.json()?;
            participant(body.target_participant, "TargetParticipant")?;
            body.play_source_info.map(source).transpose()?;
            tag(body.operation_context, body.operation_callback_uri)?;
        }
        "startTranscription" | "updateTranscription" | "stopTranscription" => {
            // Refused before the body is read (`dispatch`), whatever it holds.
            return Err(CallAutomationError::invalid_argument(format!(
                "`{action}` needs a speech-to-text engine, which this server does not have: transcription is not supported."
            )));
        }
        _ => {}
    }
    Ok(())
}
