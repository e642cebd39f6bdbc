//! The worker's outgoing datagrams: preallocated slots filled through [`Transmit`] and flushed
//! with `sendmmsg` (Linux), with UDP generic segmentation offload (GSO, `UDP_SEGMENT`) for runs
//! of datagrams to one destination.
//!
//! A video frame is several packets, and the worker forwards each to every subscriber, so a
//! flush holds `p1→A, p1→B, p2→A, p2→B, ...`. The flush orders the slots by destination (stably:
//! per destination the order is kept) and sends each run of equal-size datagrams to one
//! destination (the last may be shorter) as ONE message whose iovecs are the slots and whose
//! `UDP_SEGMENT` control message gives the size: the kernel routes and builds headers once for
//! the run and cuts it into the same datagrams. Runs of one (audio fan-out, mixer ticks) go out
//! as plain messages. If the kernel refuses a GSO message (no offload on the route, a segment
//! over the path MTU), that run is re-sent datagram by datagram and GSO is off for this batch
//! from then on. Nothing here allocates after construction.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use crate::engine::{MAX_DATAGRAM, Transmit};

/// Datagrams one flush can hold (a frame's packets times the subscribers, before the flush).
pub const SEND_CAPACITY: usize = 512;
/// Messages per `sendmmsg` call.
const MESSAGES_PER_CALL: usize = 64;
/// Send slot size: the largest datagram plus headroom for SRTP/RTX growth.
const SEND_SLOT: usize = MAX_DATAGRAM + 64;
/// Most datagrams in one GSO message (the kernel's `UDP_MAX_SEGMENTS` is 64 before Linux 6.x).
const MAX_SEGMENTS: usize = 64;
/// Largest GSO message payload (an IPv4 UDP datagram's limit, rounded down).
const MAX_GSO_BYTES: usize = 65_000;

/// Preallocated send slots; implements [`Transmit`] and flushes when full.
pub struct SendBatch {
    socket: UdpSocket,
    data: Vec<u8>,
    lens: Vec<u16>,
    to: Vec<Option<SocketAddr>>,
    /// Sort keys: destination key in the high 48 bits, slot index in the low 16.
    order: Vec<u64>,
    count: usize,
    failed: u64,
    gso: bool,
}

impl SendBatch {
    /// `socket` is a clone of the worker's socket handle. GSO is used when the kernel has it.
    pub fn new(socket: UdpSocket) -> Self {
        Self::with_gso(socket, true)
    }

    /// As [`new`](Self::new) with GSO forced off (`false`) or on when available (`true`).
    pub fn with_gso(socket: UdpSocket, gso: bool) -> Self {
        let gso = gso && gso_available(&socket);
        Self {
            socket,
            data: vec![0; SEND_CAPACITY * SEND_SLOT],
            lens: vec![0; SEND_CAPACITY],
            to: vec![None; SEND_CAPACITY],
            order: vec![0; SEND_CAPACITY],
            count: 0,
            failed: 0,
            gso,
        }
    }

    /// Whether flushes group runs to one destination into GSO messages.
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Datagrams that could not be sent since the last call.
    pub fn take_failed(&mut self) -> u64 {
        std::mem::take(&mut self.failed)
    }

    fn slot(&self, i: usize) -> &[u8] {
        &self.data[i * SEND_SLOT..i * SEND_SLOT + usize::from(self.lens[i])]
    }

    /// Slot indices in sending order: grouped by destination when GSO is on, else as queued.
    fn arrange(&mut self) {
        for i in 0..self.count {
            let key = self.to[i].map_or(0, destination_key);
            self.order[i] = (key << 16) | i as u64;
        }
        if self.gso {
            self.order[..self.count].sort_unstable();
        }
    }

    /// How many slots from position `pos` of the order form one message: a GSO run (same
    /// destination, every datagram as long as the first except a shorter last one) or one.
    fn run_length(&self, pos: usize) -> usize {
        let first = (self.order[pos] & 0xFFFF) as usize;
        if !self.gso {
            return 1;
        }
        let (to, size) = (self.to[first], usize::from(self.lens[first]));
        let (mut k, mut total) = (1, size);
        while pos + k < self.count && k < MAX_SEGMENTS {
            let next = (self.order[pos + k] & 0xFFFF) as usize;
            let len = usize::from(self.lens[next]);
            if self.to[next] != to || len > size || len == 0 || total + len > MAX_GSO_BYTES {
                break;
            }
            k += 1;
            total += len;
            if len < size {
                break; // only the last segment may be shorter
            }
        }
        k
    }

    /// Sends one run's datagrams one by one (after the kernel refused them as one GSO message).
    fn send_each(&mut self, pos: usize, run: usize) {
        for p in pos..pos + run {
            let i = (self.order[p] & 0xFFFF) as usize;
            let Some(to) = self.to[i] else { continue };
            if self.socket.send_to(self.slot(i), to).is_err() {
                self.failed += 1;
            }
        }
    }

    /// Sends everything queued.
    #[cfg(target_os = "linux")]
    pub fn flush(&mut self) {
        use std::os::fd::AsRawFd;
        self.arrange();
        let fd = self.socket.as_raw_fd();
        let mut pos = 0;
        while pos < self.count {
            // SAFETY: plain old data, zero-initialised then filled below.
            let mut iov: [libc::iovec; SEND_CAPACITY] = unsafe { std::mem::zeroed() };
            let mut msgs: [libc::mmsghdr; MESSAGES_PER_CALL] = unsafe { std::mem::zeroed() };
            let mut names: [libc::sockaddr_storage; MESSAGES_PER_CALL] = unsafe { std::mem::zeroed() };
            let mut controls = [[0u64; CONTROL_WORDS]; MESSAGES_PER_CALL];
            let mut runs = [(0usize, 0usize); MESSAGES_PER_CALL];
            let (mut m, mut used) = (0, 0);
            while m < MESSAGES_PER_CALL && pos < self.count {
                let run = self.run_length(pos);
                let first = (self.order[pos] & 0xFFFF) as usize;
                for (j, p) in (pos..pos + run).enumerate() {
                    let i = (self.order[p] & 0xFFFF) as usize;
                    // SAFETY: slot i lies within `data`.
                    iov[used + j].iov_base = unsafe { self.data.as_mut_ptr().add(i * SEND_SLOT) }.cast();
                    iov[used + j].iov_len = usize::from(self.lens[i]);
                }
                let hdr = &mut msgs[m].msg_hdr;
                if let Some(to) = self.to[first] {
                    hdr.msg_namelen = super::socket::to_sockaddr(&to, &mut names[m]);
                    hdr.msg_name = (&mut names[m] as *mut libc::sockaddr_storage).cast();
                }
                hdr.msg_iov = &mut iov[used];
                hdr.msg_iovlen = run as _;
                if run > 1 {
                    set_segment_size(hdr, &mut controls[m], self.lens[first]);
                }
                runs[m] = (pos, run);
                pos += run;
                used += run;
                m += 1;
            }
            let mut done = 0;
            while done < m {
                // SAFETY: every pointer in `msgs[done..m]` refers to live buffers of this frame
                // or of `self.data` for the duration of the call.
                let n = unsafe { libc::sendmmsg(fd, msgs[done..].as_mut_ptr(), (m - done) as _, 0) };
                if n > 0 {
                    done += n as usize;
                    continue;
                }
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The first remaining message failed: resend a refused GSO run datagram by
                // datagram (and stop using GSO); a single datagram is counted and skipped.
                let (at, run) = runs[done];
                if run > 1 {
                    tracing::warn!(error = %err, "UDP GSO refused; sending datagrams one by one from now on");
                    self.gso = false;
                    self.send_each(at, run);
                } else {
                    self.failed += 1;
                }
                done += 1;
            }
        }
        self.count = 0;
    }

    #[cfg(not(target_os = "linux"))]
    pub fn flush(&mut self) {
        for i in 0..self.count {
            if let Some(to) = self.to[i]
                && self.socket.send_to(self.slot(i), to).is_err()
            {
                self.failed += 1;
            }
        }
        self.count = 0;
    }
}

impl Transmit for SendBatch {
    fn buffer(&mut self) -> &mut [u8] {
        if self.count == SEND_CAPACITY {
            self.flush();
        }
        let i = self.count;
        &mut self.data[i * SEND_SLOT..(i + 1) * SEND_SLOT]
    }

    fn commit(&mut self, len: usize, to: SocketAddr) {
        if self.count == SEND_CAPACITY {
            self.flush();
        }
        self.lens[self.count] = len.min(SEND_SLOT) as u16;
        self.to[self.count] = Some(to);
        self.count += 1;
    }
}

/// A 48-bit key that sorts datagrams to one destination together (collisions between
/// different IPv6 destinations only cost grouping: runs compare the real addresses).
fn destination_key(addr: SocketAddr) -> u64 {
    match addr {
        SocketAddr::V4(a) => (u64::from(u32::from(*a.ip())) << 16) | u64::from(a.port()),
        SocketAddr::V6(a) => {
            let ip = u128::from(*a.ip());
            let folded = ((ip >> 64) as u64) ^ (ip as u64).rotate_left(29);
            (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16) ^ u64::from(a.port())
        }
    }
}

/// `u64` words of one message's control buffer (room for one `UDP_SEGMENT` cmsg).
#[cfg(target_os = "linux")]
const CONTROL_WORDS: usize = 4;

/// Attaches a `UDP_SEGMENT` control message (segment size `size`) to `hdr`.
#[cfg(target_os = "linux")]
fn set_segment_size(hdr: &mut libc::msghdr, control: &mut [u64; CONTROL_WORDS], size: u16) {
    // SAFETY: CMSG_SPACE of a u16 (24 bytes on 64-bit Linux) fits in `control` (32 bytes,
    // 8-aligned), so CMSG_FIRSTHDR is non-null and its data has room for the u16.
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as usize;
        debug_assert!(space <= std::mem::size_of_val(control));
        hdr.msg_control = control.as_mut_ptr().cast();
        hdr.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(hdr);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size);
    }
}

/// True when the kernel knows `UDP_SEGMENT` (Linux ≥ 4.18) for this socket.
#[cfg(target_os = "linux")]
fn gso_available(socket: &UdpSocket) -> bool {
    use std::os::fd::AsRawFd;
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a getsockopt into a c_int owned by this frame.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0
}

#[cfg(not(target_os = "linux"))]
fn gso_available(_socket: &UdpSocket) -> bool {
    false
}

#[cfg(test)]
mod tests;
