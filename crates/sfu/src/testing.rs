//! A virtual-time harness for media-plane tests (feature `testing`, and always inside this
//! crate's own tests), in the manner of quinn's test `Pair` and str0m's `progress()`: an
//! [`Engine`] with its [`Outbox`] and a virtual [`Clock`] ([`TestEngine`]), client-side
//! [`Peer`]s that hold both SRTP key sets of their transport, and [`TestEngine::drive`], which
//! moves time forward and runs the engine's timers at the deadlines it asks for. Nothing here
//! reads the real clock after start-up or opens a socket, so a scenario is deterministic:
//!
//! ```
//! use std::time::Duration;
//! use palaver_sfu::engine::{Command, RouterId};
//! use palaver_sfu::srtp::Profile;
//! use palaver_sfu::testing::{Peer, TestEngine};
//!
//! let mut t = TestEngine::new();
//! let alice = Peer::new(1, Profile::Aes128CmHmacSha1_80);
//! t.commands([Command::CreateRouter { router: RouterId(1) }, alice.add_transport(RouterId(1), Some(alice.addr))]);
//! t.drive(Duration::from_secs(1));
//! assert!(t.take_sent().is_empty(), "nothing published, nothing sent");
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::{Command, CommandError, Engine, EngineEvent, MAX_DATAGRAM, RouterId, Transmit, TransportSpec};
use crate::engine::{CountersSnapshot, WorkerCounters};
use crate::mixer::MixerConfig;
use crate::net::{DirectEgress, DirectLink};
use crate::router::{RouterConfig, TransportId};
use crate::srtp::{Profile, SrtpContext, SrtpKeys};

/// Virtual time: starts at a fixed instant and moves only when told.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    now: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Self { now: Instant::now() }
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn advance(&mut self, by: Duration) -> Instant {
        self.now += by;
        self.now
    }

    /// Moves to `at` (never backwards).
    pub fn advance_to(&mut self, at: Instant) -> Instant {
        self.now = self.now.max(at);
        self.now
    }
}

/// A [`Transmit`] that keeps every datagram the engine sends, and delivers packets for direct
/// transports to their links (through the same reused buffers as the worker shell).
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
    /// Datagrams in the order sent.
    pub sent: Vec<(SocketAddr, Vec<u8>)>,
    direct: DirectEgress,
}

impl Transmit for Outbox {
    fn buffer(&mut self) -> &mut [u8] {
        self.buf.resize(MAX_DATAGRAM + 64, 0);
        &mut self.buf
    }
    fn commit(&mut self, len: usize, to: SocketAddr) {
        self.sent.push((to, self.buf[..len].to_vec()));
    }
    fn commit_direct(&mut self, len: usize, to: &DirectLink) -> bool {
        self.direct.send(to, &self.buf[..len])
    }
}

/// A participant as seen from its side of a UDP transport: its address and both SRTP key sets.
pub struct Peer {
    pub addr: SocketAddr,
    pub transport: TransportId,
    pub ufrag: String,
    pub pwd: String,
    /// Protects what this peer sends to the server.
    pub to_server: SrtpContext,
    /// Unprotects what the server sends to this peer.
    pub from_server: SrtpContext,
    pub keys: SrtpKeys,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("addr", &self.addr).field("transport", &self.transport).finish_non_exhaustive()
    }
}

impl Peer {
    /// Peer `n`: transport id `n`, address 127.0.x.y:5000+n, keys derived from `n`.
    pub fn new(n: u32, profile: Profile) -> Self {
        let b = n as u8;
        let client_key: Vec<u8> = (0..16u8).map(|i| i ^ b).collect();
        let client_salt: Vec<u8> = (0..profile.salt_len() as u8).map(|i| i.wrapping_mul(3) ^ b).collect();
        let server_key: Vec<u8> = (0..16u8).map(|i| (i + 100) ^ b).collect();
        let server_salt: Vec<u8> = (0..profile.salt_len() as u8).map(|i| i.wrapping_mul(5) ^ b).collect();
        Self {
            addr: SocketAddr::from(([127, 0, (n >> 8) as u8, b], 5000u16.wrapping_add(n as u16))),
            transport: TransportId(n),
            ufrag: format!("srv{n}"),
            pwd: format!("password-of-peer-{n}"),
            to_server: SrtpContext::new(profile, &client_key, &client_salt).expect("valid test keys"),
            from_server: SrtpContext::new(profile, &server_key, &server_salt).expect("valid test keys"),
            keys: SrtpKeys {
                profile,
                local_master_key: server_key,
                local_master_salt: server_salt,
                remote_master_key: client_key,
                remote_master_salt: client_salt,
            },
        }
    }

    /// Peer `n` as a QUIC participant on the SRTP media carrier: AEAD_AES_128_GCM keys split
    /// from (test) TLS-exported keying material exactly as the server and `palaver-client` do.
    pub fn quic_srtp(n: u32) -> Self {
        use palaver_core::protocol::quic::{SRTP_KEYING_BYTES, SrtpKeying};
        let material: [u8; SRTP_KEYING_BYTES] = std::array::from_fn(|i| (i as u8).wrapping_mul(13) ^ n as u8);
        let keying = SrtpKeying::from_exported(&material);
        let profile = Profile::AeadAes128Gcm;
        Self {
            to_server: SrtpContext::new(profile, &keying.client_key, &keying.client_salt).expect("valid keys"),
            from_server: SrtpContext::new(profile, &keying.server_key, &keying.server_salt).expect("valid keys"),
            keys: SrtpKeys::quic_server(&keying),
            ..Self::new(n, profile)
        }
    }

    /// A STUN binding request to the server as this peer's first packet (ICE-lite learns its
    /// address from it); the length written into `out`.
    pub fn binding_request(&self, out: &mut [u8], transaction: u8) -> usize {
        let username = format!("{}:peer", self.ufrag);
        crate::webrtc::stun::write_binding_request(out, &[transaction; 12], &username, self.pwd.as_bytes())
            .expect("room for a binding request")
    }

    /// The command that adds this peer's transport to `router` (`remote`: its known address,
    /// or `None` to learn it from an ICE check).
    pub fn add_transport(&self, router: RouterId, remote: Option<SocketAddr>) -> Command {
        Command::AddTransport(Box::new(TransportSpec {
            id: self.transport,
            router,
            ice_ufrag: self.ufrag.clone(),
            ice_pwd: self.pwd.clone(),
            remote,
            srtp: self.keys.clone(),
        }))
    }

    /// Protects a plaintext RTP packet into `out`; returns the length.
    pub fn protect(&mut self, plain: &[u8], out: &mut [u8]) -> usize {
        out[..plain.len()].copy_from_slice(plain);
        self.to_server.protect_rtp(out, plain.len()).expect("room for the tag")
    }

    /// Protects a plaintext RTCP packet into `out`; returns the length.
    pub fn protect_rtcp(&mut self, plain: &[u8], out: &mut [u8]) -> usize {
        out[..plain.len()].copy_from_slice(plain);
        self.to_server.protect_rtcp(out, plain.len()).expect("room for the tag")
    }

    /// A protected copy of a plaintext RTP packet.
    pub fn srtp(&mut self, plain: &[u8]) -> Vec<u8> {
        let mut buf = vec![0; plain.len() + 16];
        let n = self.protect(plain, &mut buf);
        buf.truncate(n);
        buf
    }
}

/// An engine on virtual time with its outbox (see the module docs).
#[derive(Debug)]
pub struct TestEngine {
    pub engine: Engine,
    pub out: Outbox,
    pub clock: Clock,
    pub counters: Arc<WorkerCounters>,
}

impl Default for TestEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEngine {
    /// Default router and mixer configuration, server SSRC 1.
    pub fn new() -> Self {
        Self::with_config(RouterConfig::default(), MixerConfig::default(), 1)
    }

    pub fn with_config(router: RouterConfig, mixer: MixerConfig, server_ssrc: u32) -> Self {
        let counters = Arc::new(WorkerCounters::default());
        let engine = Engine::new(router, server_ssrc, counters.clone()).with_mixer_config(mixer);
        Self { engine, out: Outbox::default(), clock: Clock::new(), counters }
    }

    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Applies one command now.
    pub fn command(&mut self, command: Command) -> Result<(), CommandError> {
        self.engine.handle_command(self.clock.now(), command, &mut self.out)
    }

    /// Applies commands now; panics on the first refusal.
    pub fn commands(&mut self, commands: impl IntoIterator<Item = Command>) {
        for command in commands {
            let name = command.name();
            if let Err(error) = self.command(command) {
                panic!("{name} refused: {error}");
            }
        }
    }

    /// One datagram from `from` arrives now (decrypted in place, as on the socket path).
    pub fn datagram(&mut self, from: SocketAddr, mut datagram: Vec<u8>) {
        self.engine.handle_datagram(self.clock.now(), from, &mut datagram, &mut self.out);
    }

    /// One plain RTP/RTCP packet of a direct transport arrives now.
    pub fn direct(&mut self, from: TransportId, packet: &[u8]) {
        self.engine.handle_direct(self.clock.now(), from, packet, &mut self.out);
    }

    /// Moves virtual time forward by `by`, stopping at every deadline the engine reports
    /// ([`Engine::poll_timeout`]) to run its timers, as the worker shell does. Returns how
    /// many times the timers ran.
    pub fn drive(&mut self, by: Duration) -> usize {
        drive(&mut self.engine, &mut self.out, &mut self.clock, by)
    }

    /// Runs the timers once at the engine's next deadline if it is no later than `until`
    /// (see [`step`]); returns that instant.
    pub fn step(&mut self, until: Instant) -> Option<Instant> {
        step(&mut self.engine, &mut self.out, &mut self.clock, until)
    }

    /// Moves virtual time to `at` without running timers (packets then arrive at `at`).
    pub fn advance_to(&mut self, at: Instant) -> Instant {
        self.clock.advance_to(at)
    }

    /// Events the engine queued since the last call.
    pub fn events(&mut self) -> Vec<EngineEvent> {
        std::iter::from_fn(|| self.engine.poll_event()).collect()
    }

    /// Datagrams sent since the last call.
    pub fn take_sent(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.out.sent)
    }

    pub fn counters(&self) -> CountersSnapshot {
        self.counters.snapshot()
    }
}

/// Advances `clock` by `by`, running `engine`'s timers at each deadline it reports on the way
/// (and once at the end if one is due then). Returns how many times the timers ran.
pub fn drive(engine: &mut Engine, out: &mut Outbox, clock: &mut Clock, by: Duration) -> usize {
    let end = clock.now() + by;
    let mut runs = 0;
    let mut previous = None;
    while let Some(now) = step(engine, out, clock, end) {
        // A deadline that does not move after its timers ran would spin the worker shell.
        assert!(previous != Some(now), "the engine's deadline {now:?} did not move after handle_timeout");
        previous = Some(now);
        runs += 1;
    }
    clock.advance_to(end);
    runs
}

/// Runs `engine`'s timers once, at its next deadline, if that is no later than `until`
/// (moving `clock` there); returns that instant. [`drive`] is this in a loop; a test that must
/// see what each timer run sent (with its exact send time) steps instead.
pub fn step(engine: &mut Engine, out: &mut Outbox, clock: &mut Clock, until: Instant) -> Option<Instant> {
    let at = engine.poll_timeout().filter(|&at| at <= until)?;
    let now = clock.advance_to(at);
    engine.handle_timeout(now, out);
    Some(now)
}
