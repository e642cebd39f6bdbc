//! The drop counter against a real drop: a socket with the smallest receive buffer the kernel
//! allows, flooded on loopback and never read, then drained: every datagram sent is either
//! received or counted as dropped, and `/metrics` shows the same figure.

use super::*;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

fn shrink_receive_buffer(socket: &UdpSocket) {
    let bytes: libc::c_int = 1; // the kernel rounds it up to its minimum (~2 KiB)
    // SAFETY: valid fd, pointer to a c_int that lives for the call, correct length.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "{}", io::Error::last_os_error());
}

#[test]
fn parses_the_proc_table_columns() {
    let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops";
    assert_eq!(parse_line(header), None);
    let v4 = "  812: 0100007F:A1B2 00000000:0000 07 00000000:00000900 00:00000000 00000000     0        0 4242 2 0000000000000000 17";
    assert_eq!(parse_line(v4), Some(UdpLine { port: 0xA1B2, inode: 4242, drops: 17 }));
    let v6 = "  100: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 99 2 0000000000000000 0";
    assert_eq!(parse_line(v6), Some(UdpLine { port: 80, inode: 99, drops: 0 }));
}

#[test]
fn a_flooded_socket_with_a_tiny_buffer_counts_exactly_the_datagrams_it_lost() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    shrink_receive_buffer(&receiver);
    let port = receiver.local_addr().unwrap().port();
    let inode = own_udp_socket_inode(port).unwrap().expect("our socket is in /proc/net/udp");
    assert_eq!(own_udp_socket_inode(0).unwrap(), None);
    let before = udp_receive_drops(&[inode]).unwrap();
    assert_eq!(before, 0);

    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sent = 500u64;
    for i in 0..sent {
        sender.send_to(&[i as u8; 1000], ("127.0.0.1", port)).unwrap();
    }
    receiver.set_nonblocking(true).unwrap();
    let mut received = 0u64;
    let mut buf = [0u8; 2000];
    while receiver.recv(&mut buf).is_ok() {
        received += 1;
    }
    let dropped = udp_receive_drops(&[inode]).unwrap();
    assert!(dropped > 0, "a ~2 KiB buffer cannot hold {sent} datagrams of 1,000 bytes");
    assert_eq!(received + dropped, sent, "loopback loses nothing else: received {received}, dropped {dropped}");

    let metrics = crate::PalaverMetrics::new().unwrap();
    metrics.watch_udp_socket(UdpSocketKind::Quic, port);
    let text = metrics.render();
    let line = format!("palaver_udp_receive_drops_total{{socket=\"quic\"}} {dropped}");
    assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
}
