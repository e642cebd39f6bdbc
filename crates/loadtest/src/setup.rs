//! Getting ready to load a server: parse the connection string, talk to its REST API signed with
//! the access key (HMAC, as the ACS SDKs sign), create identities with tokens, mint a directory
//! organizer through the dev IdP and create meetings, read a token file, and discover the QUIC
//! endpoint. Only the server named by the connection string is ever contacted.

use crate::scenario::{RoomKind, Scenario, Seat};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use palaver_core::protocol::{JoinTarget, LobbyBypass, PolicyUpdate};
use palaver_signaling::auth::hmac::{authorization_header, content_hash};
use reqwest::Method;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Identities created concurrently at most.
const SETUP_CONCURRENCY: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("connection string: {0}")]
    ConnectionString(String),
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("CA certificate {path}: {source}")]
    Ca { path: String, source: reqwest::Error },
    #[error("HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("{method} {path}: {source}")]
    Request { method: String, path: String, source: reqwest::Error },
    #[error("{method} {path} answered HTTP {status}: {body}")]
    Refused { method: String, path: String, status: u16, body: String },
    #[error("{what}: unexpected answer {body}")]
    Unexpected { what: &'static str, body: String },
    #[error("token file {path} has {have} tokens, the scenario needs {need}")]
    NotEnoughTokens { path: String, have: usize, need: usize },
    #[error("setup task failed: {0}")]
    Task(String),
}

/// `endpoint=https://host:port/;accesskey=<base64>` (keys are case-insensitive).
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// Base URL without trailing slash, e.g. `https://127.0.0.1:8443`.
    pub endpoint: String,
    /// `host:port` as signed in the `host` header.
    pub host: String,
    pub access_key: Vec<u8>,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionString").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl std::str::FromStr for ConnectionString {
    type Err = SetupError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |m: &str| SetupError::ConnectionString(m.to_string());
        let (mut endpoint, mut key) = (None, None);
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| bad("each part must be key=value"))?;
            match k.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(v.trim().trim_end_matches('/').to_string()),
                "accesskey" => key = Some(v.trim().to_string()),
                _ => {}
            }
        }
        let endpoint = endpoint.ok_or_else(|| bad("missing endpoint="))?;
        let host = endpoint
            .strip_prefix("https://")
            .ok_or_else(|| bad("endpoint must be an https:// URL"))?
            .split('/')
            .next()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("endpoint has no host"))?
            .to_string();
        let access_key =
            B64.decode(key.ok_or_else(|| bad("missing accesskey="))?).map_err(|_| bad("accesskey is not base64"))?;
        if access_key.is_empty() {
            return Err(bad("accesskey is empty"));
        }
        Ok(Self { endpoint, host, access_key })
    }
}

/// How to trust the server's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// A CA certificate (PEM), e.g. the one `make run` prints.
    Ca(String),
    /// The system roots.
    System,
    /// `--insecure`: no certificate check (development only; said in the report).
    Insecure,
}

/// A signed REST client for one server.
#[derive(Clone)]
pub struct Api {
    conn: Arc<ConnectionString>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(conn: ConnectionString, trust: &Trust) -> Result<Self, SetupError> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
        builder = match trust {
            Trust::Ca(pem) => builder.add_root_certificate(
                reqwest::Certificate::from_pem(pem.as_bytes())
                    .map_err(|source| SetupError::Ca { path: "(pem)".into(), source })?,
            ),
            Trust::System => builder,
            Trust::Insecure => builder.danger_accept_invalid_certs(true),
        };
        Ok(Self { conn: Arc::new(conn), http: builder.build().map_err(SetupError::Client)? })
    }

    /// A client for unsigned requests only (discovery), when no access key is known.
    pub fn anonymous(endpoint: &str, trust: &Trust) -> Result<Self, SetupError> {
        let host = endpoint.trim_start_matches("https://").split('/').next().unwrap_or_default().to_string();
        let conn =
            ConnectionString { endpoint: endpoint.trim_end_matches('/').to_string(), host, access_key: Vec::new() };
        Self::new(conn, trust)
    }

    pub fn endpoint(&self) -> &str {
        &self.conn.endpoint
    }

    /// An HMAC-signed request; returns the JSON body of a 2xx answer.
    pub async fn signed(&self, method: Method, path_and_query: &str, body: &Value) -> Result<Value, SetupError> {
        if self.conn.access_key.is_empty() {
            return Err(SetupError::ConnectionString("signed requests need a connection string with accesskey".into()));
        }
        let body = if body.is_null() { String::new() } else { body.to_string() };
        let date = httpdate::fmt_http_date(SystemTime::now());
        let hash = content_hash(body.as_bytes());
        let auth =
            authorization_header(&self.conn.access_key, method.as_str(), path_and_query, &date, &self.conn.host, &hash);
        let resp = self
            .http
            .request(method.clone(), format!("{}{path_and_query}", self.conn.endpoint))
            .header("x-ms-date", date)
            .header("x-ms-content-sha256", hash)
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|source| SetupError::Request {
                method: method.to_string(),
                path: path_and_query.into(),
                source,
            })?;
        answer(method, path_and_query, resp).await
    }

    /// An unauthenticated GET (discovery).
    pub async fn get(&self, path: &str) -> Result<Value, SetupError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.conn.endpoint))
            .send()
            .await
            .map_err(|source| SetupError::Request { method: "GET".into(), path: path.into(), source })?;
        answer(Method::GET, path, resp).await
    }

    /// A new external user with a `voip` token; returns the token.
    pub async fn create_user_token(&self) -> Result<String, SetupError> {
        let v = self
            .signed(Method::POST, "/identities?api-version=2023-10-01", &json!({ "createTokenWithScopes": ["voip"] }))
            .await?;
        v["accessToken"]["token"]
            .as_str()
            .map(str::to_string)
            .ok_or(SetupError::Unexpected { what: "create identity", body: v.to_string() })
    }

    /// A directory user's palaver token (dev IdP mint + exchange); returns (raw id, token).
    pub async fn directory_user_token(&self, oid: &str, name: &str) -> Result<(String, String), SetupError> {
        let minted = self.signed(Method::POST, "/dev-idp/token", &json!({ "oid": oid, "name": name })).await?;
        let body = json!({ "token": minted["token"], "appId": minted["appId"], "userId": oid });
        let v = self.signed(Method::POST, "/teamsUser/:exchangeAccessToken?api-version=2023-10-01", &body).await?;
        let token =
            v["token"].as_str().ok_or(SetupError::Unexpected { what: "token exchange", body: v.to_string() })?;
        Ok((format!("8:orgid:{oid}"), token.to_string()))
    }

    /// A meeting organized by `organizer` that lets everyone in, sized for `participants`.
    pub async fn create_meeting(
        &self,
        organizer: &str,
        subject: &str,
        participants: u32,
    ) -> Result<String, SetupError> {
        let policy = PolicyUpdate {
            lobby_bypass: Some(LobbyBypass::Everyone),
            allow_external_users: Some(true),
            max_participants: Some(participants.clamp(1, 1_000)),
            ..PolicyUpdate::default()
        };
        let body = json!({ "subject": subject, "organizer": organizer, "policy": policy });
        let v = self.signed(Method::POST, "/meetings", &body).await?;
        v["joinUrl"]
            .as_str()
            .map(str::to_string)
            .ok_or(SetupError::Unexpected { what: "create meeting", body: v.to_string() })
    }

    /// The server's QUIC endpoint (`GET /quic`).
    pub async fn quic_address(&self) -> Result<SocketAddr, SetupError> {
        let v = self.get("/quic").await?;
        v["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or(SetupError::Unexpected { what: "QUIC discovery", body: v.to_string() })
    }
}

async fn answer(method: Method, path: &str, resp: reqwest::Response) -> Result<Value, SetupError> {
    let status = resp.status();
    let text = resp.text().await.map_err(|source| SetupError::Request {
        method: method.to_string(),
        path: path.into(),
        source,
    })?;
    if !status.is_success() {
        let body: String = text.chars().take(300).collect();
        return Err(SetupError::Refused {
            method: method.to_string(),
            path: path.into(),
            status: status.as_u16(),
            body,
        });
    }
    Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
}

/// Everything a participant needs to join.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub seat: Seat,
    pub token: String,
    pub target: JoinTarget,
}

/// Read a token file: one access token per line; blank lines and `#` comments skipped.
pub fn read_token_file(path: &Path) -> Result<Vec<String>, SetupError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| SetupError::Read { path: path.display().to_string(), source })?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect())
}

/// Deterministic group id of room `room` in run `run_id`, so every shard finds the same call.
pub fn group_id(run_id: &str, room: u32) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("palaver-load/{run_id}/room/{room}").as_bytes()).to_string()
}

/// Tickets from a token file: seat `g` takes token `g` (so shards with the same file agree);
/// rooms are group calls of the run.
pub fn tickets_from_tokens(
    tokens: &[String],
    seats: &[Seat],
    run_id: &str,
    path: &Path,
) -> Result<Vec<Ticket>, SetupError> {
    let need = seats.iter().map(|s| s.global as usize + 1).max().unwrap_or(0);
    if tokens.len() < need {
        return Err(SetupError::NotEnoughTokens { path: path.display().to_string(), have: tokens.len(), need });
    }
    Ok(seats
        .iter()
        .map(|&seat| Ticket {
            seat,
            token: tokens[seat.global as usize].clone(),
            target: JoinTarget::GroupCall { group_id: group_id(run_id, seat.room) },
        })
        .collect())
}

/// Create identities (and meetings) for this shard's seats. In a meeting, slot 0 is the
/// directory organizer; meetings are created by the shard that holds slot 0 of the room, so with
/// several shards use group calls or `--tokens` (a meeting link is not shared between
/// processes).
pub async fn create_tickets(
    api: &Api,
    scenario: &Scenario,
    seats: &[Seat],
    run_id: &str,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<Ticket>, SetupError> {
    let mut targets = std::collections::HashMap::new();
    let mut organizer_tokens = std::collections::HashMap::new();
    if scenario.room_kind == RoomKind::Meeting {
        let rooms: std::collections::BTreeSet<u32> = seats.iter().map(|s| s.room).collect();
        for room in rooms {
            let oid = uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_URL,
                format!("palaver-load/{run_id}/organizer/{room}").as_bytes(),
            );
            let (raw_id, token) = api.directory_user_token(&oid.to_string(), &format!("Load Organizer {room}")).await?;
            let url = api
                .create_meeting(
                    &raw_id,
                    &format!("palaver-load {} room {room}", scenario.name),
                    scenario.participants_per_room,
                )
                .await?;
            targets.insert(room, JoinTarget::MeetingLink { join_url: url });
            organizer_tokens.insert(room, token);
        }
    }
    let target_of = |room: u32| {
        targets.get(&room).cloned().unwrap_or_else(|| JoinTarget::GroupCall { group_id: group_id(run_id, room) })
    };
    let mut tickets = Vec::with_capacity(seats.len());
    let mut pending = tokio::task::JoinSet::new();
    let mut queue = seats.iter().copied();
    let mut done = 0;
    loop {
        while pending.len() < SETUP_CONCURRENCY {
            let Some(seat) = queue.next() else { break };
            if let Some(token) = (seat.slot == 0).then(|| organizer_tokens.get(&seat.room)).flatten() {
                tickets.push(Ticket { seat, token: token.clone(), target: target_of(seat.room) });
                continue;
            }
            let api = api.clone();
            pending.spawn(async move { (seat, api.create_user_token().await) });
        }
        let Some(joined) = pending.join_next().await else { break };
        let (seat, token) = joined.map_err(|e| SetupError::Task(e.to_string()))?;
        tickets.push(Ticket { seat, token: token?, target: target_of(seat.room) });
        done += 1;
        progress(done);
    }
    // Join order is the seats' order (organizers first).
    let order: std::collections::HashMap<u32, usize> = seats.iter().enumerate().map(|(i, s)| (s.global, i)).collect();
    tickets.sort_by_key(|t| order[&t.seat.global]);
    Ok(tickets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Preset, Shard};

    #[test]
    fn connection_string_parses_like_the_sdk() {
        let c: ConnectionString = "endpoint=https://127.0.0.1:8443/;accesskey=c2VjcmV0".parse().unwrap();
        assert_eq!(
            (c.endpoint.as_str(), c.host.as_str(), c.access_key.as_slice()),
            ("https://127.0.0.1:8443", "127.0.0.1:8443", &b"secret"[..])
        );
        let c: ConnectionString = " AccessKey=c2VjcmV0 ; Endpoint=https://palaver.example ".parse().unwrap();
        assert_eq!(c.host, "palaver.example");
        assert!(!format!("{c:?}").contains("c2VjcmV0"), "the key never reaches logs");
        for bad in [
            "",
            "endpoint=https://h",
            "accesskey=c2VjcmV0",
            "endpoint=http://h;accesskey=c2VjcmV0",
            "endpoint=https://;accesskey=c2VjcmV0",
            "endpoint=https://h;accesskey=***",
            "endpoint=https://h;accesskey=",
            "garbage",
        ] {
            assert!(bad.parse::<ConnectionString>().is_err(), "{bad}");
        }
    }

    #[test]
    fn token_files_map_seats_to_lines_and_must_be_long_enough() {
        let dir = std::env::temp_dir().join(format!("palaver-load-tokens-{}", uuid::Uuid::new_v4()));
        std::fs::write(&dir, "# tokens\nt0\n\n t1 \nt2\nt3\nt4\nt5\n").unwrap();
        let tokens = read_token_file(&dir).unwrap();
        assert_eq!(tokens, ["t0", "t1", "t2", "t3", "t4", "t5"]);
        let scenario = Preset::Smoke.scenario();
        let seats = Shard { index: 1, count: 2 }.seats(&scenario);
        let tickets = tickets_from_tokens(&tokens, &seats, "run", &dir).unwrap();
        for t in &tickets {
            assert_eq!(t.token, format!("t{}", t.seat.global));
            assert_eq!(t.target, JoinTarget::GroupCall { group_id: group_id("run", t.seat.room) });
        }
        let err = tickets_from_tokens(&tokens[..4], &seats, "run", &dir).unwrap_err();
        assert!(matches!(err, SetupError::NotEnoughTokens { have: 4, need: 6, .. }), "{err}");
        std::fs::remove_file(&dir).unwrap();
        assert!(read_token_file(&dir).is_err());
    }

    #[test]
    fn group_ids_are_per_room_and_stable() {
        assert_eq!(group_id("a", 1), group_id("a", 1));
        assert_ne!(group_id("a", 1), group_id("a", 2));
        assert_ne!(group_id("a", 1), group_id("b", 1));
        uuid::Uuid::parse_str(&group_id("a", 1)).unwrap();
    }
}
