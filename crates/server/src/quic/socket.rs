//! The QUIC endpoint's UDP socket, bound here rather than by quinn so its kernel buffers can be
//! sized for bursts like the media workers' (the kernel default, ~208 KiB, overflowed under a
//! flood of junk before quinn could read it). The kernel may clamp the request: the sizes it
//! granted are logged, with a warning when short of the request.

use std::io;
use std::net::{SocketAddr, UdpSocket};

/// Receive and send buffer sizes the kernel reports for a socket (Linux reports twice what
/// it grants for payload, the rest being its bookkeeping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSizes {
    pub receive: usize,
    pub send: usize,
}

/// Bind `listen` and ask for `bytes` of receive and send buffer (forced past
/// `net.core.{r,w}mem_max` when the process may, else within it).
pub fn bind_with_buffers(listen: SocketAddr, bytes: usize) -> io::Result<(UdpSocket, BufferSizes)> {
    let socket = UdpSocket::bind(listen)?;
    let sizes = set_buffer_sizes(&socket, bytes)?;
    if sizes.receive < bytes || sizes.send < bytes {
        tracing::warn!(
            requested = bytes,
            receive = sizes.receive,
            send = sizes.send,
            "the kernel clamped the QUIC socket buffers (raise net.core.rmem_max / wmem_max, or run with CAP_NET_ADMIN)"
        );
    } else {
        tracing::info!(receive = sizes.receive, send = sizes.send, "QUIC socket buffers");
    }
    Ok((socket, sizes))
}

#[cfg(target_os = "linux")]
fn set_buffer_sizes(socket: &UdpSocket, bytes: usize) -> io::Result<BufferSizes> {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let value = bytes.min(i32::MAX as usize / 2) as libc::c_int;
    let set = |option: libc::c_int| {
        // SAFETY: valid fd, pointer to a c_int that lives for the call, correct length.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    let get = |option: libc::c_int| -> io::Result<usize> {
        let mut out: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: valid fd, out-pointers to a c_int and its length that live for the call.
        let rc =
            unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, option, (&mut out as *mut libc::c_int).cast(), &mut len) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(out.max(0) as usize)
    };
    for (forced, plain) in [(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF), (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)] {
        if set(forced) != 0 && set(plain) != 0 {
            tracing::debug!(option = plain, error = %io::Error::last_os_error(), "could not resize the QUIC socket buffer");
        }
    }
    Ok(BufferSizes { receive: get(libc::SO_RCVBUF)?, send: get(libc::SO_SNDBUF)? })
}

#[cfg(not(target_os = "linux"))]
fn set_buffer_sizes(_socket: &UdpSocket, bytes: usize) -> io::Result<BufferSizes> {
    Ok(BufferSizes { receive: bytes, send: bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_gets_at_least_the_requested_buffers_or_reports_the_clamp() {
        let requested = 8 << 20;
        let (socket, sizes) = bind_with_buffers("127.0.0.1:0".parse().unwrap(), requested).unwrap();
        assert_ne!(socket.local_addr().unwrap().port(), 0);
        // With CAP_NET_ADMIN it gets the request whole; without, the kernel's cap
        // (`net.core.rmem_max`), never the ~208 KiB default when the cap allows more.
        let cap: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap().trim().parse().unwrap();
        assert!(sizes.receive >= requested.min(cap), "{sizes:?}, rmem_max {cap}");
        let wcap: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_max").unwrap().trim().parse().unwrap();
        assert!(sizes.send >= requested.min(wcap), "{sizes:?}, wmem_max {wcap}");
    }
}
