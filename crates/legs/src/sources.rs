//! Play sources to 48 kHz mono PCM: `file` uris fetched over http(s) with a size and a time
//! limit (WAV PCM or Ogg Opus, sniffed from the bytes), `text`/`ssml` through espeak-ng, and
//! a cache by `playSourceCacheId` (or by uri when none is given). Failures carry ACS's
//! PlayFailed codes: 8536 download failed, 8535 not a supported format, 8565 speech
//! synthesis failed or disabled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palaver_signaling::gateway::legs::{PlaySource, ResultInfo};

use crate::player::FRAME;
use crate::wav;

/// Limits and engines of play sources.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Largest file accepted (bytes).
    pub max_file_bytes: usize,
    /// Longest a fetch may take.
    pub fetch_timeout: Duration,
    /// The espeak-ng program (`None`: text-to-speech disabled).
    pub espeak: Option<std::path::PathBuf>,
    /// Trust for https sources with a private CA (PEM), besides the system roots.
    pub extra_root_pem: Option<Vec<u8>>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: 16 * 1024 * 1024,
            fetch_timeout: Duration::from_secs(10),
            espeak: Some("espeak-ng".into()),
            extra_root_pem: None,
        }
    }
}

/// Loads and caches play sources (shared by every leg of the process).
#[derive(Debug)]
pub struct Sources {
    config: SourceConfig,
    client: reqwest::Client,
    cache: Mutex<HashMap<String, Arc<[i16]>>>,
}

fn download_failed(message: impl std::fmt::Display) -> ResultInfo {
    ResultInfo::new(400, 8536, format!("Action failed, file could not be downloaded: {message}"))
}

fn bad_format(message: impl std::fmt::Display) -> ResultInfo {
    ResultInfo::new(400, 8535, format!("Action failed, file format is invalid: {message}"))
}

fn tts_failed(message: impl std::fmt::Display) -> ResultInfo {
    ResultInfo::new(400, 8565, format!("Action failed, text-to-speech failed: {message}"))
}

impl Sources {
    pub fn new(config: SourceConfig) -> Self {
        let mut builder =
            reqwest::Client::builder().timeout(config.fetch_timeout).redirect(reqwest::redirect::Policy::limited(3));
        if let Some(cert) = config.extra_root_pem.as_deref().and_then(|pem| reqwest::Certificate::from_pem(pem).ok()) {
            builder = builder.add_root_certificate(cert);
        }
        let client = builder.build().unwrap_or_default();
        Self { config, client, cache: Mutex::default() }
    }

    /// The source's audio at 48 kHz mono.
    pub async fn load(&self, source: &PlaySource) -> Result<Arc<[i16]>, ResultInfo> {
        let key = match source {
            PlaySource::File { uri, cache_id } => cache_id.clone().unwrap_or_else(|| format!("uri:{uri}")),
            PlaySource::Text { cache_id: Some(id), .. } | PlaySource::Ssml { cache_id: Some(id), .. } => id.clone(),
            PlaySource::Text { text, voice_name, .. } => format!("text:{voice_name:?}:{text}"),
            PlaySource::Ssml { ssml, .. } => format!("ssml:{ssml}"),
        };
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(hit);
        }
        let audio: Arc<[i16]> = match source {
            PlaySource::File { uri, .. } => decode(&self.fetch(uri).await?)?.into(),
            PlaySource::Text { text, voice_name, locale, .. } => {
                let voice = locale.as_deref().or(voice_name.as_deref()).and_then(espeak_voice);
                self.speak(text, false, voice).await?.into()
            }
            PlaySource::Ssml { ssml, .. } => self.speak(ssml, true, None).await?.into(),
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= 256 {
                cache.clear();
            }
            cache.insert(key, audio.clone());
        }
        Ok(audio)
    }

    async fn fetch(&self, uri: &str) -> Result<Vec<u8>, ResultInfo> {
        let url = reqwest::Url::parse(uri).map_err(download_failed)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(download_failed(format!("scheme {} is not http(s)", url.scheme())));
        }
        let response = self.client.get(url).send().await.map_err(download_failed)?;
        if !response.status().is_success() {
            return Err(download_failed(format!("HTTP {}", response.status())));
        }
        if response.content_length().is_some_and(|n| n > self.config.max_file_bytes as u64) {
            return Err(download_failed(format!("larger than {} bytes", self.config.max_file_bytes)));
        }
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response.chunk().await.map_err(download_failed)? {
            if body.len() + chunk.len() > self.config.max_file_bytes {
                return Err(download_failed(format!("larger than {} bytes", self.config.max_file_bytes)));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// espeak-ng's CLI writing WAV to stdout (see docs/call-automation.md: no build-time
    /// dependency on libespeak-ng, a crash or hang cannot take the server down, and the
    /// ~20 ms process start is small next to the 20 ms-paced playout).
    async fn speak(&self, text: &str, ssml: bool, voice: Option<&str>) -> Result<Vec<i16>, ResultInfo> {
        let Some(program) = &self.config.espeak else {
            return Err(tts_failed("text-to-speech is disabled on this server (no espeak-ng configured)"));
        };
        if text.trim().is_empty() {
            return Err(ResultInfo::new(400, 8565, "Action failed, the text to speak is empty."));
        }
        let mut command = tokio::process::Command::new(program);
        command.arg("--stdout");
        if ssml {
            command.arg("-m");
        }
        if let Some(voice) = voice {
            command.args(["-v", voice]);
        }
        command.arg("--").arg(text).kill_on_drop(true).stdin(std::process::Stdio::null());
        let output = tokio::time::timeout(self.config.fetch_timeout, command.output())
            .await
            .map_err(|_| tts_failed("espeak-ng timed out"))?
            .map_err(|e| tts_failed(format!("text-to-speech is disabled on this server ({program:?}: {e})")))?;
        if !output.status.success() {
            return Err(tts_failed(format!("espeak-ng exited with {}", output.status)));
        }
        let pcm = wav::parse(&output.stdout).map_err(tts_failed)?;
        Ok(wav::to_48k(&pcm))
    }
}

/// An espeak-ng voice for an ACS locale or voice name (`en-US-NancyNeural` → `en-us`).
fn espeak_voice(hint: &str) -> Option<&'static str> {
    let lower = hint.to_ascii_lowercase();
    [("en-gb", "en-gb"), ("en", "en-us"), ("de", "de"), ("fr", "fr"), ("es", "es"), ("it", "it"), ("nl", "nl")]
        .into_iter()
        .find(|(prefix, _)| lower.starts_with(prefix))
        .map(|(_, voice)| voice)
}

/// WAV or Ogg Opus bytes to 48 kHz mono.
pub fn decode(bytes: &[u8]) -> Result<Vec<i16>, ResultInfo> {
    if wav::is_wav(bytes) {
        let pcm = wav::parse(bytes).map_err(bad_format)?;
        return Ok(wav::to_48k(&pcm));
    }
    if bytes.starts_with(b"OggS") {
        let reader = palaver_sfu::mixer::OggOpusReader::parse(bytes).map_err(bad_format)?;
        let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).map_err(bad_format)?;
        let mut out = Vec::with_capacity(reader.packets.len() * FRAME);
        let mut frame = vec![0i16; 5760];
        for packet in &reader.packets {
            let n = decoder.decode(packet, &mut frame, false).map_err(bad_format)?;
            out.extend_from_slice(&frame[..n]);
        }
        let skip = usize::from(reader.pre_skip).min(out.len());
        out.drain(..skip);
        return Ok(out);
    }
    Err(bad_format("not a WAV (PCM) or Ogg Opus file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_wav_and_refuses_other_bytes_with_8535() {
        let mut bytes = wav::header(1, 8000, 4).to_vec();
        bytes.extend([0, 1, 0, 2]);
        assert_eq!(decode(&bytes).unwrap().len(), 12);
        assert_eq!(decode(b"\xff\xfb\x90mp3 frames").unwrap_err().sub_code, 8535);
        assert_eq!(espeak_voice("en-US-NancyNeural"), Some("en-us"));
    }

    #[tokio::test]
    async fn disabled_speech_and_bad_uris_fail_with_their_codes() {
        let sources = Sources::new(SourceConfig { espeak: None, ..SourceConfig::default() });
        let text = PlaySource::Text { text: "hi".into(), voice_name: None, locale: None, cache_id: None };
        let failure = sources.load(&text).await.unwrap_err();
        assert_eq!(failure.sub_code, 8565);
        assert!(failure.message.contains("disabled"), "{}", failure.message);
        let file = PlaySource::File { uri: "ftp://example.invalid/x.wav".into(), cache_id: None };
        assert_eq!(sources.load(&file).await.unwrap_err().sub_code, 8536);
    }

    #[tokio::test]
    async fn a_file_over_the_size_limit_is_8536_and_one_within_it_plays() {
        let mut wav_bytes = wav::header(1, 8000, 2000).to_vec();
        wav_bytes.extend(std::iter::repeat_n(0u8, 2000));
        let big = vec![0u8; 4096];
        let app = axum::Router::new()
            .route("/ok.wav", axum::routing::get(move || async move { wav_bytes.clone() }))
            .route("/big.wav", axum::routing::get(move || async move { big.clone() }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let sources = Sources::new(SourceConfig { max_file_bytes: 3000, ..SourceConfig::default() });
        let file = |name: &str| PlaySource::File { uri: format!("{base}/{name}"), cache_id: None };
        let too_big = sources.load(&file("big.wav")).await.unwrap_err();
        assert_eq!(too_big.sub_code, 8536, "{}", too_big.message);
        assert!(too_big.message.contains("larger than 3000 bytes"), "{}", too_big.message);
        assert_eq!(sources.load(&file("ok.wav")).await.unwrap().len(), 1000 * 6, "8 kHz to 48 kHz");
    }
}
