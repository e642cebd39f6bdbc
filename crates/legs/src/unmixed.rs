//! Unmixed recording, sans-IO apart from its files: one WAV channel per participant (16 kHz
//! PCM16), fed by the media plane's per-source tap (each participant's decoded 20 ms, tagged
//! with the router's tick). Channels: `channelAffinity` first (a participant pinned to channel
//! 0–4), then `audioChannelParticipantOrdering`, then order of first audio; at most
//! [`MAX_CHANNELS`] (ACS's channel range 0–4). A participant that finds no free channel is
//! mixed into the last channel (the reference does not say what ACS does then; this is
//! palaver's choice, documented in docs/call-automation.md).
//!
//! The tick numbers keep the channels aligned: every channel's audio for tick T lands at the
//! same position, a tick nobody sent anything in is silence, and paused ticks are skipped.
//! Each channel is written as it comes to its own `.chN.part` file; `finish` interleaves them
//! into `<id>.wav.part`, fsyncs, renames to `<id>.wav` and fsyncs the directory (a crash
//! leaves no file or a whole one).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use palaver_signaling::gateway::legs::RecordingFile;

use crate::player::FRAME;
use crate::recorder::{RecordError, WAV_RATE, file_path};
use crate::wav;

/// Channels of an unmixed recording at most (ACS `channelAffinity` channels 0–4).
pub const MAX_CHANNELS: usize = 5;

/// 16 kHz samples per 20 ms.
const OUT_FRAME: usize = FRAME * WAV_RATE as usize / 48_000;

struct Channel {
    /// Raw ids heard on this channel (more than one only on the overflow channel).
    participants: Vec<String>,
    out: BufWriter<File>,
    path: PathBuf,
    /// Frames written so far (its position on the timeline).
    written: u64,
    /// The frame at `written - 1` may still be summed into (the overflow channel).
    last: [i16; OUT_FRAME],
}

/// See the module docs.
pub struct UnmixedRecorder {
    id: String,
    dir: PathBuf,
    /// Channel pinned per raw id (`channelAffinity`), and the preferred order of the rest.
    affinity: Vec<(usize, String)>,
    order: Vec<String>,
    channels: Vec<Option<Channel>>,
    paused: bool,
    /// The last tick seen and the timeline position (frames) it maps to.
    last_tick: Option<u64>,
    position: u64,
    scratch: Vec<i16>,
}

impl std::fmt::Debug for UnmixedRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnmixedRecorder").field("id", &self.id).field("position", &self.position).finish()
    }
}

impl UnmixedRecorder {
    /// `affinity`: (channel, raw id) pairs, already validated (channel < [`MAX_CHANNELS`],
    /// each channel and participant once).
    pub fn create(
        dir: &Path,
        id: &str,
        affinity: Vec<(usize, String)>,
        order: Vec<String>,
        paused: bool,
    ) -> Result<Self, RecordError> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            id: id.to_owned(),
            dir: dir.to_owned(),
            affinity,
            order,
            channels: (0..MAX_CHANNELS).map(|_| None).collect(),
            paused,
            last_tick: None,
            position: 0,
            scratch: Vec::with_capacity(OUT_FRAME),
        })
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

    /// The channel `participant` is recorded on (choosing one on its first audio).
    fn channel_for(&mut self, participant: &str) -> Result<usize, RecordError> {
        if let Some(at) = self
            .channels
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.participants.iter().any(|p| p == participant)))
        {
            return Ok(at);
        }
        let pinned = self.affinity.iter().find(|(_, p)| p == participant).map(|(c, _)| *c);
        let reserved = |c: usize, me: &str| self.affinity.iter().any(|(ch, p)| *ch == c && p != me);
        // Participants named in the ordering take the lowest free channels in that order:
        // leave room for the ones before this one that have not spoken yet.
        let rank = self.order.iter().position(|p| p == participant);
        let free: Vec<usize> =
            (0..MAX_CHANNELS).filter(|&c| self.channels[c].is_none() && !reserved(c, participant)).collect();
        let wanted = match (pinned, rank) {
            (Some(channel), _) => Some(channel),
            (None, Some(rank)) => {
                let earlier_waiting = self.order[..rank]
                    .iter()
                    .filter(|p| !self.channels.iter().flatten().any(|c| c.participants.contains(p)))
                    .filter(|p| !self.affinity.iter().any(|(_, a)| a == *p))
                    .count();
                free.get(earlier_waiting).or(free.last()).copied()
            }
            (None, None) => {
                let ordered_waiting = self
                    .order
                    .iter()
                    .filter(|p| !self.channels.iter().flatten().any(|c| c.participants.contains(p)))
                    .filter(|p| !self.affinity.iter().any(|(_, a)| a == *p))
                    .count();
                free.get(ordered_waiting).or(free.last()).copied()
            }
        };
        match wanted {
            Some(at) if self.channels[at].is_none() => {
                let path = self.dir.join(format!("{}.ch{at}.part", self.id));
                let file = OpenOptions::new().create(true).write(true).read(true).truncate(true).open(&path)?;
                self.channels[at] = Some(Channel {
                    participants: vec![participant.to_owned()],
                    out: BufWriter::new(file),
                    path,
                    written: 0,
                    last: [0; OUT_FRAME],
                });
                Ok(at)
            }
            _ => {
                // No channel left: the overflow goes into the last channel.
                let last = MAX_CHANNELS - 1;
                if self.channels[last].is_none() {
                    return self.open_overflow(last, participant);
                }
                if let Some(channel) = self.channels[last].as_mut() {
                    channel.participants.push(participant.to_owned());
                }
                Ok(last)
            }
        }
    }

    fn open_overflow(&mut self, at: usize, participant: &str) -> Result<usize, RecordError> {
        let path = self.dir.join(format!("{}.ch{at}.part", self.id));
        let file = OpenOptions::new().create(true).write(true).read(true).truncate(true).open(&path)?;
        self.channels[at] = Some(Channel {
            participants: vec![participant.to_owned()],
            out: BufWriter::new(file),
            path,
            written: 0,
            last: [0; OUT_FRAME],
        });
        Ok(at)
    }

    /// One participant's 20 ms (48 kHz mono) of router tick `tick` (skipped while paused).
    pub fn push(&mut self, participant: &str, tick: u64, frame: &[i16]) -> Result<(), RecordError> {
        // Ticks move the timeline (only while recording); a tick older than the last one seen
        // (a frame that came late) is placed at its own position when still open.
        match self.last_tick {
            None => self.last_tick = Some(tick),
            Some(last) if tick > last => {
                if !self.paused {
                    self.position += tick - last;
                }
                self.last_tick = Some(tick);
            }
            Some(_) => {}
        }
        if self.paused {
            return Ok(());
        }
        let behind = self.last_tick.unwrap_or(tick).saturating_sub(tick);
        let at = self.position.saturating_sub(behind);
        let index = self.channel_for(participant)?;
        wav::from_48k(frame, WAV_RATE, &mut self.scratch);
        let channel = self.channels[index].as_mut().expect("chosen above");
        if channel.written == at + 1 {
            // A second source in the overflow channel this tick: sum into the last frame.
            for (o, s) in channel.last.iter_mut().zip(&self.scratch) {
                *o = o.saturating_add(*s);
            }
            channel.out.seek(SeekFrom::Start(at * OUT_FRAME as u64 * 2))?;
            for s in channel.last {
                channel.out.write_all(&s.to_le_bytes())?;
            }
            return Ok(());
        }
        if channel.written > at {
            return Ok(()); // too late to place
        }
        while channel.written < at {
            channel.out.write_all(&[0u8; OUT_FRAME * 2])?;
            channel.written += 1;
        }
        channel.last.fill(0);
        channel.last[..self.scratch.len().min(OUT_FRAME)]
            .copy_from_slice(&self.scratch[..self.scratch.len().min(OUT_FRAME)]);
        for s in channel.last {
            channel.out.write_all(&s.to_le_bytes())?;
        }
        channel.written += 1;
        Ok(())
    }

    /// Interleaves the channels into the final WAV durably; `channels` of the file are the
    /// raw ids per channel (several joined by `,` on an overflow channel; empty for a channel
    /// nobody spoke on before a later one).
    pub fn finish(self) -> Result<RecordingFile, RecordError> {
        let used = self.channels.iter().rposition(Option::is_some).map_or(1, |i| i + 1);
        let frames = self.channels.iter().flatten().map(|c| c.written).max().unwrap_or(0);
        let done = file_path(&self.dir, &self.id, palaver_signaling::gateway::legs::RecordingFormat::Wav);
        let part = done.with_extension("wav.part");
        let mut readers = Vec::with_capacity(used);
        let mut names = Vec::with_capacity(used);
        let mut scratch_paths = Vec::new();
        for channel in self.channels.into_iter().take(used) {
            match channel {
                Some(channel) => {
                    let mut file = channel.out.into_inner().map_err(|e| e.into_error())?;
                    file.seek(SeekFrom::Start(0))?;
                    names.push(channel.participants.join(","));
                    scratch_paths.push(channel.path);
                    readers.push(Some((BufReader::new(file), channel.written)));
                }
                None => {
                    names.push(String::new());
                    readers.push(None);
                }
            }
        }
        let data_len = frames * OUT_FRAME as u64 * 2 * used as u64;
        let mut out = BufWriter::new(File::create(&part)?);
        out.write_all(&wav::header(used as u16, WAV_RATE, data_len as u32))?;
        let mut frame = vec![[0u8; OUT_FRAME * 2]; used];
        for n in 0..frames {
            for (c, reader) in readers.iter_mut().enumerate() {
                frame[c] = [0; OUT_FRAME * 2];
                if let Some((reader, written)) = reader
                    && n < *written
                {
                    reader.read_exact(&mut frame[c])?;
                }
            }
            for i in 0..OUT_FRAME {
                for channel in &frame {
                    out.write_all(&channel[2 * i..2 * i + 2])?;
                }
            }
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        drop(file);
        std::fs::rename(&part, &done)?;
        if let Some(dir) = done.parent() {
            File::open(dir)?.sync_all()?;
        }
        for path in scratch_paths {
            let _ = std::fs::remove_file(path);
        }
        Ok(RecordingFile {
            recording_id: self.id,
            path: done,
            content_type: "audio/wav",
            duration_ms: frames * 20,
            bytes,
            channels: names,
        })
    }
}

#[cfg(test)]
mod tests;
