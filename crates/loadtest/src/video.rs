//! Synthetic VP8-like video for publishers: three simulcast layers (q/h/f) at realistic frame
//! rates and bitrates, periodic keyframes (bigger, with the VP8 keyframe start code and size),
//! packetized into RTP payloads with an RFC 7741 payload descriptor (picture id, S bit, marker
//! on a frame's last packet). The bytes after the headers are filler: the server forwards video
//! without decoding it.

/// RTP clock of video.
pub const VIDEO_CLOCK: u32 = 90_000;
/// Largest RTP payload produced.
pub const MAX_PAYLOAD: usize = 1_100;

/// One simulcast layer's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSpec {
    pub rid: &'static str,
    pub width: u16,
    pub height: u16,
    pub fps: u32,
    pub bitrate_bps: u32,
}

/// The usual three layers of a 720p camera (what browsers send).
pub const SIMULCAST_LAYERS: [LayerSpec; 3] = [
    LayerSpec { rid: "q", width: 320, height: 180, fps: 15, bitrate_bps: 150_000 },
    LayerSpec { rid: "h", width: 640, height: 360, fps: 30, bitrate_bps: 500_000 },
    LayerSpec { rid: "f", width: 1_280, height: 720, fps: 30, bitrate_bps: 1_500_000 },
];

/// A keyframe is this many times an average frame.
const KEYFRAME_FACTOR: usize = 5;

/// One RTP payload of video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoPacket {
    pub payload: Vec<u8>,
    /// Last packet of the frame.
    pub marker: bool,
    /// RTP timestamp (90 kHz) offset from the layer's first frame.
    pub timestamp: u32,
    pub keyframe: bool,
}

/// A layer's frame generator.
#[derive(Debug, Clone)]
pub struct VideoLayer {
    pub spec: LayerSpec,
    keyframe_interval_frames: u32,
    frame_index: u32,
    picture_id: u16,
    force_keyframe: bool,
    pub frames: u64,
    pub keyframes: u64,
    pub packets: u64,
}

impl VideoLayer {
    /// A layer with a keyframe every `keyframe_interval_secs` seconds (and on request).
    pub fn new(spec: LayerSpec, keyframe_interval_secs: u32, picture_id_seed: u16) -> Self {
        Self {
            spec,
            keyframe_interval_frames: (spec.fps * keyframe_interval_secs.max(1)).max(1),
            frame_index: 0,
            picture_id: picture_id_seed & 0x7fff,
            force_keyframe: false,
            frames: 0,
            keyframes: 0,
            packets: 0,
        }
    }

    /// Interval between frames of this layer, in ms.
    pub fn frame_interval_ms(&self) -> f64 {
        1_000.0 / f64::from(self.spec.fps.max(1))
    }

    /// Ask for a keyframe next (a PLI from the server).
    pub fn request_keyframe(&mut self) {
        self.force_keyframe = true;
    }

    /// The next frame's packets.
    pub fn next_frame(&mut self) -> Vec<VideoPacket> {
        let keyframe = self.force_keyframe || self.frame_index.is_multiple_of(self.keyframe_interval_frames);
        self.force_keyframe = false;
        let average = (self.spec.bitrate_bps / 8 / self.spec.fps.max(1)) as usize;
        // Deltas are a bit smaller than average so keyframes fit the bitrate.
        let size = if keyframe { average * KEYFRAME_FACTOR } else { average * 9 / 10 };
        let timestamp = self.frame_index.wrapping_mul(VIDEO_CLOCK / self.spec.fps.max(1));
        let mut frame = Vec::with_capacity(size.max(10));
        // VP8 payload header: size0=0, show_frame=1, version=0, P (0 = keyframe).
        frame.push(0x10 | u8::from(!keyframe));
        frame.extend_from_slice(&[0, 0]);
        if keyframe {
            frame.extend_from_slice(&[0x9d, 0x01, 0x2a]);
            frame.extend_from_slice(&self.spec.width.to_le_bytes());
            frame.extend_from_slice(&self.spec.height.to_le_bytes());
        }
        let filler = (self.frame_index as u8).wrapping_mul(31) | 1;
        frame.resize(size.max(frame.len()), filler);

        let chunk = MAX_PAYLOAD - 4;
        let parts: Vec<&[u8]> = frame.chunks(chunk).collect();
        let last = parts.len() - 1;
        let packets = parts
            .iter()
            .enumerate()
            .map(|(i, part)| {
                // RFC 7741 descriptor: X=1, S on the first packet, PID 0; I=1; 15-bit picture id.
                let mut payload = Vec::with_capacity(part.len() + 4);
                payload.push(0x80 | if i == 0 { 0x10 } else { 0 });
                payload.push(0x80);
                payload.extend_from_slice(&(0x8000 | self.picture_id).to_be_bytes());
                payload.extend_from_slice(part);
                VideoPacket { payload, marker: i == last, timestamp, keyframe }
            })
            .collect::<Vec<_>>();
        self.frame_index = self.frame_index.wrapping_add(1);
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        self.frames += 1;
        self.packets += packets.len() as u64;
        if keyframe {
            self.keyframes += 1;
        }
        packets
    }
}

/// Whether an RTP payload with an RFC 7741 descriptor starts a VP8 keyframe (what an SFU checks
/// before switching layers).
pub fn is_vp8_keyframe_start(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else { return false };
    if first & 0x10 == 0 || first & 0x07 != 0 {
        return false;
    }
    let mut i = 1;
    if first & 0x80 != 0 {
        let Some(&x) = payload.get(i) else { return false };
        i += 1;
        if x & 0x80 != 0 {
            let Some(&pid) = payload.get(i) else { return false };
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    payload.get(i).is_some_and(|b| b & 0x01 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrate_and_keyframes_are_realistic() {
        for spec in SIMULCAST_LAYERS {
            let mut layer = VideoLayer::new(spec, 2, 100);
            let seconds = 10;
            let mut bytes = 0usize;
            let mut keyframes = 0;
            for _ in 0..spec.fps * seconds {
                let packets = layer.next_frame();
                assert!(packets.iter().all(|p| p.payload.len() <= MAX_PAYLOAD));
                assert_eq!(packets.iter().filter(|p| p.marker).count(), 1);
                assert!(packets.last().unwrap().marker);
                assert_eq!(packets[0].keyframe, is_vp8_keyframe_start(&packets[0].payload));
                assert!(packets[1..].iter().all(|p| !is_vp8_keyframe_start(&p.payload)));
                keyframes += usize::from(packets[0].keyframe);
                bytes += packets.iter().map(|p| p.payload.len()).sum::<usize>();
            }
            assert_eq!(keyframes, 5, "{}", spec.rid);
            let bps = bytes as f64 * 8.0 / f64::from(seconds);
            let target = f64::from(spec.bitrate_bps);
            assert!((bps - target).abs() / target < 0.15, "{}: {bps} vs {target}", spec.rid);
        }
    }

    #[test]
    fn keyframe_on_request_and_timestamps_advance_at_90khz() {
        let mut layer = VideoLayer::new(SIMULCAST_LAYERS[1], 10, 0x7ffe);
        let first = layer.next_frame();
        assert!(first[0].keyframe);
        let second = layer.next_frame();
        assert!(!second[0].keyframe);
        assert_eq!(second[0].timestamp - first[0].timestamp, 3_000);
        layer.request_keyframe();
        assert!(layer.next_frame()[0].keyframe);
        // Picture id wraps within 15 bits.
        let pid = |p: &VideoPacket| u16::from_be_bytes([p.payload[2], p.payload[3]]) & 0x7fff;
        assert_eq!((pid(&first[0]), pid(&second[0])), (0x7ffe, 0x7fff));
        assert_eq!(layer.keyframes, 2);
    }

    #[test]
    fn keyframe_parser_rejects_short_and_continuation_payloads() {
        assert!(!is_vp8_keyframe_start(&[]));
        assert!(!is_vp8_keyframe_start(&[0x90, 0x80]));
        assert!(!is_vp8_keyframe_start(&[0x00, 0x10]));
        assert!(is_vp8_keyframe_start(&[0x10, 0x10]));
    }
}
