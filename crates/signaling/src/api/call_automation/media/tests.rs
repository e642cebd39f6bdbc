//! Validation of media requests (the server checks what the SDK does not) and the shape of
//! the callbacks leg events become.

use super::*;
use crate::domain::call_automation::CallConnectionState;

fn recognize(body: Value) -> Result<RecognizeRequest, CallAutomationError> {
    recognize_request(serde_json::from_value(body).unwrap())
}

fn target() -> Value {
    json!({"rawId": "8:acs:r_caller", "communicationUser": {"id": "8:acs:r_caller"}})
}

#[test]
fn recognize_dtmf_takes_acs_defaults_and_checks_ranges() {
    let ok = recognize(json!({"recognizeInputType": "dtmf", "recognizeOptions": {"targetParticipant": target(),
        "dtmfOptions": {"maxTonesToCollect": 4, "stopTones": ["pound"]}}}))
    .unwrap();
    assert_eq!((ok.initial_silence_timeout_ms, ok.inter_tone_timeout_ms, ok.max_tones), (5000, 2000, 4));
    assert_eq!(ok.stop_tones, [DtmfTone(11)]);
    assert_eq!(ok.target, "8:acs:r_caller");
    for bad in [
        json!({"initialSilenceTimeoutInSeconds": 301}),
        json!({"dtmfOptions": {"interToneTimeoutInSeconds": 0}}),
        json!({"dtmfOptions": {"interToneTimeoutInSeconds": 61}}),
        json!({"dtmfOptions": {"stopTones": ["ten"]}}),
        json!({"dtmfOptions": {"maxTonesToCollect": 0}}),
    ] {
        let mut options = bad.clone();
        options["targetParticipant"] = target();
        let e = recognize(json!({"recognizeInputType": "dtmf", "recognizeOptions": options})).unwrap_err();
        assert_eq!((e.status, e.subcode), (400, 8523), "{bad}: {}", e.message);
    }
    let e = recognize(json!({"recognizeInputType": "dtmf", "recognizeOptions": {}})).unwrap_err();
    assert!(e.message.contains("TargetParticipant"), "{}", e.message);
}

#[test]
fn speech_is_refused_naming_what_is_missing() {
    let e = recognize(json!({"recognizeInputType": "speech", "recognizeOptions": {"targetParticipant": target()}}))
        .unwrap_err();
    assert_eq!((e.status, e.subcode), (400, 8523));
    assert!(e.message.contains("speech recognition engine"), "{}", e.message);
    let e = recognize(json!({"recognizeInputType": "choices", "recognizeOptions": {"targetParticipant": target(),
        "choices": [{"label": "yes", "phrases": ["yes"]}]}}))
    .unwrap_err();
    assert!(e.message.contains("by DTMF tone only"), "{}", e.message);
    let ok = recognize(json!({"recognizeInputType": "choices", "recognizeOptions": {"targetParticipant": target(),
        "choices": [{"label": "yes", "phrases": ["yes"], "tone": "one"}]}}))
    .unwrap();
    assert_eq!(ok.choices, [DtmfChoice { label: "yes".into(), tone: DtmfTone(1) }]);
}

#[test]
fn play_needs_sources_with_http_uris() {
    let play = |body: Value| play_request(serde_json::from_value(body).unwrap());
    let ok =
        play(json!({"playSources": [{"kind": "file", "playSourceCacheId": "p1", "file": {"uri": "https://a/x.wav"}}],
        "playTo": [], "playOptions": {"loop": true}, "operationContext": "ctx"}))
        .unwrap();
    assert!(ok.looped && ok.play_to.is_empty());
    assert_eq!(ok.tag.operation_context.as_deref(), Some("ctx"));
    assert_eq!(ok.sources, [PlaySource::File { uri: "https://a/x.wav".into(), cache_id: Some("p1".into()) }]);
    for bad in [
        json!({"playSources": []}),
        json!({}),
        json!({"playSources": [{"kind": "file", "file": {"uri": "ftp://x"}}]}),
        json!({"playSources": [{"kind": "video"}]}),
    ] {
        assert_eq!(play(bad.clone()).unwrap_err().subcode, 8523, "{bad}");
    }
}

fn view() -> CallConnectionView {
    CallConnectionView {
        call_connection_id: "cc1".into(),
        server_call_id: "call-1".into(),
        correlation_id: "corr".into(),
        conversation_id: "call-1".into(),
        leg_participant_id: "call-1/8:acs:r_bot".into(),
        callback_uri: "https://app/cb?x=1".into(),
        state: CallConnectionState::Connected,
        source_raw_id: "8:acs:r_bot".into(),
    }
}

#[test]
fn leg_events_become_acs_callbacks() {
    let tag = OperationTag { operation_context: Some("r1".into()), operation_callback_uri: None };
    let kind = LegEventKind::RecognizeCompleted {
        result: ResultInfo::new(200, 8531, "Action completed, max digits received."),
        tones: vec![DtmfTone(1), DtmfTone(2), DtmfTone(11)],
        choice: None,
    };
    let Some(CaOutput::Callback { callback_uri, event_type, data, .. }) = callback(&view(), &LegEvent { tag, kind })
    else {
        panic!()
    };
    assert_eq!(callback_uri, "https://app/cb?x=1");
    assert_eq!(event_type, "Microsoft.Communication.RecognizeCompleted");
    assert_eq!(data["dtmfResult"]["tones"], json!(["one", "two", "pound"]));
    assert_eq!(data["recognitionType"], "dtmf");
    assert_eq!(data["operationContext"], "r1");
    assert_eq!(data["resultInformation"]["subCode"], 8531);
    assert_eq!((data["callConnectionId"].as_str(), data["serverCallId"].as_str()), (Some("cc1"), Some("call-1")));

    let tag = OperationTag { operation_context: None, operation_callback_uri: Some("https://app/op".into()) };
    let event = LegEvent { tag, kind: LegEventKind::PlayCanceled(ResultInfo::canceled()) };
    let Some(CaOutput::Callback { callback_uri, data, .. }) = callback(&view(), &event) else { panic!() };
    assert_eq!(callback_uri, "https://app/op", "operationCallbackUri wins");
    assert_eq!(
        data["resultInformation"],
        json!({"code": 400, "subCode": 8508, "message": "Action failed, the operation was canceled."})
    );
    assert!(data.get("operationContext").is_none());
}
