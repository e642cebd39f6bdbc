//! An https subscription endpoint with a self-signed certificate is reached only through its
//! `ca_file`: without it the handshake fails (and nothing is delivered), with it the
//! subscription validates and the event arrives.

use palaver_core::{EventPublisher, SystemEvent};
use palaver_events::{DeliveryConfig, Events, EventsConfig, EventsOptions, SubscriptionConfig, spawn_delivery};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A minimal HTTPS/1.1 receiver: answers the validation handshake, 200 to the rest; records
/// every request body.
async fn https_receiver(seen: Arc<Mutex<Vec<String>>>) -> (u16, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_pem = certified.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    let Ok(n) = tls.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
                            .unwrap_or(0);
                        break (i + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let Ok(n) = tls.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
                seen.lock().unwrap().push(body.clone());
                let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let answer = match parsed[0]["data"]["validationCode"].as_str() {
                    Some(code) => json!({ "validationResponse": code }).to_string(),
                    None => String::new(),
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, cert_pem)
}

fn config(name: &str, endpoint: String, ca_file: String) -> EventsConfig {
    EventsConfig {
        subscriptions: vec![SubscriptionConfig { name: name.into(), endpoint, ca_file, ..Default::default() }],
        delivery: DeliveryConfig {
            poll_interval_ms: 20,
            base_backoff_ms: 50,
            max_backoff_ms: 200,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn a_self_signed_receiver_is_trusted_through_ca_file_only() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (port, cert_pem) = https_receiver(seen.clone()).await;
    let dir = std::env::temp_dir().join(format!("palaver-events-https-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("receiver.pem");
    std::fs::write(&ca_file, cert_pem).unwrap();
    let endpoint = format!("https://localhost:{port}/hook");

    // without the CA: the handshake fails, the subscription is marked Failed, nothing delivered
    let untrusted =
        Events::open_in_memory(EventsOptions::new(config("no-ca", endpoint.clone(), String::new()), "r")).unwrap();
    let task = spawn_delivery(untrusted.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = untrusted.subscription("no-ca").unwrap().unwrap();
        if s.validation_state == "Failed" {
            assert!(s.last_error.unwrap_or_default().contains("certificate"), "a TLS trust failure");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no failed handshake");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.stop();
    assert!(seen.lock().unwrap().is_empty());

    // with it: validated and delivered
    let ca = ca_file.to_string_lossy().to_string();
    let events = Events::open_in_memory(EventsOptions::new(config("with-ca", endpoint, ca), "r")).unwrap();
    let task = spawn_delivery(events.clone());
    events
        .publish(SystemEvent {
            event_type: "Microsoft.Communication.IncomingCall".into(),
            subject: "/s".into(),
            data: json!({"x": 1}),
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while events.subscription("with-ca").unwrap().unwrap().deliveries.delivered < 1 {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", events.subscription("with-ca").unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bodies = seen.lock().unwrap().clone();
    assert!(bodies[0].contains("SubscriptionValidationEvent"));
    assert!(bodies[1].contains("Microsoft.Communication.IncomingCall"));
    task.stop();
    let _ = std::fs::remove_dir_all(dir);
}
