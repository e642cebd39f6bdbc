//! One conversation's per-source tap shared by every leg that consumes it: an unmixed media
//! stream and an unmixed recording of the same call run at once, each getting every frame.
//!
//! The media plane keeps one [`SourceTap`] per conversation (the worker pushes each unmuted
//! participant's decoded 20 ms into it, one consumer pops). [`TapHubs`] (one per process, in
//! [`LegConfig`](crate::LegConfig)) keeps a hub per conversation: the first consumer starts the
//! media plane's tap through its leg's transport; every consumer has its own bounded queue;
//! whichever consumer drains first on a tick moves what the media plane queued into every
//! consumer's queue (a copy of each fixed-size frame, no allocation: the queues are reserved
//! up front). When the consumer whose transport started the tap leaves while others remain,
//! the next one takes it over through its own transport (the media plane lets only the tap's
//! owner stop it); the last one stops it. The fan-out runs on the legs' 20 ms ticks, never on
//! the worker, so the mixer and its public API are untouched.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use palaver_sfu::engine::{DEFAULT_TAP_CAPACITY, SourceTap, TapFrame};

use crate::transport::LegTransport;

/// The hubs of every conversation with a tap consumer (see the module docs).
#[derive(Default)]
pub struct TapHubs {
    hubs: Mutex<HashMap<String, Weak<Mutex<Hub>>>>,
}

impl std::fmt::Debug for TapHubs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let live = self.hubs.lock().map(|h| h.len()).unwrap_or(0);
        f.debug_struct("TapHubs").field("conversations", &live).finish()
    }
}

/// One conversation's tap and its consumers.
struct Hub {
    /// What the media plane pushes into.
    source: Arc<SourceTap>,
    /// Consumers in subscription order; the first one's transport owns the media plane's tap.
    consumers: Vec<Consumer>,
    next_id: u64,
}

struct Consumer {
    id: u64,
    queue: VecDeque<TapFrame>,
    transport: Arc<dyn LegTransport>,
    /// Frames dropped because this consumer fell behind.
    dropped: u64,
}

/// One leg's subscription to its conversation's tap; [`Self::close`] it when done.
pub struct TapConsumer {
    hub: Arc<Mutex<Hub>>,
    id: u64,
}

impl std::fmt::Debug for TapConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapConsumer").field("id", &self.id).finish_non_exhaustive()
    }
}

impl TapHubs {
    /// Subscribes a leg of `conversation` (media reaches it through `transport`); the first
    /// consumer starts the media plane's tap.
    pub fn subscribe(&self, conversation: &str, transport: Arc<dyn LegTransport>) -> TapConsumer {
        let mut hubs = self.hubs.lock().unwrap_or_else(|e| e.into_inner());
        hubs.retain(|_, hub| hub.strong_count() > 0);
        let hub = hubs.get(conversation).and_then(Weak::upgrade).unwrap_or_else(|| {
            let hub = Arc::new(Mutex::new(Hub {
                source: Arc::new(SourceTap::new(DEFAULT_TAP_CAPACITY)),
                consumers: Vec::new(),
                next_id: 0,
            }));
            hubs.insert(conversation.to_owned(), Arc::downgrade(&hub));
            hub
        });
        let id = {
            let mut state = hub.lock().unwrap_or_else(|e| e.into_inner());
            let id = state.next_id;
            state.next_id += 1;
            if state.consumers.is_empty() {
                // Frames queued while nobody consumed are stale.
                while state.source.pop().is_some() {}
                transport.set_source_tap(Some(state.source.clone()));
            }
            let queue = VecDeque::with_capacity(DEFAULT_TAP_CAPACITY);
            state.consumers.push(Consumer { id, queue, transport, dropped: 0 });
            id
        };
        TapConsumer { hub, id }
    }
}

impl Hub {
    /// Moves what the media plane queued into every consumer's queue.
    fn pump(&mut self) {
        while let Some(frame) = self.source.pop() {
            let Some((last, rest)) = self.consumers.split_last_mut() else { return };
            for consumer in rest {
                consumer.offer(frame.clone());
            }
            last.offer(frame);
        }
    }
}

impl Consumer {
    fn offer(&mut self, frame: TapFrame) {
        if self.queue.len() >= DEFAULT_TAP_CAPACITY {
            self.dropped += 1;
            return;
        }
        self.queue.push_back(frame);
    }
}

impl TapConsumer {
    /// The oldest frame for this consumer (what the media plane queued since any consumer's
    /// last drain is handed out first).
    pub fn pop(&self) -> Option<TapFrame> {
        let mut hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        hub.pump();
        hub.consumers.iter_mut().find(|c| c.id == self.id)?.queue.pop_front()
    }

    /// Frames this consumer lost because it fell behind (the media plane's own drops aside).
    pub fn dropped(&self) -> u64 {
        let hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        hub.consumers.iter().find(|c| c.id == self.id).map_or(0, |c| c.dropped)
    }

    /// Ends the subscription (as dropping it does): the last consumer stops the media plane's
    /// tap; if this one's transport owned it, the next consumer takes it over.
    pub fn close(self) {}
}

impl Drop for TapConsumer {
    fn drop(&mut self) {
        let mut hub = self.hub.lock().unwrap_or_else(|e| e.into_inner());
        hub.pump();
        let Some(index) = hub.consumers.iter().position(|c| c.id == self.id) else { return };
        let consumer = hub.consumers.remove(index);
        match hub.consumers.first() {
            None => consumer.transport.set_source_tap(None),
            Some(next) if index == 0 => next.transport.set_source_tap(Some(hub.source.clone())),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests;
