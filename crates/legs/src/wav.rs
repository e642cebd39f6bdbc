//! RIFF/WAVE PCM: the reader play sources go through (16-bit PCM, mono or stereo, 8/16/24/48
//! kHz; anything else is refused as "not audio palaver plays") and the header of the files
//! the recorder writes.

/// Why bytes are not a playable WAV.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    #[error("not a RIFF/WAVE file")]
    NotWav,
    #[error("WAV format {format} with {bits} bits is not supported (16-bit PCM only)")]
    Unsupported { format: u16, bits: u16 },
    #[error("WAV sample rate {0} Hz is not supported (8000 to 48000)")]
    Rate(u32),
    #[error("WAV with {0} channels is not supported (mono or stereo)")]
    Channels(u16),
    #[error("WAV file is truncated")]
    Truncated,
}

/// Decoded PCM: interleaved channels folded to mono.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcm {
    pub rate: u32,
    pub samples: Vec<i16>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// True if `bytes` start like a WAV file.
pub fn is_wav(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE"
}

/// Reads a 16-bit PCM WAV (stereo is averaged to mono).
pub fn parse(bytes: &[u8]) -> Result<Pcm, WavError> {
    if !is_wav(bytes) {
        return Err(WavError::NotWav);
    }
    let mut at = 12;
    let mut format = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32_at(bytes, at + 4).ok_or(WavError::Truncated)? as usize;
        let body = at + 8;
        match id {
            b"fmt " => {
                let tag = u16_at(bytes, body).ok_or(WavError::Truncated)?;
                let channels = u16_at(bytes, body + 2).ok_or(WavError::Truncated)?;
                let rate = u32_at(bytes, body + 4).ok_or(WavError::Truncated)?;
                let bits = u16_at(bytes, body + 14).ok_or(WavError::Truncated)?;
                // 1 = PCM; 0xFFFE = WAVE_FORMAT_EXTENSIBLE (PCM subformat assumed by bits).
                if !(tag == 1 || tag == 0xFFFE) || bits != 16 {
                    return Err(WavError::Unsupported { format: tag, bits });
                }
                if !(8000..=48000).contains(&rate) {
                    return Err(WavError::Rate(rate));
                }
                if !(1..=2).contains(&channels) {
                    return Err(WavError::Channels(channels));
                }
                format = Some((channels, rate));
            }
            b"data" => {
                let (channels, rate) = format.ok_or(WavError::NotWav)?;
                // Streamed WAVs may carry a 0 or oversized data length: read what is there.
                let end = body.saturating_add(size).min(bytes.len());
                let data = &bytes[body..end];
                let frame = 2 * usize::from(channels);
                let samples = data
                    .chunks_exact(frame)
                    .map(|f| {
                        let sum: i32 = f.chunks_exact(2).map(|s| i32::from(i16::from_le_bytes([s[0], s[1]]))).sum();
                        (sum / i32::from(channels)) as i16
                    })
                    .collect();
                return Ok(Pcm { rate, samples });
            }
            _ => {}
        }
        at = body.saturating_add(size + (size & 1));
    }
    Err(if format.is_some() { WavError::Truncated } else { WavError::NotWav })
}

/// The 44-byte header of a 16-bit PCM WAV with `channels` and `rate` holding `data_len` bytes.
pub fn header(channels: u16, rate: u32, data_len: u32) -> [u8; 44] {
    let mut h = [0u8; 44];
    let block = 2 * channels;
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data_len).to_le_bytes());
    h[8..16].copy_from_slice(b"WAVEfmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&(rate * u32::from(block)).to_le_bytes());
    h[32..34].copy_from_slice(&block.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

/// `pcm` at 48 kHz by linear interpolation (8/16/24 kHz are exact integer factors; other
/// rates, such as espeak-ng's 22050 Hz, are fractional). Enough for prompts: the Opus encoder
/// low-passes what follows.
pub fn to_48k(pcm: &Pcm) -> Vec<i16> {
    resample(&pcm.samples, pcm.rate, 48_000)
}

/// Linear-interpolation resampling of mono PCM from `from` Hz to `to` Hz.
pub fn resample(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || samples.is_empty() || from == 0 {
        return samples.to_vec();
    }
    let len = (samples.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    (0..len)
        .map(|i| {
            let pos = i as u64 * u64::from(from);
            let (index, frac) = ((pos / u64::from(to)) as usize, (pos % u64::from(to)) as i64);
            let a = i64::from(samples[index.min(samples.len() - 1)]);
            let b = i64::from(samples[(index + 1).min(samples.len() - 1)]);
            (a + (b - a) * frac / i64::from(to)) as i16
        })
        .collect()
}

/// 48 kHz mono down to `rate` (16000 or 24000) by averaging each group of samples.
pub fn from_48k(samples: &[i16], rate: u32, out: &mut Vec<i16>) {
    let factor = (48_000 / rate.max(1)) as usize;
    out.clear();
    out.extend(
        samples.chunks(factor.max(1)).map(|c| (c.iter().map(|&s| i32::from(s)).sum::<i32>() / c.len() as i32) as i16),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(channels: u16, rate: u32, samples: &[i16]) -> Vec<u8> {
        let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut out = header(channels, rate, data.len() as u32).to_vec();
        out.extend(data);
        out
    }

    #[test]
    fn reads_what_the_header_writer_writes_and_folds_stereo() {
        let pcm = parse(&wav(1, 16000, &[1, -2, 300])).unwrap();
        assert_eq!(pcm, Pcm { rate: 16000, samples: vec![1, -2, 300] });
        let stereo = parse(&wav(2, 48000, &[100, 300, -10, -30])).unwrap();
        assert_eq!(stereo.samples, [200, -20]);
    }

    #[test]
    fn refuses_what_it_cannot_play() {
        assert_eq!(parse(b"ID3\x03 not a wav at all"), Err(WavError::NotWav));
        assert_eq!(parse(&wav(1, 96000, &[0])), Err(WavError::Rate(96000)));
        let mut eight_bit = wav(1, 8000, &[0]);
        eight_bit[34] = 8;
        assert_eq!(parse(&eight_bit), Err(WavError::Unsupported { format: 1, bits: 8 }));
        assert_eq!(parse(&wav(3, 8000, &[0, 0, 0])), Err(WavError::Channels(3)));
    }

    #[test]
    fn upsamples_by_the_integer_factor() {
        let up = to_48k(&Pcm { rate: 8000, samples: vec![0, 600] });
        assert_eq!(up.len(), 12);
        assert_eq!(resample(&[0; 22050], 22050, 48000).len(), 48000);
        assert_eq!(&up[..6], &[0, 100, 200, 300, 400, 500]);
        let mut down = Vec::new();
        from_48k(&up[..6], 16000, &mut down);
        assert_eq!(down, [100, 400]);
    }
}
