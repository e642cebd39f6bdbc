//! `sendDtmfTones`, sans-IO: each tone becomes the RFC 4733 packets of a 100 ms tone (one per
//! 20 ms tick, the end packet three times) followed by 60 ms of pause; when the last tone is
//! out, SendDtmfTonesCompleted. Each tone has its own RTP timestamp (the tone's start).

use std::collections::VecDeque;

use palaver_sfu::rtp::telephone_event::{TelephoneEvent, tone_packets};
use palaver_signaling::gateway::legs::{DtmfTone, LegEventKind, OperationTag, ResultInfo};

/// Tone length in 8 kHz units (100 ms).
pub const TONE_DURATION: u16 = 800;
/// Silent ticks between tones.
const GAP_TICKS: u32 = 3;
const VOLUME: u8 = 10;

/// One packet to send this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TonePacket {
    pub marker: bool,
    /// Index of the tone in its request (the sender gives each its own RTP timestamp).
    pub tone_index: u32,
    pub event: TelephoneEvent,
}

#[derive(Debug)]
struct Job {
    tones: Vec<DtmfTone>,
    /// The participant the tones are for (a raw id): the media plane sends them to it only.
    target: String,
    tag: OperationTag,
    index: usize,
    step: usize,
    gap: u32,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct DtmfSender {
    jobs: VecDeque<Job>,
    sent_tones: u32,
}

impl DtmfSender {
    pub fn send(&mut self, target: String, tones: Vec<DtmfTone>, tag: OperationTag) {
        self.jobs.push_back(Job { tones, target, tag, index: 0, step: 0, gap: 0 });
    }

    /// The target of the request being sent (or next to be).
    pub fn current_target(&self) -> Option<&str> {
        self.jobs.front().map(|job| job.target.as_str())
    }

    pub fn is_idle(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The packet of this tick, if any; a finished request's event goes to `events`.
    pub fn tick(&mut self, events: &mut Vec<(OperationTag, LegEventKind)>) -> Option<TonePacket> {
        let job = self.jobs.front_mut()?;
        if job.gap > 0 {
            job.gap -= 1;
            return None;
        }
        let Some(&tone) = job.tones.get(job.index) else {
            let job = self.jobs.pop_front().expect("front");
            events.push((job.tag, LegEventKind::SendDtmfTonesCompleted(ResultInfo::success())));
            return None;
        };
        let packet = tone_packets(tone.0, VOLUME, TONE_DURATION).nth(job.step);
        match packet {
            Some((marker, event)) => {
                job.step += 1;
                Some(TonePacket { marker, tone_index: self.sent_tones, event })
            }
            None => {
                job.index += 1;
                job.step = 0;
                job.gap = GAP_TICKS;
                self.sent_tones += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_sfu::rtp::telephone_event::ToneDetector;

    #[test]
    fn sends_each_tone_once_detectably_then_completes() {
        let mut sender = DtmfSender::default();
        let tag = OperationTag { operation_context: Some("d1".into()), operation_callback_uri: None };
        sender.send("4:+14255550199".into(), vec![DtmfTone(1), DtmfTone(2), DtmfTone(3)], tag.clone());
        let (mut events, mut detector, mut heard) = (Vec::new(), ToneDetector::default(), Vec::new());
        let mut ticks = 0;
        while !sender.is_idle() {
            ticks += 1;
            if let Some(p) = sender.tick(&mut events) {
                heard.extend(detector.on_packet(p.tone_index, &p.event).map(|e| e.event));
            }
            assert!(ticks < 100);
        }
        assert_eq!(heard, [1, 2, 3]);
        assert_eq!(events, [(tag, LegEventKind::SendDtmfTonesCompleted(ResultInfo::success()))]);
        // 3 × (5 updates + 3 ends + 1 turn + 3 gap) + 1 completion tick
        assert_eq!(ticks, 3 * 12 + 1);
    }
}
