//! A per-layer ring of preallocated packet slots, indexed by sequence number, that answers
//! NACKs without allocating: one contiguous buffer, one slot per `seq % capacity`.

/// Largest RTP packet cached (browsers keep RTP under ~1200 bytes; larger ones are skipped).
pub const SLOT_SIZE: usize = 1280;

#[derive(Debug, Clone, Copy, Default)]
struct SlotMeta {
    sequence: u16,
    len: u16,
    valid: bool,
}

/// Ring of the last `capacity` packets of one stream.
pub struct PacketCache {
    data: Vec<u8>,
    meta: Vec<SlotMeta>,
}

impl std::fmt::Debug for PacketCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketCache").field("capacity", &self.meta.len()).finish()
    }
}

impl PacketCache {
    /// Allocates all slots up front. A capacity of 0 caches nothing.
    pub fn new(capacity: usize) -> Self {
        Self { data: vec![0; capacity * SLOT_SIZE], meta: vec![SlotMeta::default(); capacity] }
    }

    pub fn capacity(&self) -> usize {
        self.meta.len()
    }

    /// Stores a packet under its sequence number (overwriting the slot's older occupant).
    pub fn insert(&mut self, sequence: u16, packet: &[u8]) {
        if self.meta.is_empty() || packet.len() > SLOT_SIZE {
            return;
        }
        let slot = sequence as usize % self.meta.len();
        self.data[slot * SLOT_SIZE..slot * SLOT_SIZE + packet.len()].copy_from_slice(packet);
        self.meta[slot] = SlotMeta { sequence, len: packet.len() as u16, valid: true };
    }

    /// The cached packet with this sequence number, if still present.
    pub fn get(&self, sequence: u16) -> Option<&[u8]> {
        if self.meta.is_empty() {
            return None;
        }
        let slot = sequence as usize % self.meta.len();
        let meta = self.meta[slot];
        (meta.valid && meta.sequence == sequence)
            .then(|| &self.data[slot * SLOT_SIZE..slot * SLOT_SIZE + meta.len as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_capacity_packets() {
        let mut cache = PacketCache::new(4);
        for seq in 65_534u16..=65_535 {
            cache.insert(seq, &seq.to_be_bytes());
        }
        for seq in 0u16..3 {
            cache.insert(seq, &seq.to_be_bytes());
        }
        assert_eq!(cache.get(65_534), None); // overwritten by seq 2 (same slot)
        assert_eq!(cache.get(65_535), Some(&65_535u16.to_be_bytes()[..]));
        assert_eq!(cache.get(2), Some(&2u16.to_be_bytes()[..]));
        assert_eq!(cache.get(7), None);
        cache.insert(9, &[0; SLOT_SIZE + 1]);
        assert_eq!(cache.get(9), None);
        assert_eq!(PacketCache::new(0).get(0), None);
    }
}
