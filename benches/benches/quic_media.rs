//! The QUIC media path per packet, in process (issue #18), beside the SRTP path in the same run:
//! two QUIC participants in one router, each publishing Opus (100-byte payloads, RFC 6464 level)
//! and consuming the other's, so every step is 2 packets in and 2 forwarded out.
//!
//! - `quic_datagram`: the default carrier. Real QUIC 1-RTT packets from `quinn-proto` (the
//!   sans-IO core under quinn, with the server's ring/rustls TLS 1.3 and palaver's ALPN): the
//!   server endpoint decodes and decrypts each client datagram, the connection hands the RTP out
//!   as a DATAGRAM frame, the worker engine routes it (`Engine::handle_direct`) into the other
//!   participant's `DirectLink` egress ring, and that connection frames, encrypts and packetizes
//!   it (`poll_transmit`), with the ACKs and timers both connections generate.
//! - `quic_srtp`: the SRTP carrier. The same two QUIC connections only export their TLS keying
//!   material (`EXPORTER-palaver-srtp`); media is AEAD_AES_128_GCM SRTP through
//!   `Engine::handle_datagram` (demux by address, in-place unprotect, route, protect).
//!
//! Only the server's work is timed (CPU time of this thread, `support/thread_cpu.rs`, read around
//! each step's server part, minus the cost of the two clock reads): the clients' encryption,
//! decryption and ACKs run between the timed sections, and no socket is used on either side (the kernel's share is `udp_loopback`'s and `palaver-load`'s business).
//! Figures are CPU ns per forwarded packet (one in + one out).
//!
//! Run: `cargo bench -p palaver-benches --bench quic_media`.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palaver_core::protocol::quic::{ALPN, SRTP_EXPORTER_LABEL, SRTP_KEYING_BYTES, SrtpKeying};
use palaver_sfu::engine::{Command, Engine, RouterId, Transmit, TransportSpec, WorkerCounters};
use palaver_sfu::net::{DirectEgress, DirectLink};
use palaver_sfu::router::{ConsumerId, ConsumerSpec, ProducerId, ProducerSpec, RouterConfig, TransportId};
use palaver_sfu::srtp::{Profile, SrtpContext, SrtpKeys};
use quinn_proto::{
    ClientConfig, Connection, ConnectionHandle, DatagramEvent, Endpoint, EndpointConfig, ServerConfig, TransportConfig,
};
use support::thread_cpu::{ThreadCpuTime, thread_cpu_ns};

const ROOM: RouterId = RouterId(1);
const PAYLOAD: usize = 100;
/// 20 ms steps per criterion iteration (2 packets in and 2 out each).
const STEPS: usize = 10;
const SERVER: &str = "10.0.0.1:4433";

/// The server's sink: UDP datagrams are counted (as in the `forward` bench), direct packets go
/// through the worker's real egress ring.
struct BenchTransmit {
    buf: Vec<u8>,
    udp: u64,
    direct: DirectEgress,
}

impl Transmit for BenchTransmit {
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.buf
    }
    fn commit(&mut self, len: usize, _to: SocketAddr) {
        std::hint::black_box(&self.buf[..len]);
        self.udp += 1;
    }
    fn commit_direct(&mut self, len: usize, to: &DirectLink) -> bool {
        self.direct.send(to, &self.buf[..len])
    }
}

/// What one pair of CPU-clock reads costs (a syscall each): the smallest of many, subtracted
/// from every timed step so the figure is the server's work alone.
fn clock_overhead_ns() -> u64 {
    (0..10_000)
        .map(|_| {
            let start = thread_cpu_ns();
            thread_cpu_ns().saturating_sub(start)
        })
        .min()
        .unwrap_or(0)
}

fn tls_configs() -> (ServerConfig, ClientConfig) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    server.alpn_protocols = vec![ALPN.to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![ALPN.to_vec()];
    let server = quinn_proto::crypto::rustls::QuicServerConfig::try_from(server).unwrap();
    let mut server = ServerConfig::with_crypto(Arc::new(server));
    // As the server's endpoint (`crates/server/src/quic/mod.rs`): one signaling stream.
    let mut transport = TransportConfig::default();
    transport.max_concurrent_bidi_streams(1u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    server.transport_config(Arc::new(transport));
    let client = quinn_proto::crypto::rustls::QuicClientConfig::try_from(client).unwrap();
    (server, ClientConfig::new(Arc::new(client)))
}

/// One QUIC side: an endpoint and its connections, with the datagrams it has to send.
struct Side {
    endpoint: Endpoint,
    connections: HashMap<ConnectionHandle, Connection>,
    /// Which participant each connection is (the server learns it from the peer's address).
    peers: HashMap<ConnectionHandle, usize>,
    buf: Vec<u8>,
}

impl Side {
    fn new(server: Option<ServerConfig>) -> Self {
        let endpoint = Endpoint::new(Arc::new(EndpointConfig::default()), server.map(Arc::new), false, None);
        Self { endpoint, connections: HashMap::new(), peers: HashMap::new(), buf: Vec::with_capacity(2048) }
    }

    /// Takes one UDP datagram from `from` (participant `peer`).
    fn receive(&mut self, now: Instant, from: SocketAddr, peer: usize, data: BytesMut, out: &mut Vec<Datagram>) {
        match self.endpoint.handle(now, from, None, None, data, &mut self.buf) {
            Some(DatagramEvent::ConnectionEvent(handle, event)) => {
                if let Some(connection) = self.connections.get_mut(&handle) {
                    connection.handle_event(event);
                }
            }
            Some(DatagramEvent::NewConnection(incoming)) => {
                let (handle, connection) = self.endpoint.accept(incoming, now, &mut self.buf, None).unwrap();
                self.connections.insert(handle, connection);
                self.peers.insert(handle, peer);
            }
            Some(DatagramEvent::Response(transmit)) => {
                out.push(Datagram { to: transmit.destination, data: BytesMut::from(&self.buf[..transmit.size]) })
            }
            None => {}
        }
    }

    /// Runs one connection's bookkeeping: endpoint events, timers, application events, and
    /// every packet it wants to send (one QUIC packet per UDP datagram, no GSO).
    fn drive(&mut self, now: Instant, handle: ConnectionHandle, out: &mut Vec<Datagram>) {
        let connection = self.connections.get_mut(&handle).unwrap();
        if connection.poll_timeout().is_some_and(|at| at <= now) {
            connection.handle_timeout(now);
        }
        while let Some(event) = connection.poll_endpoint_events() {
            if let Some(event) = self.endpoint.handle_event(handle, event) {
                connection.handle_event(event);
            }
        }
        while connection.poll().is_some() {}
        while let Some(transmit) = connection.poll_transmit(now, 1, &mut self.buf) {
            out.push(Datagram { to: transmit.destination, data: BytesMut::from(&self.buf[..transmit.size]) });
            self.buf.clear();
        }
    }

    fn drive_all(&mut self, now: Instant, out: &mut Vec<Datagram>) {
        let handles: Vec<_> = self.connections.keys().copied().collect();
        for handle in handles {
            self.drive(now, handle, out);
        }
    }
}

struct Datagram {
    to: SocketAddr,
    data: BytesMut,
}

/// Two clients connected to one server endpoint.
struct QuicPair {
    server: Side,
    clients: [Side; 2],
    addrs: [SocketAddr; 2],
    /// The server-side handle of each participant's connection.
    server_handles: [ConnectionHandle; 2],
    client_handles: [ConnectionHandle; 2],
    now: Instant,
}

impl QuicPair {
    fn connect() -> Self {
        let (server_config, client_config) = tls_configs();
        let server_addr: SocketAddr = SERVER.parse().unwrap();
        let addrs: [SocketAddr; 2] = ["10.0.1.1:5000".parse().unwrap(), "10.0.1.2:5000".parse().unwrap()];
        let mut clients = [Side::new(None), Side::new(None)];
        let now = Instant::now();
        let client_handles = [0, 1].map(|i| {
            let (handle, connection) =
                clients[i].endpoint.connect(now, client_config.clone(), server_addr, "localhost").unwrap();
            clients[i].connections.insert(handle, connection);
            handle
        });
        let server = Side::new(Some(server_config));
        let mut pair = Self { server, clients, addrs, server_handles: [ConnectionHandle(0); 2], client_handles, now };
        for _ in 0..20 {
            pair.exchange();
            pair.now += Duration::from_millis(1);
        }
        for i in 0..2 {
            let client = &pair.clients[i].connections[&pair.client_handles[i]];
            assert!(!client.is_handshaking(), "client {i} connected");
        }
        for (&handle, &peer) in &pair.server.peers {
            pair.server_handles[peer] = handle;
        }
        pair
    }

    /// Moves every pending datagram both ways (one round).
    fn exchange(&mut self) {
        let mut to_server = Vec::new();
        for (i, client) in self.clients.iter_mut().enumerate() {
            client.drive_tagged(self.now, i, &mut to_server);
        }
        let mut to_clients = Vec::new();
        for (from, data) in to_server {
            self.server.receive(self.now, self.addrs[from], from, data, &mut to_clients);
        }
        self.server.drive_all(self.now, &mut to_clients);
        self.clients_receive(to_clients);
    }

    fn peer_of(&self, addr: SocketAddr) -> usize {
        self.addrs.iter().position(|a| *a == addr).unwrap()
    }

    fn clients_receive(&mut self, datagrams: Vec<Datagram>) {
        let server_addr: SocketAddr = SERVER.parse().unwrap();
        for datagram in datagrams {
            let peer = self.peer_of(datagram.to);
            self.clients[peer].receive(self.now, server_addr, 0, datagram.data, &mut Vec::new());
        }
        for (i, client) in self.clients.iter_mut().enumerate() {
            let connection = client.connections.get_mut(&self.client_handles[i]).unwrap();
            while connection.datagrams().recv().is_some() {}
        }
    }

    fn exported_keys(&mut self, peer: usize) -> SrtpKeying {
        let mut material = [0u8; SRTP_KEYING_BYTES];
        let connection = &self.server.connections[&self.server_handles[peer]];
        connection.crypto_session().export_keying_material(&mut material, SRTP_EXPORTER_LABEL, b"").unwrap();
        SrtpKeying::from_exported(&material)
    }
}

impl Side {
    /// [`Self::drive_all`], each datagram tagged with the sending participant.
    fn drive_tagged(&mut self, now: Instant, peer: usize, out: &mut Vec<(usize, BytesMut)>) {
        let mut sent = Vec::new();
        self.drive_all(now, &mut sent);
        out.extend(sent.into_iter().map(|d| (peer, d.data)));
    }
}

/// Participant `i` publishes SSRC `0x100 + i` and consumes the other's producer.
fn wire_room(core: &mut Engine, tx: &mut BenchTransmit, now: Instant, transports: [Command; 2]) {
    core.handle_command(now, Command::CreateRouter { router: ROOM }, tx).unwrap();
    for command in transports {
        core.handle_command(now, command, tx).unwrap();
    }
    for i in 0..2u32 {
        let spec = ProducerSpec::opus(ProducerId(i), TransportId(i), 111, 0x100 + i, 1);
        core.handle_command(now, Command::AddProducer { router: ROOM, spec }, tx).unwrap();
    }
    for i in 0..2u32 {
        let spec = ConsumerSpec {
            id: ConsumerId(i),
            transport: TransportId(i),
            producer: ProducerId(1 - i),
            ssrc: 0x7000_0000 + i,
            rtx: None,
            paused: false,
            max_height: u16::MAX,
        };
        core.handle_command(now, Command::AddConsumer { router: ROOM, spec }, tx).unwrap();
    }
}

/// Participant `i`'s next plain RTP packet (header, level extension, 100-byte payload).
fn rtp(i: usize, seq: u16, extra: usize) -> Vec<u8> {
    let mut p = vec![0u8; 20 + PAYLOAD + extra];
    p[..12].copy_from_slice(&[0x90, 111, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p[11] = i as u8;
    p[12..20].copy_from_slice(&[0xBE, 0xDE, 0, 1, 0x10, 0x80 | 40, 0, 0]);
    p[20..20 + PAYLOAD].fill(0x42);
    p
}

/// The datagram carrier: server CPU per forwarded packet.
fn quic_datagram(c: &mut Criterion<ThreadCpuTime>) {
    let mut pair = QuicPair::connect();
    let counters = Arc::new(WorkerCounters::default());
    let mut core = Engine::new(RouterConfig::default(), 1, counters.clone());
    let mut tx = BenchTransmit { buf: vec![0; 2048], udp: 0, direct: DirectEgress::new() };
    let links = [DirectLink::new(1024), DirectLink::new(1024)];
    let transports =
        [0, 1].map(|i| Command::AddDirectTransport { id: TransportId(i as u32), router: ROOM, link: links[i].clone() });
    wire_room(&mut core, &mut tx, pair.now, transports);
    let overhead = clock_overhead_ns();
    let mut seq = 0u16;
    let mut to_server: Vec<(usize, BytesMut)> = Vec::new();
    let mut to_clients = Vec::new();
    // One 20 ms step, server side timed: each client datagram in, routed, the other's out.
    let mut step = |pair: &mut QuicPair, timed: &mut u64| {
        pair.now += Duration::from_millis(20);
        seq = seq.wrapping_add(1);
        for i in 0..2 {
            let packet = Bytes::from(rtp(i, seq, 0));
            let client = pair.clients[i].connections.get_mut(&pair.client_handles[i]).unwrap();
            client.datagrams().send(packet, true).unwrap();
            pair.clients[i].drive_tagged(pair.now, i, &mut to_server);
        }
        let start = thread_cpu_ns();
        for (from, data) in to_server.drain(..) {
            pair.server.receive(pair.now, pair.addrs[from], from, data, &mut to_clients);
            let handle = pair.server_handles[from];
            let connection = pair.server.connections.get_mut(&handle).unwrap();
            while let Some(packet) = connection.datagrams().recv() {
                core.handle_direct(pair.now, TransportId(from as u32), &packet, &mut tx);
            }
            for (to, link) in links.iter().enumerate() {
                let connection = pair.server.connections.get_mut(&pair.server_handles[to]).unwrap();
                while let Some(packet) = link.pop_egress() {
                    let _ = connection.datagrams().send(packet, true);
                }
                pair.server.drive(pair.now, pair.server_handles[to], &mut to_clients);
            }
        }
        *timed += (thread_cpu_ns() - start).saturating_sub(overhead);
        pair.clients_receive(std::mem::take(&mut to_clients));
    };
    let mut warm = 0;
    for _ in 0..50 {
        step(&mut pair, &mut warm);
    }
    let forwarded = counters.snapshot().rtp_forwarded;
    assert_eq!(forwarded, 100, "both participants are forwarded to");
    let mut group = c.benchmark_group("quic_media_audio_100B");
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(2 * STEPS as u64));
    group.bench_function("quic_datagram", |b| {
        b.iter_custom(|iters| {
            let mut timed = 0;
            for _ in 0..iters * STEPS as u64 {
                step(&mut pair, &mut timed);
            }
            timed
        })
    });
    group.finish();
    let snapshot = counters.snapshot();
    assert_eq!(snapshot.dropped_total(), 0, "{snapshot:?}");
}

/// The SRTP carrier: the same connections' exported keys, media through the worker's UDP path.
fn quic_srtp(c: &mut Criterion<ThreadCpuTime>) {
    let mut pair = QuicPair::connect();
    let counters = Arc::new(WorkerCounters::default());
    let mut core = Engine::new(RouterConfig::default(), 1, counters.clone());
    let mut tx = BenchTransmit { buf: vec![0; 2048], udp: 0, direct: DirectEgress::new() };
    let keying = [pair.exported_keys(0), pair.exported_keys(1)];
    let transports = [0, 1].map(|i| {
        Command::AddTransport(Box::new(TransportSpec {
            id: TransportId(i as u32),
            router: ROOM,
            ice_ufrag: format!("u{i}"),
            ice_pwd: format!("p{i}"),
            remote: Some(pair.addrs[i]),
            srtp: SrtpKeys::quic_server(&keying[i]),
        }))
    });
    wire_room(&mut core, &mut tx, pair.now, transports);
    let profile = Profile::AeadAes128Gcm;
    let mut clients = keying.each_ref().map(|k| SrtpContext::new(profile, &k.client_key, &k.client_salt).unwrap());
    let overhead = clock_overhead_ns();
    let mut seq = 0u16;
    let mut now = pair.now;
    let mut packets: Vec<(usize, Vec<u8>)> = Vec::with_capacity(2);
    let mut step = |timed: &mut u64| {
        now += Duration::from_millis(20);
        seq = seq.wrapping_add(1);
        for (i, client) in clients.iter_mut().enumerate() {
            let mut p = rtp(i, seq, profile.rtp_overhead());
            let plain = p.len() - profile.rtp_overhead();
            let n = client.protect_rtp(&mut p, plain).unwrap();
            p.truncate(n);
            packets.push((i, p));
        }
        let start = thread_cpu_ns();
        for (from, p) in packets.iter_mut() {
            core.handle_datagram(now, pair.addrs[*from], p, &mut tx);
        }
        *timed += (thread_cpu_ns() - start).saturating_sub(overhead);
        packets.clear();
    };
    let mut warm = 0;
    for _ in 0..50 {
        step(&mut warm);
    }
    assert_eq!(counters.snapshot().rtp_forwarded, 100, "both participants are forwarded to");
    let mut group = c.benchmark_group("quic_media_audio_100B");
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(2 * STEPS as u64));
    group.bench_function("quic_srtp", |b| {
        b.iter_custom(|iters| {
            let mut timed = 0;
            for _ in 0..iters * STEPS as u64 {
                step(&mut timed);
            }
            timed
        })
    });
    group.finish();
    let snapshot = counters.snapshot();
    assert_eq!(snapshot.dropped_total(), 0, "{snapshot:?}");
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = quic_datagram, quic_srtp
}
criterion_main!(benches);
