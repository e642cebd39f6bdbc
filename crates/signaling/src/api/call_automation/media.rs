//! Media operations of a call connection (`play`, `recognize`, `cancelAllMediaOperations`,
//! continuous DTMF, `sendDtmfTones`, `hold`/`unhold`, media streaming; transcription is
//! refused clearly), forwarded here by the router in `mod.rs`. Each request is validated here
//! (the SDK validates nothing: reference §0 fact 8) and handed to the call connection's
//! [`ServerLeg`]; the leg's outcomes come back as [`LegEvent`]s, which [`leg_callbacks`]
//! turns into ACS callbacks in the call connection's order (through the same queue as the
//! call events, so `CallDisconnected` stays last).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use super::wire::{self, route};
use super::{CallRequest, ca_error};
use crate::app::AppState;
use crate::domain::call_automation::events::{base_data, event_type, identifier, result};
use crate::domain::call_automation::{CaOutput, CallAutomationError, CallConnectionView};
use crate::gateway::Gateway;
use crate::gateway::legs::{
    DtmfChoice, DtmfTone, LegEvent, LegEventKind, LegRefusal, OperationTag, PlayRequest, PlaySource, RecognizeRequest,
    ResultInfo, ServerLeg, StreamRequest,
};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palaver_core::IdentifierModel;
use serde::Deserialize;
use serde_json::{Value, json};

/// Largest number of tones one `sendDtmfTones` may carry (ACS's limit).
const MAX_SEND_TONES: usize = 18;

/// `mediaStreamingOptions` given at create/answer/connect, by call connection.
static STREAMING: LazyLock<Mutex<HashMap<String, StreamRequest>>> = LazyLock::new(Mutex::default);
/// Call connections whose leg events are being turned into callbacks.
static PUMPED: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);

type Answer = Result<Response, CallAutomationError>;

pub mod validate;

fn refusal(e: LegRefusal) -> CallAutomationError {
    CallAutomationError::new(e.status, e.sub_code, e.message)
}

/// Carry out media action `action` (`play`, `hold`, ...) on call connection `ccid`.
pub async fn dispatch(state: AppState, ccid: String, action: String, request: CallRequest) -> Response {
    let answer = async {
        let view = state.call_automation().connection(&ccid)?;
        view.require_established()?;
        if matches!(action.as_str(), "startTranscription" | "updateTranscription" | "stopTranscription") {
            return Err(CallAutomationError::invalid_argument(format!(
                "`{action}` needs a speech-to-text engine, which this server does not have: transcription is not supported."
            )));
        }
        let leg = state.call_automation().leg(&ccid).ok_or_else(|| {
            CallAutomationError::new(400, 8501, "The call connection's media is not established yet.")
        })?;
        ensure_callbacks(&state.gateway, &view, &leg);
        run(&state.gateway, &view, &leg, &action, &request).await
    };
    answer.await.unwrap_or_else(ca_error)
}

async fn run(
    gateway: &Gateway,
    view: &CallConnectionView,
    leg: &Arc<dyn ServerLeg>,
    action: &str,
    request: &CallRequest,
) -> Answer {
    let accepted = StatusCode::ACCEPTED.into_response();
    match action {
        "play" => {
            let body: PlayBody = request.json()?;
            let play = play_request(body)?;
            leg.play(play).await.map_err(refusal)?;
            Ok(accepted)
        }
        "recognize" => {
            let body: RecognizeBody = request.json()?;
            leg.recognize(recognize_request(body)?).await.map_err(refusal)?;
            Ok(accepted)
        }
        "cancelAllMediaOperations" => {
            let body: OperationBody = request.json_or_default()?;
            leg.cancel_all(tag(body.operation_context, body.operation_callback_uri)?).await.map_err(refusal)?;
            Ok(accepted)
        }
        "startContinuousDtmfRecognition" | "stopContinuousDtmfRecognition" => {
            let body: TargetBody = request.json()?;
            let target = participant(body.target_participant, "TargetParticipant")?;
            let on = action.starts_with("start");
            let tag = tag(body.operation_context, body.operation_callback_uri)?;
            leg.continuous_dtmf(target, on, tag).await.map_err(refusal)?;
            Ok(StatusCode::OK.into_response())
        }
        "sendDtmfTones" => {
            let body: SendDtmfBody = request.json()?;
            let target = participant(body.target_participant, "TargetParticipant")?;
            let tones = wire::required(body.tones, "Tones")?;
            if tones.is_empty() || tones.len() > MAX_SEND_TONES {
                return Err(CallAutomationError::invalid_argument(format!(
                    "The field Tones must hold 1 to {MAX_SEND_TONES} tones."
                )));
            }
            let tones = tones.iter().map(|t| tone(t, "Tones")).collect::<Result<Vec<_>, _>>()?;
            let context = body.operation_context.clone();
            leg.send_dtmf(target, tones, tag(body.operation_context, body.operation_callback_uri)?)
                .await
                .map_err(refusal)?;
            Ok((StatusCode::ACCEPTED, Json(json!({"operationContext": context}))).into_response())
        }
        "hold" | "unhold" => {
            let body: HoldBody = request.json()?;
            let target = participant(body.target_participant, "TargetParticipant")?;
            let music = body.play_source_info.map(source).transpose()?;
            let tag = tag(body.operation_context, body.operation_callback_uri)?;
            let on = action == "hold";
            // The roster first (an unknown participant is 404/8522 and nothing is held), then
            // the media: out of the mix, hearing only its music.
            gateway.ca_set_on_hold(&view.call_connection_id, &target, on)?;
            leg.hold(target, on, music, tag).await.map_err(refusal)?;
            Ok(StatusCode::OK.into_response())
        }
        "startMediaStreaming" => {
            let body: OperationBody = request.json_or_default()?;
            let mut stream = streaming_options(&view.call_connection_id).ok_or_else(|| {
                CallAutomationError::new(
                    400,
                    8523,
                    "The call connection has no mediaStreamingOptions (give them at create, answer or connect).",
                )
            })?;
            stream.tag = tag(body.operation_context, body.operation_callback_uri)?;
            leg.start_streaming(stream).await.map_err(refusal)?;
            Ok(accepted)
        }
        "stopMediaStreaming" => {
            let body: OperationBody = request.json_or_default()?;
            leg.stop_streaming(tag(body.operation_context, body.operation_callback_uri)?).await.map_err(refusal)?;
            Ok(accepted)
        }
        other => Err(CallAutomationError::new(404, 8522, format!("No Call Automation operation `{other}`."))),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OperationBody {
    operation_context: Option<String>,
    operation_callback_uri: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TargetBody {
    target_participant: Option<IdentifierModel>,
    operation_context: Option<String>,
    operation_callback_uri: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendDtmfBody {
    tones: Option<Vec<String>>,
    target_participant: Option<IdentifierModel>,
    operation_context: Option<String>,
    operation_callback_uri: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HoldBody {
    target_participant: Option<IdentifierModel>,
    play_source_info: Option<SourceBody>,
    operation_context: Option<String>,
    operation_callback_uri: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SourceBody {
    kind: Option<String>,
    play_source_cache_id: Option<String>,
    file: Option<FileBody>,
    text: Option<TextBody>,
    ssml: Option<SsmlBody>,
}

#[derive(Debug, Default, Deserialize)]
struct FileBody {
    uri: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TextBody {
    text: Option<String>,
    source_locale: Option<String>,
    voice_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SsmlBody {
    ssml_text: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlayBody {
    play_sources: Option<Vec<SourceBody>>,
    play_to: Option<Vec<IdentifierModel>>,
    interrupt_call_media_operation: Option<bool>,
    play_options: Option<PlayOptions>,
    operation_context: Option<String>,
    operation_callback_uri: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct PlayOptions {
    #[serde(rename = "loop")]
    looped: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecognizeBody {
    recognize_input_type: Option<String>,
    play_prompt: Option<SourceBody>,
    play_prompts: Option<Vec<SourceBody>>,
    interrupt_call_media_operation: Option<bool>,
    recognize_options: Option<RecognizeOptions>,
    operation_context: Option<String>,
    operation_callback_uri: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecognizeOptions {
    interrupt_prompt: Option<bool>,
    initial_silence_timeout_in_seconds: Option<i64>,
    target_participant: Option<IdentifierModel>,
    dtmf_options: Option<DtmfOptions>,
    choices: Option<Vec<ChoiceBody>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DtmfOptions {
    inter_tone_timeout_in_seconds: Option<i64>,
    max_tones_to_collect: Option<i64>,
    stop_tones: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChoiceBody {
    label: Option<String>,
    tone: Option<String>,
}

fn tag(
    operation_context: Option<String>,
    operation_callback_uri: Option<String>,
) -> Result<OperationTag, CallAutomationError> {
    let route = route(operation_context, operation_callback_uri)?;
    Ok(OperationTag {
        operation_context: route.operation_context,
        operation_callback_uri: route.operation_callback_uri,
    })
}

fn participant(model: Option<IdentifierModel>, name: &str) -> Result<String, CallAutomationError> {
    wire::raw_id(&wire::required(model, name)?, name)
}

fn tone(name: &str, field: &str) -> Result<DtmfTone, CallAutomationError> {
    DtmfTone::from_name(name).ok_or_else(|| {
        CallAutomationError::invalid_argument(format!("The field {field} has an invalid tone `{name}`."))
    })
}

/// A `PlaySource` (`400/8523` naming what is missing or unknown).
pub(crate) fn source(body: SourceBody) -> Result<PlaySource, CallAutomationError> {
    let kind = wire::required_str(body.kind, "PlaySource.Kind")?;
    let cache_id = body.play_source_cache_id.filter(|c| !c.is_empty());
    match kind.to_ascii_lowercase().as_str() {
        "file" => {
            let uri = wire::required_str(body.file.and_then(|f| f.uri), "FileSource.Uri")?;
            if !reqwest::Url::parse(&uri).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                return Err(CallAutomationError::invalid_argument("The field FileSource.Uri must be an http(s) URL."));
            }
            Ok(PlaySource::File { uri, cache_id })
        }
        "text" => {
            let text = body.text.unwrap_or_default();
            Ok(PlaySource::Text {
                text: wire::required_str(text.text, "TextSource.Text")?,
                voice_name: text.voice_name,
                locale: text.source_locale,
                cache_id,
            })
        }
        "ssml" => {
            let ssml = wire::required_str(body.ssml.and_then(|s| s.ssml_text), "SsmlSource.SsmlText")?;
            Ok(PlaySource::Ssml { ssml, cache_id })
        }
        other => Err(CallAutomationError::invalid_argument(format!("The PlaySource kind `{other}` is not supported."))),
    }
}

fn play_request(body: PlayBody) -> Result<PlayRequest, CallAutomationError> {
    let sources = wire::required(body.play_sources, "PlaySources")?;
    if sources.is_empty() {
        return Err(CallAutomationError::invalid_argument("The field PlaySources must not be empty."));
    }
    let sources = sources.into_iter().map(source).collect::<Result<Vec<_>, _>>()?;
    let play_to =
        body.play_to.unwrap_or_default().iter().map(|m| wire::raw_id(m, "PlayTo")).collect::<Result<_, _>>()?;
    Ok(PlayRequest {
        sources,
        play_to,
        looped: body.play_options.and_then(|o| o.looped).unwrap_or(false),
        interrupt: body.interrupt_call_media_operation.unwrap_or(false),
        tag: tag(body.operation_context, body.operation_callback_uri)?,
    })
}

fn seconds(
    value: Option<i64>,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
    name: &str,
) -> Result<u32, CallAutomationError> {
    let v = value.unwrap_or(default);
    if !range.contains(&v) {
        return Err(CallAutomationError::invalid_argument(format!(
            "The field {name} must be between {} and {} seconds.",
            range.start(),
            range.end()
        )));
    }
    Ok((v * 1000) as u32)
}

fn recognize_request(body: RecognizeBody) -> Result<RecognizeRequest, CallAutomationError> {
    let input = wire::required_str(body.recognize_input_type, "RecognizeInputType")?;
    let options = wire::required(body.recognize_options, "RecognizeOptions")?;
    let target = participant(options.target_participant, "RecognizeOptions.TargetParticipant")?;
    let choices = match input.as_str() {
        "dtmf" => Vec::new(),
        "choices" => {
            let choices = options.choices.unwrap_or_default();
            if choices.is_empty() {
                return Err(CallAutomationError::invalid_argument("The field Choices must not be empty."));
            }
            choices
                .into_iter()
                .map(|c| {
                    let label = wire::required_str(c.label, "Choices.Label")?;
                    let Some(name) = c.tone else {
                        return Err(CallAutomationError::invalid_argument(format!(
                            "Choice `{label}` has no tone: recognizing spoken phrases needs a speech engine, which this \
                             server does not have (choices are matched by DTMF tone only)."
                        )));
                    };
                    Ok(DtmfChoice { label, tone: tone(&name, "Choices.Tone")? })
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        "speech" | "speechOrDtmf" => {
            return Err(CallAutomationError::invalid_argument(format!(
                "RecognizeInputType `{input}` needs a speech recognition engine, which this server does not have: \
                 only `dtmf` and `choices` (by tone) are supported."
            )));
        }
        other => {
            return Err(CallAutomationError::invalid_argument(format!("RecognizeInputType `{other}` is invalid.")));
        }
    };
    let dtmf = options.dtmf_options.unwrap_or_default();
    let max_tones = dtmf.max_tones_to_collect.unwrap_or(1);
    if !(1..=100).contains(&max_tones) {
        return Err(CallAutomationError::invalid_argument("The field MaxTonesToCollect must be between 1 and 100."));
    }
    let stop_tones =
        dtmf.stop_tones.unwrap_or_default().iter().map(|t| tone(t, "StopTones")).collect::<Result<_, _>>()?;
    let prompts = match (body.play_prompt, body.play_prompts) {
        (Some(_), Some(_)) => {
            return Err(CallAutomationError::invalid_argument("Give PlayPrompt or PlayPrompts, not both."));
        }
        (Some(one), None) => vec![source(one)?],
        (None, Some(many)) => many.into_iter().map(source).collect::<Result<_, _>>()?,
        (None, None) => Vec::new(),
    };
    Ok(RecognizeRequest {
        target,
        prompts,
        interrupt_prompt: options.interrupt_prompt.unwrap_or(false),
        interrupt_media: body.interrupt_call_media_operation.unwrap_or(false),
        initial_silence_timeout_ms: seconds(
            options.initial_silence_timeout_in_seconds,
            5,
            0..=300,
            "InitialSilenceTimeoutInSeconds",
        )?,
        inter_tone_timeout_ms: seconds(dtmf.inter_tone_timeout_in_seconds, 2, 1..=60, "InterToneTimeoutInSeconds")?,
        max_tones: max_tones as u32,
        stop_tones,
        choices,
        tag: tag(body.operation_context, body.operation_callback_uri)?,
    })
}

/// Keeps the `mediaStreamingOptions` of a create/answer/connect `body` for call connection
/// `properties.callConnectionId` (used by `startMediaStreaming`; `startMediaStreaming: true`
/// starts it once the leg is attached).
pub fn remember_streaming(state: &AppState, properties: &Value, body: &[u8]) {
    let Some(ccid) = properties["callConnectionId"].as_str() else { return };
    let Ok(body) = serde_json::from_slice::<Value>(body) else { return };
    let options = &body["mediaStreamingOptions"];
    let Some(url) = options["transportUrl"].as_str() else { return };
    let request = StreamRequest {
        transport_url: url.to_owned(),
        unmixed: options["audioChannelType"].as_str() == Some("unmixed"),
        sample_rate: if options["audioFormat"].as_str() == Some("pcm24KMono") { 24_000 } else { 16_000 },
        bidirectional: options["enableBidirectional"].as_bool().unwrap_or(false),
        dtmf: options["enableDtmfTones"].as_bool().unwrap_or(false),
        tag: OperationTag::default(),
    };
    if let Ok(mut all) = STREAMING.lock() {
        all.insert(ccid.to_owned(), request.clone());
    }
    if options["startMediaStreaming"].as_bool() == Some(true) {
        // The leg attaches once the call connects: start then.
        let (state, ccid) = (state.clone(), ccid.to_owned());
        tokio::spawn(async move {
            for _ in 0..600 {
                if let (Ok(view), Some(leg)) =
                    (state.call_automation().connection(&ccid), state.call_automation().leg(&ccid))
                {
                    ensure_callbacks(&state.gateway, &view, &leg);
                    if let Err(e) = leg.start_streaming(request).await {
                        tracing::warn!(%ccid, error = %e, "media streaming did not start");
                    }
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        });
    }
}

fn streaming_options(ccid: &str) -> Option<StreamRequest> {
    STREAMING.lock().ok()?.get(ccid).cloned()
}

/// Starts turning `leg`'s events into callbacks of call connection `view` (once per leg).
pub fn ensure_callbacks(gateway: &Gateway, view: &CallConnectionView, leg: &Arc<dyn ServerLeg>) {
    let Some(events) = leg.take_events() else { return };
    if let Ok(mut pumped) = PUMPED.lock() {
        pumped.insert(view.call_connection_id.clone());
    }
    tokio::spawn(leg_callbacks(gateway.clone(), view.clone(), events));
}

async fn leg_callbacks(
    gateway: Gateway,
    view: CallConnectionView,
    mut events: tokio::sync::mpsc::UnboundedReceiver<LegEvent>,
) {
    let ccid = view.call_connection_id.clone();
    let finals_tx = gateway.call_automation().final_callbacks(&ccid);
    let mut finals = Vec::new();
    let mut streams = super::streaming::StreamMeter::default();
    while let Some(event) = events.recv().await {
        // Streaming minutes are billed however the stream ends (the call's end included).
        if let Some(usage) = streams.on_event(&view, &event.kind, palaver_core::time::now_ms()) {
            gateway.observer().media_used(usage);
        }
        let Some(output) = callback(&view, &event) else { continue };
        if gateway.call_automation().connection(&ccid).is_ok() {
            gateway.call_automation_outputs(vec![output]);
        } else if matches!(event.kind, LegEventKind::MediaStreamingStopped | LegEventKind::MediaStreamingFailed { .. })
        {
            // The connection ended and stopped its stream: ACS reports it, before
            // CallDisconnected (the DetachLeg step waits for it). Plays and recognitions the
            // end cuts short are not reported (nothing is sent after CallDisconnected).
            finals.push(output);
        }
    }
    let _ = finals_tx.send(finals);
    if let Ok(mut pumped) = PUMPED.lock() {
        pumped.remove(&ccid);
    }
    if let Ok(mut all) = STREAMING.lock() {
        all.remove(&ccid);
    }
}

fn info(r: &ResultInfo) -> Value {
    result(r.code, r.sub_code, &r.message)
}

/// The ACS callback of one leg event (`None` for events that are not callbacks).
pub fn callback(view: &CallConnectionView, event: &LegEvent) -> Option<CaOutput> {
    let mut data = base_data(
        &view.call_connection_id,
        &view.server_call_id,
        &view.correlation_id,
        event.tag.operation_context.as_deref(),
    );
    let success = ResultInfo::success();
    let (name, result) = match &event.kind {
        LegEventKind::PlayStarted => ("PlayStarted", &success),
        LegEventKind::PlayCompleted(r) => ("PlayCompleted", r),
        LegEventKind::PlayFailed { result, failed_source_index } => {
            data["failedPlaySourceIndex"] = json!(failed_source_index);
            ("PlayFailed", result)
        }
        LegEventKind::PlayCanceled(r) => ("PlayCanceled", r),
        LegEventKind::RecognizeCompleted { result, tones, choice } => {
            let names: Vec<&str> = tones.iter().filter_map(|t| t.name()).collect();
            match choice {
                Some(label) => {
                    data["recognitionType"] = json!("choices");
                    data["choiceResult"] = json!({"label": label, "recognizedPhrase": names.first()});
                }
                None => {
                    data["recognitionType"] = json!("dtmf");
                    data["dtmfResult"] = json!({"tones": names});
                }
            }
            ("RecognizeCompleted", result)
        }
        LegEventKind::RecognizeFailed { result, failed_source_index } => {
            if let Some(index) = failed_source_index {
                data["failedPlaySourceIndex"] = json!(index);
            }
            ("RecognizeFailed", result)
        }
        LegEventKind::RecognizeCanceled(r) => ("RecognizeCanceled", r),
        LegEventKind::ContinuousDtmfToneReceived { participant, tone, sequence_id } => {
            data["sequenceId"] = json!(sequence_id);
            data["tone"] = json!(tone.name());
            data["targetParticipant"] = identifier(participant);
            ("ContinuousDtmfRecognitionToneReceived", &success)
        }
        LegEventKind::ContinuousDtmfStopped(r) => ("ContinuousDtmfRecognitionStopped", r),
        LegEventKind::SendDtmfTonesCompleted(r) => ("SendDtmfTonesCompleted", r),
        LegEventKind::SendDtmfTonesFailed(r) => ("SendDtmfTonesFailed", r),
        LegEventKind::HoldFailed(r) => ("HoldFailed", r),
        LegEventKind::MediaStreamingStarted => {
            data["mediaStreamingUpdate"] = json!({"contentType": "Audio", "mediaStreamingStatus": "mediaStreamingStarted",
                "mediaStreamingStatusDetails": "subscriptionStarted"});
            ("MediaStreamingStarted", &success)
        }
        LegEventKind::MediaStreamingStopped => {
            data["mediaStreamingUpdate"] = json!({"contentType": "Audio", "mediaStreamingStatus": "mediaStreamingStopped",
                "mediaStreamingStatusDetails": "subscriptionStopped"});
            ("MediaStreamingStopped", &success)
        }
        LegEventKind::MediaStreamingFailed { result, details } => {
            data["mediaStreamingUpdate"] = json!({"contentType": "Audio", "mediaStreamingStatus": "mediaStreamingFailed",
                "mediaStreamingStatusDetails": details});
            ("MediaStreamingFailed", result)
        }
        // Recording events are the recording API's (their own leg and callback uri).
        LegEventKind::RecordingStateChanged { .. }
        | LegEventKind::RecordingFileReady(_)
        | LegEventKind::RecordingFailed { .. } => return None,
    };
    data["resultInformation"] = info(result);
    let callback_uri = event.tag.operation_callback_uri.clone().unwrap_or_else(|| view.callback_uri.clone());
    Some(CaOutput::Callback {
        call_connection_id: view.call_connection_id.clone(),
        callback_uri,
        event_type: event_type(name),
        data,
    })
}

#[cfg(test)]
mod tests;
