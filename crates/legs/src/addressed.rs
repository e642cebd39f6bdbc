//! A leg's addressed streams: audio it plays to some participants only (`playTo`, recognize
//! prompts to the recognize target, music on hold to a held participant). Each distinct
//! audience gets its own RTP stream (SSRC, sequence, timestamp, Opus encoder); the media plane
//! is told first that packets under that SSRC are heard only by that audience
//! ([`LegTransport::set_audience`]), so nothing it sends can reach anyone else — a packet that
//! overtakes its registration is dropped by the worker, never mixed for everyone. A stream
//! idle for 2 s is ended (unregistered).

use bytes::Bytes;

use crate::leg::LegTransport;
use crate::player::FRAME;

/// Ticks (20 ms) an addressed stream may stay silent before it is ended.
const IDLE_TICKS: u32 = 100;

struct AddressedStream {
    /// Raw ids of the listeners (as given; compared as a set).
    audience: Vec<String>,
    ssrc: u32,
    encoder: opus::Encoder,
    sequence: u16,
    timestamp: u32,
    /// Audio added this tick (summed).
    frame: [i16; FRAME],
    sounding: bool,
    speaking: bool,
    registered: bool,
    idle_ticks: u32,
}

/// See the module docs.
pub struct AddressedStreams {
    streams: Vec<AddressedStream>,
    payload_type: u8,
    /// The leg's own audio SSRC (addressed SSRCs are derived from it and never equal it).
    base_ssrc: u32,
    created: u32,
}

impl std::fmt::Debug for AddressedStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddressedStreams").field("streams", &self.streams.len()).finish_non_exhaustive()
    }
}

fn same_audience(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

impl AddressedStreams {
    pub fn new(payload_type: u8, base_ssrc: u32) -> Self {
        Self { streams: Vec::new(), payload_type, base_ssrc, created: 0 }
    }

    /// The SSRC audio for `audience` goes out under, once it has played.
    pub fn ssrc_of(&self, audience: &[String]) -> Option<u32> {
        self.streams.iter().find(|s| same_audience(&s.audience, audience)).map(|s| s.ssrc)
    }

    /// Adds 20 ms for `audience` (non-empty raw ids) to this tick's audio.
    pub fn add(&mut self, audience: &[String], frame: &[i16; FRAME]) {
        let at = match self.streams.iter().position(|s| same_audience(&s.audience, audience)) {
            Some(at) => at,
            None => {
                let Ok(encoder) = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Audio) else {
                    return;
                };
                self.created += 1;
                let mut ssrc = self.base_ssrc ^ 0x9E37_79B9u32.wrapping_mul(self.created);
                if ssrc == 0 || ssrc == self.base_ssrc {
                    ssrc = ssrc.wrapping_add(0x5bd1_e995) | 1;
                }
                self.streams.push(AddressedStream {
                    audience: audience.to_vec(),
                    ssrc,
                    encoder,
                    sequence: ssrc as u16,
                    timestamp: ssrc.rotate_left(16),
                    frame: [0; FRAME],
                    sounding: false,
                    speaking: false,
                    registered: false,
                    idle_ticks: 0,
                });
                self.streams.len() - 1
            }
        };
        let stream = &mut self.streams[at];
        for (o, s) in stream.frame.iter_mut().zip(frame) {
            *o = o.saturating_add(*s);
        }
        stream.sounding = true;
    }

    /// Sends this tick's audio of every stream (registering a new audience first, its raw ids
    /// turned into the media names they answer to by `names`), advances every stream's clock
    /// and ends streams idle for [`IDLE_TICKS`].
    pub fn flush(&mut self, transport: &dyn LegTransport, names: impl Fn(&[String]) -> Vec<String>) {
        let payload_type = self.payload_type;
        for stream in &mut self.streams {
            if stream.sounding {
                if !stream.registered {
                    transport.set_audience(stream.ssrc, Some(names(&stream.audience)));
                    stream.registered = true;
                }
                stream.idle_ticks = 0;
                let mut buf = [0u8; 1500];
                if let Ok(n) = stream.encoder.encode(&stream.frame, &mut buf[12..]) {
                    let marker = !stream.speaking;
                    buf[0] = 0x80;
                    buf[1] = (payload_type & 0x7F) | if marker { 0x80 } else { 0 };
                    buf[2..4].copy_from_slice(&stream.sequence.to_be_bytes());
                    buf[4..8].copy_from_slice(&stream.timestamp.to_be_bytes());
                    buf[8..12].copy_from_slice(&stream.ssrc.to_be_bytes());
                    transport.send(Bytes::copy_from_slice(&buf[..12 + n]));
                    stream.sequence = stream.sequence.wrapping_add(1);
                }
                stream.speaking = true;
            } else {
                stream.speaking = false;
                stream.idle_ticks += 1;
            }
            stream.frame = [0; FRAME];
            stream.sounding = false;
            stream.timestamp = stream.timestamp.wrapping_add(FRAME as u32);
        }
        self.streams.retain(|stream| {
            let ended = stream.idle_ticks >= IDLE_TICKS;
            if ended && stream.registered {
                transport.set_audience(stream.ssrc, None);
            }
            !ended
        });
    }

    /// Ends every stream (the leg is leaving).
    pub fn end_all(&mut self, transport: &dyn LegTransport) {
        for stream in self.streams.drain(..).filter(|s| s.registered) {
            transport.set_audience(stream.ssrc, None);
        }
    }
}
