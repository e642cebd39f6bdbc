//! Media streaming to a voice bot: palaver connects out to the app's `transportUrl` as a
//! WebSocket client and speaks ACS's message format (reference §3.10): one `AudioMetadata`,
//! then an `AudioData` message per 20 ms of the leg's mix (PCM16LE mono at 16 or 24 kHz,
//! base64; `silent` when all zero) — or, unmixed (`audioChannelType: "unmixed"`), one
//! `AudioData` per participant heard in each 20 ms, naming it by `participantRawID` — and, when
//! `enableDtmfTones` asks, a `DtmfData` message per tone a participant sends (`data` is the
//! tone's character, `0`-`9`, `*`, `#`, `A`-`D`, as the .NET and Java SDKs' `DtmfData` parse it,
//! with `timestamp` and `participantRawID`). Bidirectional: `AudioData` the app sends back (the
//! samples send PascalCase keys, so keys are read case-insensitively) is played into the
//! call; `StopAudio` drops what is buffered. `ws://` and `wss://` (webpki roots).

use std::sync::Arc;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use palaver_signaling::gateway::legs::{ResultInfo, StreamRequest};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// What the app sent back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// PCM at 48 kHz mono, to play.
    Audio(Vec<i16>),
    /// Drop the buffered audio.
    StopAudio,
    /// The socket closed or failed.
    Closed(Option<String>),
}

/// What the leg hands the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// 20 ms at the stream's rate, at `at_ms` (Unix ms); of `participant` (a raw id) when the
    /// stream is unmixed.
    Audio { at_ms: u64, samples: Vec<i16>, participant: Option<String> },
    /// One DTMF tone (its character) of `participant`.
    Dtmf { at_ms: u64, tone: char, participant: String },
}

impl Outgoing {
    /// The message the app reads.
    pub fn message(&self) -> String {
        match self {
            Outgoing::Audio { at_ms, samples, participant } => audio_data(*at_ms, samples, participant.as_deref()),
            Outgoing::Dtmf { at_ms, tone, participant } => dtmf_data(*at_ms, *tone, participant),
        }
    }
}

/// The leg's side of a running stream.
#[derive(Debug)]
pub struct Stream {
    /// What to send (20 ms frames at the stream's rate, tones); the send never blocks the leg.
    pub frames: mpsc::Sender<Outgoing>,
    pub inbound: mpsc::UnboundedReceiver<Inbound>,
    pub sample_rate: u32,
    /// One `AudioData` per participant (from the per-source tap) instead of the mix.
    pub unmixed: bool,
    /// `DtmfData` messages are sent.
    pub dtmf: bool,
    pub task: tokio::task::JoinHandle<()>,
}

fn failed(message: impl std::fmt::Display) -> ResultInfo {
    ResultInfo::new(500, 8581, format!("Action failed, media streaming could not connect: {message}"))
}

fn timestamp(timestamp_ms: u64) -> String {
    let time = chrono::DateTime::from_timestamp_millis(timestamp_ms as i64).unwrap_or_default();
    time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The `AudioData` message of one frame (`participantRawID` when unmixed).
pub fn audio_data(timestamp_ms: u64, samples: &[i16], participant: Option<&str>) -> String {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let silent = samples.iter().all(|&s| s == 0);
    let mut data = json!({
        "timestamp": timestamp(timestamp_ms),
        "data": base64::engine::general_purpose::STANDARD.encode(bytes),
        "silent": silent,
    });
    if let Some(participant) = participant {
        data["participantRawID"] = json!(participant);
    }
    json!({"kind": "AudioData", "audioData": data}).to_string()
}

/// The `DtmfData` message of one tone.
pub fn dtmf_data(timestamp_ms: u64, tone: char, participant: &str) -> String {
    json!({"kind": "DtmfData", "dtmfData": {
        "data": tone.to_string(), "timestamp": timestamp(timestamp_ms), "participantRawID": participant,
    }})
    .to_string()
}

/// The character of an RFC 4733 DTMF event (0-9, `*`, `#`, A-D).
pub fn tone_char(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// Reads an app message (keys compared case-insensitively).
pub fn parse_inbound(text: &str, sample_rate: u32) -> Option<Inbound> {
    let value: Value = serde_json::from_str(text).ok()?;
    let get = |v: &Value, key: &str| -> Option<Value> {
        v.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.clone())
    };
    let kind = get(&value, "kind")?;
    match kind.as_str()? {
        k if k.eq_ignore_ascii_case("AudioData") => {
            let data = get(&get(&value, "audioData")?, "data")?;
            let bytes = base64::engine::general_purpose::STANDARD.decode(data.as_str()?).ok()?;
            let samples: Vec<i16> = bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
            Some(Inbound::Audio(crate::wav::resample(&samples, sample_rate, 48_000)))
        }
        k if k.eq_ignore_ascii_case("StopAudio") => Some(Inbound::StopAudio),
        _ => None,
    }
}

type Socket = Box<dyn AsyncStream>;
trait AsyncStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> AsyncStream for T {}

async fn open(url: &str) -> Result<Socket, ResultInfo> {
    let parsed = reqwest::Url::parse(url).map_err(failed)?;
    let host = parsed.host_str().ok_or_else(|| failed("no host"))?.to_owned();
    let tls = match parsed.scheme() {
        "ws" => false,
        "wss" => true,
        other => return Err(failed(format!("scheme {other} is not ws or wss"))),
    };
    let port = parsed.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(failed)?;
    let _ = tcp.set_nodelay(true);
    if !tls {
        return Ok(Box::new(tcp));
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host).map_err(failed)?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(failed)?;
    Ok(Box::new(stream))
}

/// Connects, sends `AudioMetadata` and runs the socket until the leg drops `frames`.
pub async fn start(request: &StreamRequest, subscription_id: &str) -> Result<Stream, ResultInfo> {
    let socket = open(&request.transport_url).await?;
    let (ws, _) = tokio_tungstenite::client_async(request.transport_url.as_str(), socket).await.map_err(failed)?;
    let (mut sink, mut source) = ws.split();
    let length = request.sample_rate / 50 * 2;
    let metadata = json!({"kind": "AudioMetadata", "audioMetadata": {
        "subscriptionId": subscription_id, "encoding": "PCM", "sampleRate": request.sample_rate,
        "channels": 1, "length": length}});
    sink.send(Message::text(metadata.to_string())).await.map_err(failed)?;
    // 1 s of 20 ms frames of up to 5 participants.
    let (frames, mut frame_rx) = mpsc::channel::<Outgoing>(250);
    let (inbound_tx, inbound) = mpsc::unbounded_channel();
    let (rate, bidirectional) = (request.sample_rate, request.bidirectional);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                frame = frame_rx.recv() => {
                    let Some(outgoing) = frame else { break };
                    if let Err(error) = sink.send(Message::text(outgoing.message())).await {
                        let _ = inbound_tx.send(Inbound::Closed(Some(error.to_string())));
                        return;
                    }
                }
                message = source.next() => match message {
                    Some(Ok(Message::Text(text))) if bidirectional => {
                        if let Some(inbound) = parse_inbound(text.as_str(), rate) {
                            let _ = inbound_tx.send(inbound);
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => {
                        let _ = inbound_tx.send(Inbound::Closed(None));
                        return;
                    }
                    Some(Err(error)) => {
                        let _ = inbound_tx.send(Inbound::Closed(Some(error.to_string())));
                        return;
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    });
    Ok(Stream { frames, inbound, sample_rate: rate, unmixed: request.unmixed, dtmf: request.dtmf, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_data_round_trips_and_pascal_case_is_read() {
        let text = audio_data(1_700_000_000_000, &[1, -1, 0], None);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["kind"], "AudioData");
        assert_eq!(value["audioData"]["silent"], false);
        assert!(value["audioData"].get("participantRawID").is_none(), "mixed audio names nobody");
        let data = value["audioData"]["data"].as_str().unwrap();
        let back = format!(r#"{{"Kind":"AudioData","AudioData":{{"Data":"{data}"}},"StopAudio":null}}"#);
        let Some(Inbound::Audio(samples)) = parse_inbound(&back, 16_000) else { panic!() };
        assert_eq!(samples.len(), 9, "16 kHz to 48 kHz");
        let stop = r#"{"Kind":"StopAudio","AudioData":null,"StopAudio":{}}"#;
        assert_eq!(parse_inbound(stop, 16_000), Some(Inbound::StopAudio));
        assert_eq!(parse_inbound("{}", 16_000), None);
    }

    #[test]
    fn unmixed_audio_names_its_participant_and_dtmf_data_is_the_sdks_shape() {
        let text = audio_data(1_700_000_000_000, &[0, 0], Some("8:acs:res_u1"));
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["audioData"]["participantRawID"], "8:acs:res_u1");
        assert_eq!(value["audioData"]["silent"], true);
        assert_eq!(value["audioData"]["timestamp"], "2023-11-14T22:13:20.000Z");
        let text = dtmf_data(1_700_000_000_000, '#', "8:acs:res_u1");
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["kind"], "DtmfData");
        assert_eq!(value["dtmfData"]["data"], "#");
        assert_eq!(value["dtmfData"]["participantRawID"], "8:acs:res_u1");
        assert_eq!(value["dtmfData"]["timestamp"], "2023-11-14T22:13:20.000Z");
        let chars: String = (0..=16).filter_map(tone_char).collect();
        assert_eq!(chars, "0123456789*#ABCD");
    }
}
