//! The recorder: what the leg hears (the conference mix, every participant but the leg) to a
//! file under the recordings directory, written durably. WAV is 16 kHz mono PCM16; Ogg Opus
//! is the 48 kHz mix re-encoded at 32 kbit/s. Audio goes to `<id>.<ext>.part` as it comes
//! (paused time is skipped); `finish` patches the WAV header, fsyncs the file, renames it to
//! `<id>.<ext>` and fsyncs the directory, so a crash leaves either no file or a whole one.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use palaver_sfu::mixer::OggOpusWriter;
use palaver_signaling::gateway::legs::{RecordingFile, RecordingFormat};

use crate::player::FRAME;
use crate::wav;

/// WAV recordings' sample rate.
pub const WAV_RATE: u32 = 16_000;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("recording I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("recording encoder: {0}")]
    Opus(#[from] opus::Error),
    #[error("recording file: {0}")]
    Ogg(#[from] palaver_sfu::mixer::OggError),
}

enum Sink {
    Wav { out: BufWriter<File>, data_len: u64, scratch: Vec<i16> },
    Ogg { out: OggOpusWriter<BufWriter<File>>, encoder: opus::Encoder, packet: Vec<u8> },
}

/// One recording in progress (see the module docs).
pub struct Recorder {
    id: String,
    format: RecordingFormat,
    part: PathBuf,
    done: PathBuf,
    sink: Sink,
    paused: bool,
    frames: u64,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("id", &self.id).field("frames", &self.frames).finish_non_exhaustive()
    }
}

/// The final path of a recording's file.
pub fn file_path(dir: &Path, id: &str, format: RecordingFormat) -> PathBuf {
    dir.join(format!("{id}.{}", extension(format)))
}

fn extension(format: RecordingFormat) -> &'static str {
    match format {
        RecordingFormat::Wav => "wav",
        RecordingFormat::OggOpus => "ogg",
    }
}

impl Recorder {
    /// Creates `<dir>/<id>.<ext>.part` (and `dir`).
    pub fn create(dir: &Path, id: &str, format: RecordingFormat, paused: bool) -> Result<Self, RecordError> {
        std::fs::create_dir_all(dir)?;
        let done = file_path(dir, id, format);
        let part = done.with_extension(format!("{}.part", extension(format)));
        let file = OpenOptions::new().create(true).write(true).truncate(true).open(&part)?;
        let mut out = BufWriter::new(file);
        let sink = match format {
            RecordingFormat::Wav => {
                out.write_all(&wav::header(1, WAV_RATE, 0))?;
                Sink::Wav { out, data_len: 0, scratch: Vec::with_capacity(FRAME) }
            }
            RecordingFormat::OggOpus => {
                let mut encoder = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Audio)?;
                encoder.set_bitrate(opus::Bitrate::Bits(32_000))?;
                let serial = id.bytes().fold(0u32, |h, b| h.rotate_left(5) ^ u32::from(b));
                let out = OggOpusWriter::new(out, serial, 1, 312)?;
                Sink::Ogg { out, encoder, packet: vec![0; 1500] }
            }
        };
        Ok(Self { id: id.to_owned(), format, part, done, sink, paused, frames: 0 })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// One 20 ms frame of 48 kHz mono (skipped while paused).
    pub fn push(&mut self, frame: &[i16; FRAME]) -> Result<(), RecordError> {
        if self.paused {
            return Ok(());
        }
        self.frames += 1;
        match &mut self.sink {
            Sink::Wav { out, data_len, scratch } => {
                wav::from_48k(frame, WAV_RATE, scratch);
                for s in scratch.iter() {
                    out.write_all(&s.to_le_bytes())?;
                }
                *data_len += 2 * scratch.len() as u64;
            }
            Sink::Ogg { out, encoder, packet } => {
                let n = encoder.encode(frame, packet)?;
                out.write_packet(&packet[..n], FRAME as u32)?;
            }
        }
        Ok(())
    }

    /// Closes the file durably (see the module docs) and describes it.
    pub fn finish(self, channels: Vec<String>) -> Result<RecordingFile, RecordError> {
        let file = match self.sink {
            Sink::Wav { out, data_len, .. } => {
                let mut file = out.into_inner().map_err(|e| e.into_error())?;
                file.seek(SeekFrom::Start(0))?;
                file.write_all(&wav::header(1, WAV_RATE, data_len as u32))?;
                file
            }
            Sink::Ogg { out, .. } => out.finish()?.into_inner().map_err(|e| e.into_error())?,
        };
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        drop(file);
        std::fs::rename(&self.part, &self.done)?;
        if let Some(dir) = self.done.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(RecordingFile {
            recording_id: self.id,
            path: self.done,
            content_type: match self.format {
                RecordingFormat::Wav => "audio/wav",
                RecordingFormat::OggOpus => "audio/ogg",
            },
            duration_ms: self.frames * 20,
            bytes,
            channels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(frame: &mut [i16; FRAME], at: u64) {
        for (i, s) in frame.iter_mut().enumerate() {
            let t = (at as f64 * FRAME as f64 + i as f64) / 48_000.0;
            *s = ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16;
        }
    }

    #[test]
    fn wav_skips_paused_time_and_lands_whole_under_its_final_name() {
        let dir = std::env::temp_dir().join(format!("palaver-rec-{}", std::process::id()));
        let mut rec = Recorder::create(&dir, "r1", RecordingFormat::Wav, false).unwrap();
        let mut frame = [0i16; FRAME];
        for i in 0..50 {
            tone(&mut frame, i);
            rec.set_paused((20..30).contains(&i));
            rec.push(&frame).unwrap();
        }
        assert!(!file_path(&dir, "r1", RecordingFormat::Wav).exists(), "not before finish");
        let file = rec.finish(vec!["mix".into()]).unwrap();
        assert_eq!(file.duration_ms, 40 * 20);
        let pcm = wav::parse(&std::fs::read(&file.path).unwrap()).unwrap();
        assert_eq!((pcm.rate, pcm.samples.len()), (WAV_RATE, 40 * 320));
        assert!(pcm.samples.iter().map(|s| i32::from(*s).abs()).max().unwrap() > 7000);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ogg_opus_decodes_back_to_the_tone() {
        let dir = std::env::temp_dir().join(format!("palaver-rec-ogg-{}", std::process::id()));
        let mut rec = Recorder::create(&dir, "r2", RecordingFormat::OggOpus, false).unwrap();
        let mut frame = [0i16; FRAME];
        for i in 0..25 {
            tone(&mut frame, i);
            rec.push(&frame).unwrap();
        }
        let file = rec.finish(vec![]).unwrap();
        let reader = palaver_sfu::mixer::OggOpusReader::parse(&std::fs::read(&file.path).unwrap()).unwrap();
        assert_eq!(reader.packets.len(), 25);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
