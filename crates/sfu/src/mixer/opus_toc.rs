//! Opus packet inspection without decoding (RFC 6716 §3.1): frame duration from the TOC
//! byte, and the cheap voice-activity guess used when a sender has no RFC 6464 level.

/// Samples per channel at 48 kHz in one mixer frame (20 ms).
pub const FRAME_SAMPLES: usize = 960;

/// Why an Opus payload cannot be mixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TocError {
    #[error("empty Opus payload")]
    Empty,
    #[error("Opus code-3 packet without a frame count byte")]
    Truncated,
    #[error("Opus packet carries {0} samples at 48 kHz; the mixer takes 20 ms (960) per packet")]
    UnsupportedDuration(usize),
}

/// Samples per channel at 48 kHz of one frame coded with TOC configuration `config` (0..=31).
fn frame_samples(config: u8) -> usize {
    match config {
        // SILK-only: 10, 20, 40, 60 ms
        0..=11 => [480, 960, 1920, 2880][usize::from(config & 3)],
        // Hybrid: 10, 20 ms
        12..=15 => [480, 960][usize::from(config & 1)],
        // CELT-only: 2.5, 5, 10, 20 ms
        _ => [120, 240, 480, 960][usize::from(config & 3)],
    }
}

/// Total samples per channel at 48 kHz carried by an Opus packet.
pub fn packet_samples(payload: &[u8]) -> Result<usize, TocError> {
    let toc = *payload.first().ok_or(TocError::Empty)?;
    let per_frame = frame_samples(toc >> 3);
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => usize::from(*payload.get(1).ok_or(TocError::Truncated)? & 0x3f),
    };
    Ok(per_frame * frames)
}

/// Checks that a payload is one 20 ms Opus packet (any mode, any frame split).
pub fn check_twenty_ms(payload: &[u8]) -> Result<(), TocError> {
    match packet_samples(payload)? {
        FRAME_SAMPLES => Ok(()),
        other => Err(TocError::UnsupportedDuration(other)),
    }
}

/// Payloads this short are DTX / comfort-noise frames (libopus emits 1–2 bytes).
pub const DTX_MAX_BYTES: usize = 2;

/// Pseudo audio level in dBov (RFC 6464 scale: 0 loudest, 127 silent) guessed from the
/// size of a 20 ms packet, for senders that do not send the audio-level extension.
///
/// A VBR Opus encoder spends few bytes on silence and noise and many on speech, so the
/// byte count is a usable activity signal: ≤ 2 bytes (DTX) is silence, under
/// `quiet_bytes` counts as background (70 dBov), and above it every 4 bytes count as
/// one dB louder, saturating at 20 dBov. The mixer passes `quiet_bytes` = the larger of
/// its configured minimum and twice the sender's recent smallest packet (its noise
/// floor, e.g. ~21 bytes for silence at 32 kb/s with FEC). A constant-bitrate sender
/// looks always active; that is the documented weakness of this fallback.
pub fn level_from_size(payload_len: usize, quiet_bytes: usize) -> u8 {
    if payload_len <= DTX_MAX_BYTES {
        return 127;
    }
    if payload_len < quiet_bytes {
        return 70;
    }
    let louder = ((payload_len - quiet_bytes) / 4).min(30);
    50 - louder as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_from_toc() {
        // CELT 20 ms mono, one frame (config 31)
        assert_eq!(packet_samples(&[31 << 3, 0xaa]), Ok(960));
        // SILK 20 ms (config 1), two frames (code 1) = 40 ms
        assert_eq!(packet_samples(&[(1 << 3) | 1]), Ok(1920));
        // CELT 10 ms (config 30), code 3 with 2 frames = 20 ms
        assert_eq!(packet_samples(&[(30 << 3) | 3, 2]), Ok(960));
        assert_eq!(packet_samples(&[(30 << 3) | 3]), Err(TocError::Truncated));
        assert_eq!(packet_samples(&[]), Err(TocError::Empty));
        assert_eq!(check_twenty_ms(&[3 << 3]), Err(TocError::UnsupportedDuration(2880)));
        // Hybrid 20 ms (config 13)
        assert_eq!(check_twenty_ms(&[13 << 3]), Ok(()));
    }

    #[test]
    fn size_levels_are_monotonic() {
        assert_eq!(level_from_size(1, 20), 127);
        assert_eq!(level_from_size(10, 20), 70);
        assert!(level_from_size(40, 20) < level_from_size(24, 20));
        assert_eq!(level_from_size(1000, 20), 20);
    }
}
