//! Codecs the SFU forwards and cheap keyframe detection from the RTP payload, without
//! depacketizing: VP8 (RFC 7741), H.264 (RFC 6184: IDR/SPS in single NAL, STAP-A, FU-A),
//! VP9 (payload descriptor P/B bits) and AV1 (aggregation header N bit).

/// The media codec of a payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Opus,
    /// G.711 µ-law (static payload type 0, 8 kHz).
    Pcmu,
    /// G.711 A-law (static payload type 8, 8 kHz).
    Pcma,
    /// G.722 (static payload type 9, 8 kHz RTP clock for 16 kHz audio, RFC 3551).
    G722,
    Vp8,
    Vp9,
    H264,
    Av1,
}

impl Codec {
    /// RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::Pcmu | Codec::Pcma | Codec::G722 => 8_000,
            _ => 90_000,
        }
    }

    pub fn is_video(self) -> bool {
        !self.is_audio()
    }

    pub fn is_audio(self) -> bool {
        matches!(self, Codec::Opus | Codec::Pcmu | Codec::Pcma | Codec::G722)
    }
}

/// True if this packet starts (or for H.264 contains the start of) a keyframe.
/// Malformed payloads are simply "not a keyframe".
pub fn is_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Opus | Codec::Pcmu | Codec::Pcma | Codec::G722 => false,
        Codec::Vp8 => vp8_keyframe(payload),
        Codec::Vp9 => vp9_keyframe(payload),
        Codec::H264 => h264_keyframe(payload),
        Codec::Av1 => payload.first().is_some_and(|b| b & 0x08 != 0),
    }
}

fn vp8_keyframe(p: &[u8]) -> bool {
    let Some(&first) = p.first() else { return false };
    let extended = first & 0x80 != 0;
    let start_of_partition = first & 0x10 != 0;
    let partition_id = first & 0x0F;
    if !start_of_partition || partition_id != 0 {
        return false;
    }
    let mut at = 1;
    if extended {
        let Some(&x) = p.get(1) else { return false };
        at = 2;
        if x & 0x80 != 0 {
            // picture id: 7 or 15 bits
            let Some(&pid) = p.get(at) else { return false };
            at += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            at += 1; // TID/KEYIDX
        }
    }
    // VP8 payload header: P bit (inverse keyframe flag) is bit 0 of the first byte.
    p.get(at).is_some_and(|b| b & 0x01 == 0)
}

fn vp9_keyframe(p: &[u8]) -> bool {
    let Some(&first) = p.first() else { return false };
    let inter_predicted = first & 0x40 != 0;
    let begins_frame = first & 0x08 != 0;
    !inter_predicted && begins_frame
}

fn h264_keyframe(p: &[u8]) -> bool {
    let Some(&first) = p.first() else { return false };
    match first & 0x1F {
        5 | 7 => true,
        24 => {
            // STAP-A: 16-bit size then NAL unit, repeated.
            let mut at = 1;
            while at + 2 < p.len() {
                let size = u16::from_be_bytes([p[at], p[at + 1]]) as usize;
                if size == 0 || at + 2 + size > p.len() {
                    return false;
                }
                if matches!(p[at + 2] & 0x1F, 5 | 7) {
                    return true;
                }
                at += 2 + size;
            }
            false
        }
        28 => p.get(1).is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1F == 5),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8() {
        // S=1, PID=0, no extension, then P=0 (keyframe)
        assert!(is_keyframe(Codec::Vp8, &[0x10, 0x00, 0, 0]));
        assert!(!is_keyframe(Codec::Vp8, &[0x10, 0x01, 0, 0]));
        assert!(!is_keyframe(Codec::Vp8, &[0x00, 0x00]));
        // extended with 15-bit picture id, TL0PICIDX and TID
        assert!(is_keyframe(Codec::Vp8, &[0x90, 0xE0, 0x80, 0x01, 0x05, 0x20, 0x00]));
        assert!(!is_keyframe(Codec::Vp8, &[0x90, 0xE0, 0x80]));
    }

    #[test]
    fn h264() {
        assert!(is_keyframe(Codec::H264, &[0x65, 1, 2]));
        assert!(is_keyframe(Codec::H264, &[0x67, 1, 2]));
        assert!(!is_keyframe(Codec::H264, &[0x41, 1, 2]));
        // STAP-A with SPS inside
        assert!(is_keyframe(Codec::H264, &[0x78, 0, 2, 0x67, 0x42, 0, 1, 0x68]));
        assert!(!is_keyframe(Codec::H264, &[0x78, 0, 9, 0x67]));
        // FU-A start of IDR vs continuation
        assert!(is_keyframe(Codec::H264, &[0x7C, 0x85, 0]));
        assert!(!is_keyframe(Codec::H264, &[0x7C, 0x05, 0]));
    }

    #[test]
    fn vp9_and_av1() {
        assert!(is_keyframe(Codec::Vp9, &[0x08]));
        assert!(!is_keyframe(Codec::Vp9, &[0x48]));
        assert!(is_keyframe(Codec::Av1, &[0x08]));
        assert!(!is_keyframe(Codec::Av1, &[0x10]));
        assert!(!is_keyframe(Codec::Opus, &[0xFF]));
    }
}
