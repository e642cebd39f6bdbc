//! The thread shell: N workers, each with its own UDP socket (own port), command queue, event
//! queue, counters and [`Doorbell`]. Routers are pinned to a worker by id; the control plane
//! pushes commands (never blocking) and is woken when events arrive
//! ([`WorkerPool::poll_event_ready`]). A worker sleeps until a datagram, a command, a direct
//! packet or its engine's next deadline ([`Engine::poll_timeout`]): an idle worker does not run.
//! A worker whose rooms only mix ([`Engine::receive_waits_for_tick`]) is not woken by datagrams:
//! it receives everything that queued at its next tick, one wake-up per 20 ms instead of one per
//! arriving packet or burst (issue #18: a quarter of a 3-party call's server CPU was wake-ups).

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{AcqRel, Relaxed, Release};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use crossbeam_queue::ArrayQueue;

use super::direct_link::{DEFAULT_INGRESS_CAPACITY, IngressQueue};
use super::doorbell::Doorbell;
use super::send::SendBatch;
use super::socket::RecvBatch;
use crate::engine::{Command, CountersSnapshot, DropReason, Engine, EngineEvent, MIX_PERIOD, WorkerCounters};
use crate::mixer::MixerConfig;
use crate::router::{RouterConfig, TransportId, WallClock};

/// How to start the media workers.
#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    /// Number of worker threads; 0 means one per available core.
    pub workers: usize,
    /// Address to bind; with port 0 every worker gets an ephemeral port, otherwise worker i
    /// binds `port + i`.
    pub bind: SocketAddr,
    pub router: RouterConfig,
    /// Every router's audio mixer (talkers, encoder settings, passthrough).
    pub mixer: MixerConfig,
    pub command_queue: usize,
    /// Packets from direct transports waiting for the worker (all transports together).
    pub ingress_queue: usize,
    pub event_queue: usize,
    /// Requested kernel receive/send buffer per socket (best effort; capped by the kernel).
    pub socket_buffer: usize,
    /// Send runs of datagrams to one destination as one UDP GSO message when the kernel can.
    pub gso: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            bind: SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0),
            router: RouterConfig::default(),
            mixer: MixerConfig::default(),
            command_queue: 4096,
            ingress_queue: DEFAULT_INGRESS_CAPACITY,
            event_queue: 4096,
            socket_buffer: 4 << 20,
            gso: true,
        }
    }
}

/// Tells the control plane that some worker queued events (shared by all workers of a pool).
#[derive(Debug, Default)]
struct EventSignal {
    pending: AtomicBool,
    waker: AtomicWaker,
}

impl EventSignal {
    fn notify(&self) {
        self.pending.store(true, Release);
        self.waker.wake();
    }
}

/// One running worker as seen from the control plane.
#[derive(Debug)]
pub struct WorkerHandle {
    pub index: usize,
    /// The address (port) this worker's routers advertise in their ICE candidates.
    pub local_addr: SocketAddr,
    commands: Arc<ArrayQueue<Command>>,
    ingress: Arc<IngressQueue>,
    events: Arc<ArrayQueue<EngineEvent>>,
    counters: Arc<WorkerCounters>,
    doorbell: Arc<Doorbell>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Queues a command and wakes the worker; gives it back if the queue is full.
    pub fn send(&self, command: Command) -> Result<(), Command> {
        self.commands.push(command)?;
        self.doorbell.ring();
        Ok(())
    }

    /// Hands one plain RTP/RTCP packet of a direct transport to the worker (never blocks; any
    /// thread; no lock, no allocation). When the ingress queue is full the packet is counted as
    /// an `IngressQueueFull` drop and given back.
    pub fn push_ingress(&self, transport: TransportId, packet: Bytes) -> Result<(), Bytes> {
        let pushed = self.ingress.push((transport, packet)).map_err(|(_, packet)| {
            self.counters.count_drop_shared(DropReason::IngressQueueFull);
            packet
        });
        self.doorbell.ring_for_packet();
        pushed
    }

    pub fn try_event(&self) -> Option<EngineEvent> {
        self.events.pop()
    }

    pub fn counters(&self) -> CountersSnapshot {
        self.counters.snapshot()
    }
}

/// All media workers of the process.
#[derive(Debug)]
pub struct WorkerPool {
    workers: Vec<WorkerHandle>,
    signal: Arc<EventSignal>,
}

/// What a worker thread shares with its handle and the pool.
struct Shared {
    commands: Arc<ArrayQueue<Command>>,
    ingress: Arc<IngressQueue>,
    events: Arc<ArrayQueue<EngineEvent>>,
    doorbell: Arc<Doorbell>,
    signal: Arc<EventSignal>,
}

impl WorkerPool {
    /// Binds one socket per worker and starts the threads.
    pub fn start(config: WorkerConfig) -> io::Result<Self> {
        let n = if config.workers == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            config.workers
        };
        let mut workers = Vec::with_capacity(n);
        let signal = Arc::new(EventSignal::default());
        // Sender reports carry wall-clock NTP time: read it once here, in the shell.
        let wall_clock = config.router.wall_clock.or_else(|| Some(WallClock::now()));
        let router = RouterConfig { wall_clock, ..config.router };
        for index in 0..n {
            let mut addr = config.bind;
            if addr.port() != 0 {
                addr.set_port(addr.port() + index as u16);
            }
            let socket = UdpSocket::bind(addr)?;
            #[cfg(not(target_os = "linux"))]
            socket.set_read_timeout(Some(super::doorbell::FALLBACK_NAP))?;
            set_buffer_sizes(&socket, config.socket_buffer);
            let local_addr = socket.local_addr()?;
            let shared = Shared {
                commands: Arc::new(ArrayQueue::new(config.command_queue)),
                ingress: Arc::new(ArrayQueue::new(config.ingress_queue.max(1))),
                events: Arc::new(ArrayQueue::new(config.event_queue.max(1))),
                doorbell: Arc::new(Doorbell::new()?),
                signal: signal.clone(),
            };
            let counters = Arc::new(WorkerCounters::default());
            let engine = Engine::new(router, 0x5A1A_0000 | index as u32, counters.clone())
                .with_mixer_config(config.mixer)
                .with_event_capacity(config.event_queue);
            let send = SendBatch::with_gso(socket.try_clone()?, config.gso);
            let gso = send.gso();
            let handle = WorkerHandle {
                index,
                local_addr,
                commands: shared.commands.clone(),
                ingress: shared.ingress.clone(),
                events: shared.events.clone(),
                counters,
                doorbell: shared.doorbell.clone(),
                thread: None,
            };
            let thread = std::thread::Builder::new()
                .name(format!("palaver-media-{index}"))
                .spawn(move || run(engine, socket, send, shared))?;
            tracing::info!(worker = index, %local_addr, gso, "media worker started");
            workers.push(WorkerHandle { thread: Some(thread), ..handle });
        }
        Ok(Self { workers, signal })
    }

    pub fn workers(&self) -> &[WorkerHandle] {
        &self.workers
    }

    /// Counters of all workers summed (what Prometheus scrapes).
    pub fn counters(&self) -> CountersSnapshot {
        self.workers.iter().map(WorkerHandle::counters).fold(CountersSnapshot::default(), |a, b| a + b)
    }

    /// Ready once any worker queued an event since the last call (then drain them with
    /// [`Self::drain_events`]); otherwise registers `cx`'s waker, which the next worker that
    /// queues an event wakes. The waker is registered before the check, so no wake-up is lost.
    /// One task at a time should wait on it (one `AtomicWaker`).
    pub fn poll_event_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.signal.waker.register(cx.waker());
        if self.signal.pending.swap(false, AcqRel) || self.workers.iter().any(|w| !w.events.is_empty()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Drains pending events of every worker.
    pub fn drain_events(&self, mut f: impl FnMut(usize, EngineEvent)) {
        for w in &self.workers {
            while let Some(e) = w.try_event() {
                f(w.index, e);
            }
        }
    }

    /// Stops every worker and waits for the threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        for w in &self.workers {
            let mut command = Command::Shutdown;
            while let Err(back) = w.send(command) {
                command = back;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Asks for larger socket buffers so bursts (and floods of junk) do not overflow the queue.
#[cfg(target_os = "linux")]
fn set_buffer_sizes(socket: &UdpSocket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let value = bytes.min(i32::MAX as usize) as libc::c_int;
    let set = |option: libc::c_int| {
        // SAFETY: valid fd, pointer to a c_int that lives for the call, correct length.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    // The *FORCE options ignore net.core.{r,w}mem_max (which caps a plain request at a few
    // hundred KiB) when the process has CAP_NET_ADMIN; otherwise ask within the cap.
    for (forced, plain) in [(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF), (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)] {
        if set(forced) != 0 && set(plain) != 0 {
            tracing::debug!(option = plain, error = %io::Error::last_os_error(), "could not resize socket buffer");
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn set_buffer_sizes(_socket: &UdpSocket, _bytes: usize) {}

/// The worker loop: commands, direct packets (flushed at once), one receive batch, due timers,
/// one send flush, events out; then sleep until a datagram, a doorbell ring or the engine's
/// next deadline when the socket had nothing.
/// Receive batches one round may take while the worker empties its socket before a tick
/// (64 × 64 datagrams); more waits for the next round, so commands are never starved.
const MAX_BATCHES_PER_TICK: usize = 64;

fn run(mut engine: Engine, socket: UdpSocket, mut send: SendBatch, shared: Shared) {
    let Shared { commands, ingress, events, doorbell, signal } = shared;
    let mut recv = RecvBatch::new();
    let counters = engine.counters().clone();
    // Read after each flush: it times the batch just sent and is the next round's command time.
    let mut now = Instant::now();
    loop {
        let mut shutdown = false;
        while let Some(command) = commands.pop() {
            shutdown |= matches!(command, Command::Shutdown);
            // A refusal is queued as an `EngineEvent::CommandFailed` by the engine.
            let _ = engine.handle_command(now, command, &mut send);
        }
        if shutdown {
            send.flush();
            forward_events(&mut engine, &events, &signal, &counters);
            return;
        }
        if !ingress.is_empty() {
            now = Instant::now();
            let forwarded_before = counters.rtp_forwarded.load(Relaxed);
            // At most one queue's worth per round so a flooding producer cannot starve the socket.
            for _ in 0..ingress.capacity() {
                let Some((transport, packet)) = ingress.pop() else { break };
                engine.handle_direct(now, transport, &packet, &mut send);
            }
            send.flush();
            let received = std::mem::replace(&mut now, Instant::now());
            record_latency(&counters, received, now, forwarded_before);
        }
        // Forwarding latency: the receive-time read (already needed as `now`) and the read after
        // the flush (reused for the next commands), recorded once per packet the batch forwarded.
        let mut batch: Option<(Instant, u64)> = None;
        let mut drained = true;
        // A worker that only mixes empties its socket before the tick (it slept through the
        // arrivals: `Doorbell::sleep_until`); otherwise one batch per round.
        let waits_for_tick = engine.receive_waits_for_tick();
        for _ in 0..MAX_BATCHES_PER_TICK {
            match recv.try_recv(&socket) {
                Ok(n) => {
                    now = Instant::now();
                    let forwarded_before = counters.rtp_forwarded.load(Relaxed);
                    for i in 0..n {
                        if let Some((from, datagram)) = recv.datagram(i) {
                            engine.handle_datagram(now, from, datagram, &mut send);
                        }
                    }
                    batch.get_or_insert((now, forwarded_before));
                    // A short batch emptied the queue: sleep next (the sleep's `ppoll` returns at
                    // once if more arrived meanwhile) instead of paying one more `recvmmsg` that
                    // would only say `EAGAIN` on every wake-up.
                    drained = n < super::socket::BATCH;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                    ) =>
                {
                    drained = true;
                }
                Err(e) => {
                    // e.g. ICMP port unreachable surfaced as ECONNREFUSED: keep serving.
                    tracing::debug!(error = %e, "media worker receive error");
                    drained = false;
                }
            }
            if drained || !waits_for_tick {
                break;
            }
        }
        let polled = Instant::now();
        if engine.poll_timeout().is_some_and(|at| at <= polled) {
            let timed = engine.mix_due(polled);
            let ticks = engine.handle_timeout(polled, &mut send);
            if timed && ticks > 0 {
                let elapsed = polled.elapsed();
                let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
                counters.mixer_tick.observe(ns / u64::from(ticks), u64::from(ticks));
                if elapsed > MIX_PERIOD {
                    WorkerCounters::inc(&counters.mixer_overruns);
                }
            }
        }
        send.flush();
        now = Instant::now();
        if let Some((received, forwarded_before)) = batch {
            record_latency(&counters, received, now, forwarded_before);
        }
        for _ in 0..send.take_failed() {
            counters.count_drop(DropReason::SendFailed);
        }
        forward_events(&mut engine, &events, &signal, &counters);
        if drained {
            let idle = || commands.is_empty() && ingress.is_empty();
            match engine.poll_timeout() {
                Some(deadline) if engine.receive_waits_for_tick() => doorbell.sleep_until(&socket, deadline, idle),
                deadline => doorbell.sleep(&socket, deadline, idle),
            }
            now = Instant::now();
        }
    }
}

/// Moves the engine's events to the control plane's queue and wakes its task.
fn forward_events(
    engine: &mut Engine,
    events: &ArrayQueue<EngineEvent>,
    signal: &EventSignal,
    counters: &WorkerCounters,
) {
    let mut forwarded = false;
    while let Some(event) = engine.poll_event() {
        if events.push(event).is_err() {
            counters.count_drop(DropReason::EventQueueFull);
        } else {
            forwarded = true;
        }
    }
    if forwarded {
        signal.notify();
    }
}

/// Records the packets forwarded since `forwarded_before` as taking from `received` to `sent`.
fn record_latency(counters: &WorkerCounters, received: Instant, sent: Instant, forwarded_before: u64) {
    let forwarded = counters.rtp_forwarded.load(Relaxed).wrapping_sub(forwarded_before);
    if forwarded > 0 {
        let elapsed = u64::try_from(sent.saturating_duration_since(received).as_nanos()).unwrap_or(u64::MAX);
        counters.forwarding_latency.observe(elapsed, forwarded);
    }
}

#[cfg(test)]
mod tests;
