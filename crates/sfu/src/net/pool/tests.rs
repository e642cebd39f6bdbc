//! The pool's push of events to the control plane: `poll_event_ready` is pending while no
//! worker has anything, registers the waker, is woken when a worker queues an event, and the
//! delay from a worker's event to the waiting task is measured against the 50 ms polling
//! relay it replaced.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use super::*;
use crate::engine::CommandError;
use crate::engine::RouterId;

/// Counts wakes and unparks the waiting thread.
struct ThreadWaker {
    thread: Thread,
    wakes: AtomicUsize,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

fn pool() -> WorkerPool {
    let config = WorkerConfig { workers: 2, bind: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
    WorkerPool::start(config).unwrap()
}

/// A command every worker refuses at once: its `CommandFailed` event is the probe.
fn refused() -> Command {
    Command::CloseRouter { router: RouterId(77) }
}

/// Parks until `poll_event_ready` is ready (or `limit` passes); the time it took.
fn wait_ready(pool: &WorkerPool, cx: &mut Context<'_>, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if pool.poll_event_ready(cx).is_ready() {
            return Some(start.elapsed());
        }
        let left = limit.checked_sub(start.elapsed())?;
        std::thread::park_timeout(left);
    }
}

#[test]
fn events_are_pushed_to_a_waiting_task() {
    let pool = pool();
    let waker = Arc::new(ThreadWaker { thread: std::thread::current(), wakes: AtomicUsize::new(0) });
    let task_waker = Waker::from(waker.clone());
    let mut cx = Context::from_waker(&task_waker);
    // Nothing happened yet: pending, and the waker stays registered.
    assert!(pool.poll_event_ready(&mut cx).is_pending());
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(waker.wakes.load(Ordering::SeqCst), 0, "an idle pool wakes nobody");
    pool.workers()[1].send(refused()).unwrap();
    assert!(wait_ready(&pool, &mut cx, Duration::from_secs(5)).is_some(), "woken by the worker's event");
    assert!(waker.wakes.load(Ordering::SeqCst) >= 1);
    let mut events = Vec::new();
    pool.drain_events(|worker, event| events.push((worker, event)));
    assert_eq!(
        events,
        vec![(1, EngineEvent::CommandFailed { command: "close_router", error: CommandError::UnknownRouter })]
    );
    // Drained: pending again until the next event.
    assert!(pool.poll_event_ready(&mut cx).is_pending());
}

/// How long an event waits for the control plane: pushed (this pool) against a relay that
/// polls every 50 ms (before). Printed for docs/media.md; the pushed delay must stay well
/// under the polling one.
#[test]
fn pushed_events_arrive_sooner_than_a_50ms_poll_would_fetch_them() {
    const ROUNDS: usize = 20;
    let pool = pool();
    let waker = Arc::new(ThreadWaker { thread: std::thread::current(), wakes: AtomicUsize::new(0) });
    let task_waker = Waker::from(waker);
    let mut cx = Context::from_waker(&task_waker);
    let mut pushed = Vec::new();
    for i in 0..ROUNDS {
        let _ = pool.poll_event_ready(&mut cx);
        pool.drain_events(|_, _| {});
        let sent = Instant::now();
        pool.workers()[i % 2].send(refused()).unwrap();
        wait_ready(&pool, &mut cx, Duration::from_secs(5)).expect("event pushed");
        pushed.push(sent.elapsed());
        pool.drain_events(|_, _| {});
    }
    // The replaced relay: an interval of 50 ms, events found at the next tick after they were
    // queued. Sending at a random phase of the interval is modelled by sending i * 50/ROUNDS ms
    // after a tick.
    let mut polled = Vec::new();
    for i in 0..ROUNDS {
        let tick = Instant::now();
        std::thread::sleep(Duration::from_millis((i * 50 / ROUNDS) as u64));
        let sent = Instant::now();
        pool.workers()[i % 2].send(refused()).unwrap();
        let next_tick = tick + Duration::from_millis(50);
        let mut found = next_tick;
        loop {
            std::thread::sleep(found.saturating_duration_since(Instant::now()));
            let mut any = false;
            pool.drain_events(|_, _| any = true);
            if any {
                break;
            }
            found += Duration::from_millis(50);
        }
        polled.push(found.saturating_duration_since(sent));
    }
    pushed.sort();
    polled.sort();
    let median = |v: &[Duration]| v[v.len() / 2];
    println!(
        "event delay, pushed: median {:?}, max {:?}; polled every 50 ms: median {:?}, max {:?}",
        median(&pushed),
        pushed[ROUNDS - 1],
        median(&polled),
        polled[ROUNDS - 1]
    );
    assert!(median(&pushed) < median(&polled), "pushed {pushed:?} vs polled {polled:?}");
}
