//! Batched UDP receive for a worker: `recvmmsg` into preallocated slots (Linux), with a
//! one-datagram-per-syscall fallback elsewhere, and the socket-address conversions the send
//! side ([`super::send`]) shares. Nothing here allocates after construction.

use std::io;
use std::net::{SocketAddr, UdpSocket};

/// Datagrams per receive syscall.
pub const BATCH: usize = 64;
/// Receive slot size (anything longer is truncated by the kernel and fails parsing).
const RECV_SLOT: usize = 2048;

/// Preallocated receive slots.
pub struct RecvBatch {
    data: Vec<u8>,
    lens: [usize; BATCH],
    from: [Option<SocketAddr>; BATCH],
    #[cfg(target_os = "linux")]
    names: Vec<libc::sockaddr_storage>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    pub fn new() -> Self {
        Self {
            data: vec![0; BATCH * RECV_SLOT],
            lens: [0; BATCH],
            from: [None; BATCH],
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
            #[cfg(target_os = "linux")]
            names: vec![unsafe { std::mem::zeroed() }; BATCH],
        }
    }

    /// Datagram `i` of the last receive: its source and its bytes (mutable, for in-place SRTP).
    pub fn datagram(&mut self, i: usize) -> Option<(SocketAddr, &mut [u8])> {
        let from = self.from.get(i).copied().flatten()?;
        let len = self.lens[i];
        Some((from, &mut self.data[i * RECV_SLOT..i * RECV_SLOT + len]))
    }

    /// Receives up to [`BATCH`] datagrams, blocking until at least one arrives or the socket's
    /// read timeout passes (then `WouldBlock`/`TimedOut`).
    #[cfg(target_os = "linux")]
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: iovec/mmsghdr are plain old data; zero is a valid initial value.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let base = self.data.as_mut_ptr();
        for i in 0..BATCH {
            // SAFETY: slot i lies within `data` (BATCH * RECV_SLOT bytes).
            iov[i].iov_base = unsafe { base.add(i * RECV_SLOT) }.cast();
            iov[i].iov_len = RECV_SLOT;
            msgs[i].msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every pointer in `msgs` refers to live buffers owned by `self` or this frame.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as _,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, msg) in msgs.iter().enumerate().take(n) {
            self.lens[i] = msg.msg_len as usize;
            self.from[i] = from_sockaddr(&self.names[i]);
        }
        Ok(n)
    }

    #[cfg(not(target_os = "linux"))]
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let (len, from) = socket.recv_from(&mut self.data[..RECV_SLOT])?;
        self.lens[0] = len;
        self.from[0] = Some(from);
        Ok(1)
    }
}

#[cfg(target_os = "linux")]
fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for AF_INET.
            let a = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 for AF_INET6.
            let a = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be(a.sin6_port), a.sin6_flowinfo, a.sin6_scope_id)))
        }
        _ => None,
    }
}

#[cfg(target_os = "linux")]
pub(super) fn to_sockaddr(addr: &SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let s = unsafe { &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = a.port().to_be();
            s.sin_addr = libc::in_addr { s_addr: u32::from(*a.ip()).to_be() };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in6.
            let s = unsafe { &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = a.port().to_be();
            s.sin6_flowinfo = a.flowinfo();
            s.sin6_addr = libc::in6_addr { s6_addr: a.ip().octets() };
            s.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Transmit;
    use crate::net::SendBatch;
    use std::time::Duration;

    #[test]
    fn batches_round_trip_over_loopback() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut send = SendBatch::new(a.try_clone().unwrap());
        let to = b.local_addr().unwrap();
        for i in 0..100u8 {
            let buf = send.buffer();
            buf[..3].copy_from_slice(&[i, i, i]);
            send.commit(3, to);
        }
        send.flush();
        assert_eq!(send.take_failed(), 0);
        let mut recv = RecvBatch::new();
        let mut got = Vec::new();
        while got.len() < 100 {
            let n = recv.recv(&b).unwrap();
            for i in 0..n {
                let (from, data) = recv.datagram(i).unwrap();
                assert_eq!(from, a.local_addr().unwrap());
                got.push(data.to_vec());
            }
        }
        assert_eq!(got.len(), 100);
        assert_eq!(got[99], vec![99, 99, 99]);
        let v6 = UdpSocket::bind("[::1]:0");
        if let Ok(v6) = v6 {
            let mut send = SendBatch::new(v6.try_clone().unwrap());
            let buf = send.buffer();
            buf[0] = 7;
            send.commit(1, v6.local_addr().unwrap());
            send.flush();
            v6.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let n = recv.recv(&v6).unwrap();
            assert_eq!(n, 1);
            assert_eq!(recv.datagram(0).unwrap().0, v6.local_addr().unwrap());
        }
    }
}
