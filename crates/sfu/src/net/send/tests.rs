//! SendBatch over loopback: interleaved runs to several destinations arrive complete, intact
//! and in order per destination, with GSO grouping and without; the grouping rules themselves.

use super::*;
use crate::net::RecvBatch;
use std::time::Duration;

/// A datagram of `len` bytes tagged with its destination and sequence number.
fn datagram(dest: u8, seq: u8, len: usize) -> Vec<u8> {
    let mut d = vec![dest ^ seq; len];
    d[0] = dest;
    d[1] = seq;
    d
}

fn queue(batch: &mut SendBatch, data: &[u8], to: SocketAddr) {
    batch.buffer()[..data.len()].copy_from_slice(data);
    batch.commit(data.len(), to);
}

/// Reads datagrams from `socket` until `count` arrived (or 1 s without any).
fn receive(socket: &UdpSocket, count: usize) -> Vec<Vec<u8>> {
    socket.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut recv = RecvBatch::new();
    let mut got = Vec::new();
    while got.len() < count {
        let Ok(n) = recv.recv(socket) else { break };
        for i in 0..n {
            got.push(recv.datagram(i).unwrap().1.to_vec());
        }
    }
    got
}

/// Three receivers, a 5-packet "frame" fanned out to each (the last packet shorter), queued
/// interleaved the way the router emits them.
fn interleaved_frames(gso: bool) {
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let receivers: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let mut batch = SendBatch::with_gso(sender, gso);
    assert_eq!(batch.gso(), gso && gso_available(&UdpSocket::bind("127.0.0.1:0").unwrap()));
    let sizes = [1100, 1100, 1100, 1100, 612];
    let mut expected = vec![Vec::new(); 3];
    for frame in 0..2u8 {
        for (seq, &len) in sizes.iter().enumerate() {
            for (dest, r) in receivers.iter().enumerate() {
                let d = datagram(dest as u8, frame * 10 + seq as u8, len);
                queue(&mut batch, &d, r.local_addr().unwrap());
                expected[dest].push(d);
            }
        }
    }
    if batch.gso() {
        batch.arrange();
        let runs: Vec<usize> = (0..6).map(|k| batch.run_length(k * 5)).collect();
        assert_eq!(runs, vec![5; 6], "each destination's frame is one GSO message");
    }
    batch.flush();
    assert_eq!(batch.take_failed(), 0);
    for (dest, r) in receivers.iter().enumerate() {
        let got = receive(r, expected[dest].len());
        assert_eq!(got, expected[dest], "destination {dest} (gso {gso}) got every datagram, intact, in order");
    }
}

#[test]
fn interleaved_runs_arrive_intact_and_in_order_with_gso() {
    interleaved_frames(true);
}

#[test]
fn interleaved_runs_arrive_intact_and_in_order_without_gso() {
    interleaved_frames(false);
}

#[test]
fn runs_break_on_destination_longer_datagrams_and_after_a_shorter_one() {
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a, b) = (UdpSocket::bind("127.0.0.1:0").unwrap(), UdpSocket::bind("127.0.0.1:0").unwrap());
    let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let mut batch = SendBatch::with_gso(sender, true);
    if !batch.gso() {
        return; // no UDP_SEGMENT on this kernel: every run is one datagram
    }
    let plan = [(to_a, 1000), (to_a, 1000), (to_a, 1200), (to_b, 1000), (to_a, 500), (to_a, 1000), (to_a, 1000)];
    for (seq, &(to, len)) in plan.iter().enumerate() {
        queue(&mut batch, &datagram(0, seq as u8, len), to);
    }
    batch.arrange();
    let mut runs = Vec::new();
    let mut pos = 0;
    while pos < batch.count {
        let run = batch.run_length(pos);
        runs.push(run);
        pos += run;
    }
    // to_a: [1000, 1000] | [1200, 500] | [1000, 1000]; to_b: [1000] (order by destination key).
    let mut sorted = runs.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![1, 2, 2, 2], "runs {runs:?}");
    batch.flush();
    assert_eq!(batch.take_failed(), 0);
    let got = receive(&a, 6);
    let seqs: Vec<u8> = got.iter().map(|d| d[1]).collect();
    assert_eq!(seqs, vec![0, 1, 2, 4, 5, 6]);
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), vec![1000, 1000, 1200, 500, 1000, 1000]);
    assert_eq!(receive(&b, 1).len(), 1);
}

#[test]
fn more_than_one_batch_flushes_on_its_own() {
    // Spread over three receivers so no receive buffer overflows (~100 datagrams each).
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let receivers: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let mut batch = SendBatch::new(sender);
    let total = SEND_CAPACITY + 44;
    for i in 0..total {
        let dest = i % 3;
        queue(&mut batch, &datagram(dest as u8, (i / 3) as u8, 200), receivers[dest].local_addr().unwrap());
    }
    batch.flush();
    assert_eq!(batch.take_failed(), 0);
    for (dest, r) in receivers.iter().enumerate() {
        let want = (total - dest).div_ceil(3);
        let got = receive(r, want);
        assert_eq!(got.len(), want, "destination {dest}");
        assert!(got.iter().enumerate().all(|(i, d)| d[1] == i as u8), "in order");
    }
}

#[test]
fn destination_keys_separate_ports_and_addresses() {
    let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let b: SocketAddr = "10.0.0.1:5001".parse().unwrap();
    let c: SocketAddr = "[::1]:5000".parse().unwrap();
    let d: SocketAddr = "[::2]:5000".parse().unwrap();
    let keys = [destination_key(a), destination_key(b), destination_key(c), destination_key(d)];
    assert!(keys.iter().all(|k| k >> 48 == 0), "48-bit keys leave room for the slot index");
    assert_ne!(keys[0], keys[1]);
    assert_ne!(keys[2], keys[3]);
}
