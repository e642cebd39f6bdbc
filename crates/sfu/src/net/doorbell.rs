//! How a worker thread sleeps and is woken: it blocks in `ppoll` on its UDP socket and an
//! `eventfd` until a datagram arrives, its engine's next deadline passes, or another thread
//! rings the doorbell after queueing a command or a direct-transport packet. Ringing costs an
//! atomic swap, plus one `write` only when the worker is actually asleep, so a busy worker is
//! never woken per packet. A worker that only mixes sleeps without watching its socket until
//! its next tick ([`Doorbell::sleep_until`]). Elsewhere than Linux the worker naps at most
//! `FALLBACK_NAP` (5 ms).

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// Longest nap without `eventfd` (non-Linux): commands and direct packets wait at most this.
#[cfg(not(target_os = "linux"))]
pub const FALLBACK_NAP: Duration = Duration::from_millis(5);

/// One worker's wake-up line (see the module docs).
#[derive(Debug)]
pub struct Doorbell {
    sleeping: AtomicBool,
    /// The worker sleeps until its tick and reads packets then: packets do not ring.
    packets_wait: AtomicBool,
    #[cfg(target_os = "linux")]
    eventfd: std::os::fd::OwnedFd,
}

impl Doorbell {
    pub fn new() -> std::io::Result<Self> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::FromRawFd;
            // SAFETY: eventfd takes no pointers; a non-negative result is a fresh fd we own.
            let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: `fd` was just created and is owned by nothing else.
            let eventfd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
            Ok(Self { sleeping: AtomicBool::new(false), packets_wait: AtomicBool::new(false), eventfd })
        }
        #[cfg(not(target_os = "linux"))]
        Ok(Self { sleeping: AtomicBool::new(false), packets_wait: AtomicBool::new(false) })
    }

    /// Any thread, after queueing work for the worker: wakes it if it sleeps.
    pub fn ring(&self) {
        if self.sleeping.swap(false, SeqCst) {
            #[cfg(target_os = "linux")]
            {
                use std::os::fd::AsRawFd;
                let one: u64 = 1;
                // SAFETY: writes 8 bytes from a u64 on this frame to our eventfd. A full
                // counter (EAGAIN) still leaves the fd readable, which is all that matters.
                let _ = unsafe { libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
            }
        }
    }

    /// Any thread, after queueing a packet for the worker: wakes it unless it sleeps until its
    /// tick ([`Self::sleep_until`]), when it takes the packet then.
    pub fn ring_for_packet(&self) {
        if !self.packets_wait.load(SeqCst) {
            self.ring();
        }
    }

    /// Worker thread: sleeps until `socket` is readable, `deadline` passes or [`Self::ring`]
    /// is called. `idle` is checked after announcing the sleep, so work queued before that
    /// check is seen and work queued after it rings.
    pub fn sleep(&self, socket: &UdpSocket, deadline: Option<Instant>, idle: impl Fn() -> bool) {
        self.sleep_watching(Some(socket), deadline, idle);
    }

    /// Like [`Self::sleep`], but datagrams arriving on the socket and direct packets
    /// ([`Self::ring_for_packet`]) do not wake the worker: it sleeps until `deadline` or a
    /// command's ring, and receives what queued meanwhile then (the worker
    /// does so when nothing it would do with a datagram is wanted before its next mixer tick).
    pub fn sleep_until(&self, socket: &UdpSocket, deadline: Instant, idle: impl Fn() -> bool) {
        // Without eventfd the socket's read timeout is the only nap: keep watching it.
        let watch = if cfg!(target_os = "linux") { None } else { Some(socket) };
        self.packets_wait.store(true, SeqCst);
        self.sleep_watching(watch, Some(deadline), idle);
        self.packets_wait.store(false, SeqCst);
    }

    fn sleep_watching(&self, socket: Option<&UdpSocket>, deadline: Option<Instant>, idle: impl Fn() -> bool) {
        self.sleeping.store(true, SeqCst);
        if !idle() {
            self.sleeping.store(false, SeqCst);
            return;
        }
        let timeout = deadline.map(|at| at.saturating_duration_since(Instant::now()));
        if timeout != Some(Duration::ZERO) {
            self.wait(socket, timeout);
        }
        self.sleeping.store(false, SeqCst);
    }

    #[cfg(target_os = "linux")]
    fn wait(&self, socket: Option<&UdpSocket>, timeout: Option<Duration>) {
        use std::os::fd::AsRawFd;
        // The eventfd first; the socket (when watched) second, or -1, which ppoll ignores.
        let socket_fd = socket.map_or(-1, |s| s.as_raw_fd());
        let mut fds = [
            libc::pollfd { fd: self.eventfd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: socket_fd, events: libc::POLLIN, revents: 0 },
        ];
        let spec = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: libc::c_long::from(t.subsec_nanos() as i32),
        });
        let spec_ptr = spec.as_ref().map_or(std::ptr::null(), |s| s as *const libc::timespec);
        // SAFETY: `fds` and `spec` live for the call; a null timeout blocks until an event.
        let ready = unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, spec_ptr, std::ptr::null()) };
        if ready > 0 && fds[0].revents != 0 {
            let mut count: u64 = 0;
            // SAFETY: reads 8 bytes into a u64 on this frame from our non-blocking eventfd.
            let _ = unsafe { libc::read(self.eventfd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn wait(&self, _socket: Option<&UdpSocket>, timeout: Option<Duration>) {
        // The worker's socket has a FALLBACK_NAP read timeout: its next receive waits instead.
        let _ = timeout;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_does_not_ring_a_worker_that_sleeps_until_its_tick_but_a_command_does() {
        let bell = Doorbell::new().unwrap();
        // Asleep watching its socket: a packet rings (and the bell is then taken).
        bell.sleeping.store(true, SeqCst);
        bell.ring_for_packet();
        assert!(!bell.sleeping.load(SeqCst), "a direct packet wakes a worker in `sleep`");
        // Asleep until its tick (`sleep_until`'s state): packets wait, a command still wakes.
        bell.packets_wait.store(true, SeqCst);
        bell.sleeping.store(true, SeqCst);
        bell.ring_for_packet();
        assert!(bell.sleeping.load(SeqCst), "the packet waits for the tick");
        bell.ring();
        assert!(!bell.sleeping.load(SeqCst), "a command rings");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sleep_until_returns_at_its_deadline_with_the_socket_unwatched() {
        let bell = Doorbell::new().unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"x", socket.local_addr().unwrap()).unwrap();
        let deadline = Instant::now() + Duration::from_millis(30);
        bell.sleep_until(&socket, deadline, || true);
        assert!(Instant::now() >= deadline, "a readable socket did not end the sleep");
        assert!(!bell.packets_wait.load(SeqCst), "packets ring again once awake");
    }
}
