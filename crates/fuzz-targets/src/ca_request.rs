//! Call Automation request bodies (`palaver_signaling::api::call_automation::validate`): the
//! first byte picks one of the operations that take a body (create, answer, reject, redirect,
//! connect, transfer, the participant operations and every media operation), the rest is the
//! JSON body, checked as that operation's handler checks it (`CallRequest::json`, the `wire`
//! and media validators) up to where the handler would reach the call machinery.
//!
//! Properties beyond "no panic": a refused body is always `400` with ACS's sub-code `8523`
//! and a message (never a 5xx or another code: the SDK shows those to the application); an
//! accepted body is JSON (or empty, for the operations whose body is optional); the outcome
//! does not depend on whitespace around the JSON.

use palaver_signaling::api::call_automation::validate::{check_body, operations};

/// One input (the body of the libFuzzer target of the same name).
pub fn run(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else { return };
    let all: Vec<&str> = operations().collect();
    let operation = all[selector as usize % all.len()];
    let outcome = check_body(operation, body);
    match &outcome {
        Ok(()) => assert!(
            body.iter().all(u8::is_ascii_whitespace) || serde_json::from_slice::<serde_json::Value>(body).is_ok(),
            "{operation} accepted a body that is not JSON"
        ),
        Err(e) => {
            assert_eq!((e.status, e.subcode), (400, 8523), "{operation}: {e:?}");
            assert!(!e.message.trim().is_empty(), "{operation}: a refusal without a message");
        }
    }
    let mut padded = b" \n".to_vec();
    padded.extend_from_slice(body);
    padded.extend_from_slice(b"\r\n ");
    assert_eq!(check_body(operation, &padded).is_ok(), outcome.is_ok(), "{operation}: whitespace changed the outcome");
}
