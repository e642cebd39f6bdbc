//! The kernel's share of a forwarded packet on loopback: sender-thread CPU per UDP datagram
//! sent through the media worker's own [`SendBatch`] (`sendmmsg`, 64 messages a call) to `K`
//! loopback sockets. Nothing of palaver's routing or SRTP runs here: this is the floor under
//! the "server CPU per forwarded packet on loopback" figure of `palaver-load`, on this machine.
//! - `udp_loopback_send`: one 100-byte datagram per socket per burst, as a mixer tick or an
//!   audio fan-out sends them (runs of one: GSO cannot help);
//! - `udp_loopback_video`: a 5-packet video frame (4 × 1,100 B + 600 B) to every socket per
//!   burst, queued interleaved as the router fans packets out, with GSO runs (`SendBatch::new`)
//!   and without (`SendBatch::with_gso(_, false)`).
//!
//! On loopback the kernel runs the receiver's half (IP/UDP receive, socket enqueue, waking
//! the reader) in the sender's context, so it is charged to the sender. Readers:
//! - `epoll_readers`: a thread sleeping in `epoll_wait` over the `K` sockets (how a tokio
//!   client such as `palaver-load` or a browser waits), bursts paced 2 ms apart so it sleeps
//!   between them;
//! - `busy_reader`: a thread polling the sockets without sleeping (no wake-ups to pay).
//!
//! CPU time of the sending thread (`support/thread_cpu.rs`); "ns cpu/element" = per datagram.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::Duration;

use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use palaver_sfu::engine::Transmit;
use palaver_sfu::net::SendBatch;
use support::thread_cpu::{ThreadCpuTime, thread_cpu_ns};

const PAYLOAD: usize = 100;

#[derive(Clone, Copy, PartialEq)]
enum Reader {
    Epoll,
    Busy,
}

/// `K` bound receiver sockets and the thread that drains them.
struct Receivers {
    addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Receivers {
    fn start(k: usize, reader: Reader) -> Self {
        let sockets: Vec<UdpSocket> = (0..k)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
                s.set_nonblocking(true).expect("nonblocking");
                s
            })
            .collect();
        let addrs = sockets.iter().map(|s| s.local_addr().expect("addr")).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let (stop2, received2) = (stop.clone(), received.clone());
        let thread = std::thread::spawn(move || match reader {
            Reader::Epoll => epoll_loop(&sockets, &stop2, &received2),
            Reader::Busy => busy_loop(&sockets, &stop2, &received2),
        });
        Self { addrs, stop, received, thread: Some(thread) }
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn drain(socket: &UdpSocket, buf: &mut [u8], received: &AtomicU64) {
    while socket.recv(buf).is_ok() {
        received.fetch_add(1, Relaxed);
    }
}

fn busy_loop(sockets: &[UdpSocket], stop: &AtomicBool, received: &AtomicU64) {
    let mut buf = [0u8; 2048];
    while !stop.load(Relaxed) {
        sockets.iter().for_each(|s| drain(s, &mut buf, received));
    }
}

fn epoll_loop(sockets: &[UdpSocket], stop: &AtomicBool, received: &AtomicU64) {
    // SAFETY: plain epoll syscalls on descriptors owned by `sockets`, which outlive the loop.
    let epoll = unsafe { libc::epoll_create1(0) };
    assert!(epoll >= 0, "epoll_create1");
    for (i, s) in sockets.iter().enumerate() {
        let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: i as u64 };
        // SAFETY: see above.
        let rc = unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut event) };
        assert_eq!(rc, 0, "epoll_ctl");
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = [0u8; 2048];
    while !stop.load(Relaxed) {
        // SAFETY: `events` has room for 256 entries.
        let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), 256, 20) };
        for event in events.iter().take(n.max(0) as usize) {
            drain(&sockets[event.u64 as usize], &mut buf, received);
        }
    }
    // SAFETY: closing the descriptor created above.
    unsafe { libc::close(epoll) };
}

/// Queues one datagram of each size in `frame` to every receiver (interleaved, as the router
/// fans packets out) and flushes.
fn burst(tx: &mut SendBatch, addrs: &[SocketAddr], frame: &[usize]) {
    for &len in frame {
        for &to in addrs {
            tx.buffer()[..len].fill(0x5A);
            tx.commit(len, to);
        }
    }
    tx.flush();
}

/// Benchmarks bursts of `frame` to `k` sockets drained by `reader`, `gap` apart, and prints
/// how many datagrams arrived. An empty `name` labels the run `gso` or `no_gso`.
fn bench_bursts(
    group: &mut BenchmarkGroup<'_, ThreadCpuTime>,
    name: &str,
    (k, reader, gap): (usize, Reader, Duration),
    frame: &[usize],
    gso: bool,
) {
    let receivers = Receivers::start(k, reader);
    let mut tx = SendBatch::with_gso(UdpSocket::bind("127.0.0.1:0").expect("bind sender"), gso);
    // An empty name labels the run by whether GSO is really on.
    let label = match (name, tx.gso()) {
        ("", true) => "gso",
        ("", false) => "no_gso",
        (name, _) => name,
    };
    let name = format!("{label}/destinations={k}");
    let before = receivers.received.load(Relaxed);
    let per_burst = (k * frame.len()) as u64;
    let mut sent = 0u64;
    group.throughput(Throughput::Elements(per_burst));
    group.bench_function(&name, |b| {
        b.iter_custom(|iters| {
            let mut cpu = 0;
            for _ in 0..iters {
                let start = thread_cpu_ns();
                burst(&mut tx, &receivers.addrs, frame);
                cpu += thread_cpu_ns() - start;
                sent += per_burst;
                if !gap.is_zero() {
                    std::thread::sleep(gap);
                }
            }
            cpu
        })
    });
    std::thread::sleep(Duration::from_millis(50));
    let got = receivers.received.load(Relaxed) - before;
    println!("{name}: {got} of {sent} datagrams received, {} send failures", tx.take_failed());
}

fn loopback(c: &mut Criterion<ThreadCpuTime>) {
    let mut group = c.benchmark_group("udp_loopback_send");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(20);
    for (reader, name, gap) in
        [(Reader::Epoll, "epoll_readers", Duration::from_millis(2)), (Reader::Busy, "busy_reader", Duration::ZERO)]
    {
        for k in [64usize, 256] {
            bench_bursts(&mut group, name, (k, reader, gap), &[PAYLOAD], false);
        }
    }
    group.finish();
}

fn video(c: &mut Criterion<ThreadCpuTime>) {
    const FRAME: [usize; 5] = [1_100, 1_100, 1_100, 1_100, 600];
    let mut group = c.benchmark_group("udp_loopback_video");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(20);
    for k in [20usize, 50] {
        for gso in [false, true] {
            bench_bursts(&mut group, "", (k, Reader::Epoll, Duration::from_millis(2)), &FRAME, gso);
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = loopback, video
}
criterion_main!(benches);
