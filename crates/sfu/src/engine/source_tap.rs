//! The per-source tap's queue: each tick, a router's mixer puts every tapped participant's
//! decoded 20 ms (48 kHz mono) into a [`SourceTap`] shared with one server leg (unmixed
//! recording, unmixed media streaming), tagged with the participant's transport and the
//! router's tick number so the leg can line the channels up. A fixed-capacity lock-free
//! queue: the worker never blocks or allocates on it; when the leg falls behind, frames are
//! dropped and counted.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;

use crate::mixer::TAP_FRAME_SAMPLES;
use crate::router::TransportId;

/// Frames a tap holds by default: 10 participants × 1 s.
pub const DEFAULT_TAP_CAPACITY: usize = 500;

/// One participant's decoded 20 ms.
#[derive(Clone)]
pub struct TapFrame {
    /// The participant's transport (the control plane names it).
    pub source: TransportId,
    /// The router's mixer tick this frame was played in (consecutive ticks differ by one).
    pub tick: u64,
    /// 48 kHz mono PCM.
    pub samples: [i16; TAP_FRAME_SAMPLES],
}

impl std::fmt::Debug for TapFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapFrame").field("source", &self.source).field("tick", &self.tick).finish_non_exhaustive()
    }
}

/// See the module docs. The worker pushes, one consumer pops.
pub struct SourceTap {
    frames: ArrayQueue<TapFrame>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for SourceTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceTap").field("queued", &self.frames.len()).field("dropped", &self.dropped()).finish()
    }
}

impl SourceTap {
    pub fn new(capacity: usize) -> Self {
        Self { frames: ArrayQueue::new(capacity.max(1)), dropped: AtomicU64::new(0) }
    }

    /// Queues one frame; a full queue drops it (counted). The worker's mixer pushes; public so
    /// consumers' tests (the legs' tap fan-out) can feed a tap without a worker.
    pub fn push(&self, source: TransportId, tick: u64, pcm: &[i16], channels: usize) {
        let mut frame = TapFrame { source, tick, samples: [0; TAP_FRAME_SAMPLES] };
        if channels <= 1 {
            let n = pcm.len().min(TAP_FRAME_SAMPLES);
            frame.samples[..n].copy_from_slice(&pcm[..n]);
        } else {
            for (out, pair) in frame.samples.iter_mut().zip(pcm.chunks_exact(channels)) {
                *out = (pair.iter().map(|&s| i32::from(s)).sum::<i32>() / channels as i32) as i16;
            }
        }
        if self.frames.push(frame).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The oldest queued frame.
    pub fn pop(&self) -> Option<TapFrame> {
        self.frames.pop()
    }

    /// Frames dropped because the consumer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
