//! Chat for palaver-client: [`ChatRest`] calls the ACS Chat REST API (send, edit and delete
//! messages, typing, read receipts, list a thread's history) over HTTPS with the participant's access token, and [`ChatEvent`]
//! reads the real-time chat events the server pushes on the signaling connection (QUIC
//! stream or WebSocket) as `chat.event` frames.

use crate::ClientError;
use crate::webrtc::signaling::{authority, tls_connector};
use palaver_core::protocol::ServerMessage;
use rustls::pki_types::ServerName;
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The Chat API version the client speaks.
pub const CHAT_API_VERSION: &str = "2024-03-07";
const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RESPONSE: usize = 8 << 20;

/// A real-time chat event: the JS SDK event name (`chatMessageReceived`, ...) and its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatEvent {
    pub name: String,
    pub data: Value,
}

impl ChatEvent {
    /// The chat event a server frame carries, if it is one.
    pub fn from_message(message: &ServerMessage) -> Option<Self> {
        match message {
            ServerMessage::ChatEvent { event, data } => Some(Self { name: event.clone(), data: data.clone() }),
            _ => None,
        }
    }
}

/// One chat message as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessageInfo {
    pub id: String,
    /// `text`, `html`, or a system type (`participantAdded`, `topicUpdated`, ...).
    pub kind: String,
    pub sequence_id: u64,
    pub content: Option<String>,
    pub sender_raw_id: Option<String>,
    pub sender_display_name: Option<String>,
}

/// The Chat REST API of one server, as one user.
#[derive(Clone)]
pub struct ChatRest {
    host_port: String,
    server_name: String,
    connector: tokio_rustls::TlsConnector,
    token: String,
}

impl std::fmt::Debug for ChatRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatRest").field("host", &self.host_port).finish_non_exhaustive()
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl ChatRest {
    /// `base_url` is the server's `https://host:port`; `ca_pem` the CA to trust; `token` a
    /// palaver access token with a chat scope.
    pub fn new(base_url: &str, ca_pem: &str, token: &str) -> Result<Self, ClientError> {
        let (host_port, server_name) = authority(base_url)?;
        Ok(Self { host_port, server_name, connector: tls_connector(ca_pem)?, token: token.to_string() })
    }

    /// Send a text message to `thread_id`; returns its id.
    pub async fn send_message(
        &self,
        thread_id: &str,
        content: &str,
        display_name: Option<&str>,
    ) -> Result<String, ClientError> {
        let mut body = serde_json::json!({ "content": content, "type": "text" });
        if let Some(name) = display_name {
            body["senderDisplayName"] = Value::String(name.to_string());
        }
        let answer = self.call("POST", &self.thread_path(thread_id, "messages"), Some(&body), 201).await?;
        answer["id"].as_str().map(str::to_string).ok_or_else(|| ClientError::Protocol("send answer has no id".into()))
    }

    /// Edit the user's own message `message_id` (new text content).
    pub async fn edit_message(&self, thread_id: &str, message_id: &str, content: &str) -> Result<(), ClientError> {
        let path = self.message_path(thread_id, message_id);
        self.call("PATCH", &path, Some(&serde_json::json!({ "content": content })), 204).await.map(drop)
    }

    /// Delete the user's own message `message_id` (it stays in the history as a tombstone).
    pub async fn delete_message(&self, thread_id: &str, message_id: &str) -> Result<(), ClientError> {
        self.call("DELETE", &self.message_path(thread_id, message_id), None, 204).await.map(drop)
    }

    /// Tell the thread the user is typing.
    pub async fn send_typing(&self, thread_id: &str, display_name: Option<&str>) -> Result<(), ClientError> {
        let body = match display_name {
            Some(name) => serde_json::json!({ "senderDisplayName": name }),
            None => serde_json::json!({}),
        };
        self.call("POST", &self.thread_path(thread_id, "typing"), Some(&body), 200).await.map(drop)
    }

    /// Mark `message_id` (and everything before it) as read.
    pub async fn send_read_receipt(&self, thread_id: &str, message_id: &str) -> Result<(), ClientError> {
        let body = serde_json::json!({ "chatMessageId": message_id });
        self.call("POST", &self.thread_path(thread_id, "readReceipts"), Some(&body), 200).await.map(drop)
    }

    fn thread_path(&self, thread_id: &str, tail: &str) -> String {
        format!("/chat/threads/{}/{tail}?api-version={CHAT_API_VERSION}", percent_encode(thread_id))
    }

    fn message_path(&self, thread_id: &str, message_id: &str) -> String {
        self.thread_path(thread_id, &format!("messages/{}", percent_encode(message_id)))
    }

    /// The whole history of `thread_id` the user may read, newest first (follows `nextLink`).
    pub async fn list_messages(&self, thread_id: &str) -> Result<Vec<ChatMessageInfo>, ClientError> {
        let mut next = Some(format!("/chat/threads/{}/messages?maxPageSize=200", percent_encode(thread_id)));
        let mut out = Vec::new();
        while let Some(link) = next.take() {
            let sep = if link.contains('?') { '&' } else { '?' };
            let page = self.call("GET", &format!("{link}{sep}api-version={CHAT_API_VERSION}"), None, 200).await?;
            for m in page["value"].as_array().into_iter().flatten() {
                out.push(ChatMessageInfo {
                    id: m["id"].as_str().unwrap_or_default().to_string(),
                    kind: m["type"].as_str().unwrap_or_default().to_string(),
                    sequence_id: m["sequenceId"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0),
                    content: m["content"]["message"].as_str().map(str::to_string),
                    sender_raw_id: m["senderCommunicationIdentifier"]["rawId"].as_str().map(str::to_string),
                    sender_display_name: m["senderDisplayName"].as_str().map(str::to_string),
                });
            }
            next = page["nextLink"].as_str().map(str::to_string);
        }
        Ok(out)
    }

    /// One HTTP/1.1 request over a fresh TLS connection; the JSON answer (`Null` when empty)
    /// if the status is `expect`, otherwise the ACS error as [`ClientError::Refused`].
    async fn call(&self, method: &str, path: &str, body: Option<&Value>, expect: u16) -> Result<Value, ClientError> {
        let exchange = async {
            let tcp = tokio::net::TcpStream::connect(&self.host_port)
                .await
                .map_err(|e| ClientError::Signaling(e.to_string()))?;
            let name = ServerName::try_from(self.server_name.clone())
                .map_err(|_| ClientError::InvalidArgument(format!("bad server name {}", self.server_name)))?;
            let mut tls = self.connector.connect(name, tcp).await.map_err(|e| ClientError::Tls(e.to_string()))?;
            let payload = body.map(Value::to_string).unwrap_or_default();
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
                self.host_port,
                self.token,
                payload.len()
            );
            tls.write_all(request.as_bytes()).await.map_err(|e| ClientError::Signaling(e.to_string()))?;
            let mut response = Vec::new();
            let mut limited = (&mut tls).take(MAX_RESPONSE as u64);
            // A peer that closes without TLS close_notify still delivered the whole answer.
            if let Err(e) = limited.read_to_end(&mut response).await
                && e.kind() != std::io::ErrorKind::UnexpectedEof
            {
                return Err(ClientError::Signaling(e.to_string()));
            }
            Ok::<_, ClientError>(response)
        };
        let response = tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| ClientError::Timeout(TIMEOUT))??;
        let (status, json) = parse_response(&response)?;
        if status == expect {
            return Ok(json);
        }
        let code = json["error"]["code"].as_str().unwrap_or("HttpError").to_string();
        let message = json["error"]["message"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {status}"));
        Err(ClientError::Refused { code, message })
    }
}

/// Status and JSON body of a raw HTTP/1.1 response (`Content-Length` or chunked body).
fn parse_response(raw: &[u8]) -> Result<(u16, Value), ClientError> {
    let bad = |why: &str| ClientError::Protocol(format!("unreadable HTTP response: {why}"));
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no header end"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("header is not UTF-8"))?;
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("chunked body"))?;
    }
    let json =
        if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).map_err(|e| bad(&e.to_string()))? };
    Ok((status, json))
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).ok()?.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_with_length_or_chunks() {
        let plain =
            b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 10\r\n\r\n{\"id\":\"1\"}";
        assert_eq!(parse_response(plain).unwrap(), (201, serde_json::json!({"id": "1"})));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n4\r\n:1}\n\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (200, serde_json::json!({"a": 1})));
        assert_eq!(parse_response(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap(), (204, Value::Null));
        assert!(parse_response(b"garbage").is_err());
        assert_eq!(percent_encode("19:a@thread.v2"), "19%3Aa%40thread.v2");
    }

    #[test]
    fn chat_frames_become_events() {
        let msg: ServerMessage = serde_json::from_value(serde_json::json!({
            "type": "chat.event", "event": "chatMessageReceived", "data": {"message": "hi"}
        }))
        .unwrap();
        let e = ChatEvent::from_message(&msg).unwrap();
        assert_eq!((e.name.as_str(), &e.data["message"]), ("chatMessageReceived", &serde_json::json!("hi")));
    }
}
