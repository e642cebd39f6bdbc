//! Hold audio of call queues and meeting lobbies (docs/sip.md "Hold audio"): every WAV file
//! the configuration names — `[[signaling.calls.queues]] hold_audio`, `[sip]
//! lobby_hold_audio`, `[[sip.trunks]] hold_audio` — is read, checked and encoded once at
//! start (a bad file stops the server with an error naming the setting and the file), then
//! registered with the media controller under the name the SIP gateway asks for
//! (`palaver_sip::hold_audio_name`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use palaver_sfu::engine::early_media::ToneLoop;

use crate::config::ServerConfig;

/// The sample rates a hold audio file may have (exact factors of the mixer's 48 kHz).
const RATES: [u32; 4] = [8_000, 16_000, 24_000, 48_000];

/// A hold audio file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{setting} = \"{path}\": {reason}")]
pub struct HoldAudioError {
    setting: String,
    path: String,
    reason: String,
}

/// Every configured hold audio file with the setting that names it (a file named twice is
/// read once).
fn configured(cfg: &ServerConfig) -> Vec<(PathBuf, String)> {
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let queues = cfg.signaling.calls.queues.iter();
    let queues = queues.filter_map(|q| Some((q.hold_audio.clone()?, format!("calls queue `{}` hold_audio", q.app_id))));
    files.extend(queues);
    if let Some(sip) = &cfg.sip {
        files.extend(sip.lobby_hold_audio.clone().map(|p| (p, "[sip] lobby_hold_audio".to_owned())));
        let trunks = sip.trunks.iter();
        files.extend(trunks.filter_map(|t| Some((t.hold_audio.clone()?, format!("trunk `{}` hold_audio", t.name)))));
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|(path, _)| seen.insert(path.clone()));
    files
}

/// Reads one file: 16-bit PCM WAV, mono or stereo, 8, 16, 24 or 48 kHz, 20 ms to 10 min.
pub fn read(path: &Path, setting: &str) -> Result<ToneLoop, HoldAudioError> {
    let fail =
        |reason: String| HoldAudioError { setting: setting.to_owned(), path: path.display().to_string(), reason };
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let pcm = palaver_legs::wav::parse(&bytes).map_err(|e| fail(e.to_string()))?;
    if !RATES.contains(&pcm.rate) {
        return Err(fail(format!("sample rate {} Hz: hold audio must be 8, 16, 24 or 48 kHz", pcm.rate)));
    }
    ToneLoop::from_pcm(&palaver_legs::wav::to_48k(&pcm)).map_err(|e| fail(e.to_string()))
}

/// Reads every configured file; the first bad one is the error.
pub fn load(cfg: &ServerConfig) -> Result<Vec<(String, Arc<ToneLoop>)>, HoldAudioError> {
    let mut loops = Vec::new();
    for (path, setting) in configured(cfg) {
        let tone = read(&path, &setting)?;
        tracing::info!(path = %path.display(), %setting, frames = tone.len(), "hold audio loaded");
        loops.push((palaver_sip::hold_audio_name(&path), Arc::new(tone)));
    }
    Ok(loops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(dir: &Path, name: &str, rate: u32, samples: usize) -> PathBuf {
        let data: Vec<u8> = (0..samples).flat_map(|i| ((i % 50) as i16 * 100).to_le_bytes()).collect();
        let mut bytes = palaver_legs::wav::header(1, rate, data.len() as u32).to_vec();
        bytes.extend(data);
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn configured_files_load_and_bad_ones_name_their_setting_and_file() {
        let dir = std::env::temp_dir().join(format!("palaver-hold-audio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = write_wav(&dir, "queue.wav", 8_000, 8_000);
        let lobby = write_wav(&dir, "lobby.wav", 16_000, 3_200);
        let odd = write_wav(&dir, "odd.wav", 11_025, 11_025);
        let toml = format!(
            "[signaling.calls]\n[[signaling.calls.queues]]\napp_id = \"support\"\nmembers = [\"8:orgid:a\"]\nhold_audio = \"{}\"\n\
             [sip]\nlisten = \"127.0.0.1:0\"\nlobby_hold_audio = \"{}\"\n[[sip.trunks]]\nname = \"carrier\"\n\
             address = \"127.0.0.1:9\"\nallow_from = [\"127.0.0.1\"]\nhold_audio = \"{}\"\n",
            good.display(),
            lobby.display(),
            good.display()
        );
        let cfg = ServerConfig::parse(&toml).unwrap();
        let loops = load(&cfg).unwrap();
        let names: Vec<&str> = loops.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [good.display().to_string(), lobby.display().to_string()], "each file once");
        assert_eq!(loops[0].1.len(), 50, "1 s at 8 kHz: 50 frames of 20 ms");
        assert_eq!(loops[1].1.len(), 10);
        let bad = ServerConfig::parse(&toml.replace(&lobby.display().to_string(), &odd.display().to_string())).unwrap();
        let error = load(&bad).unwrap_err().to_string();
        assert!(error.starts_with("[sip] lobby_hold_audio = \"") && error.contains("11025 Hz"), "{error}");
        let missing = ServerConfig::parse(&toml.replace("queue.wav\"\n[sip]", "nowhere.wav\"\n[sip]")).unwrap();
        let error = load(&missing).unwrap_err().to_string();
        assert!(error.contains("calls queue `support` hold_audio") && error.contains("cannot read it"), "{error}");
        std::fs::write(dir.join("text.wav"), b"not audio").unwrap();
        let text = read(&dir.join("text.wav"), "x").unwrap_err().to_string();
        assert!(text.contains("not a RIFF/WAVE file"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
