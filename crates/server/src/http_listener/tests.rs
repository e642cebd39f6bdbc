//! The listener's caps and timeouts, against real loopback sockets (plain HTTP: TLS adds a
//! handshake timer but nothing else to these rules).

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

fn metrics() -> (Registry, ListenerMetrics) {
    let registry = Registry::new();
    let metrics = ListenerMetrics::register(&registry).unwrap();
    (registry, metrics)
}

fn limits(per_ip: usize, total: usize) -> HttpLimits {
    HttpLimits {
        max_connections: total,
        max_connections_per_ip: per_ip,
        handshake_timeout_ms: 500,
        header_read_timeout_ms: 300,
        idle_timeout_ms: 400,
        body_timeout_ms: 1_000,
    }
}

fn counter(registry: &Registry, name: &str, reason: &str) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| m.get_label().iter().any(|l| l.value() == reason))
        .map(|m| m.get_counter().value() as u64)
        .sum()
}

#[test]
fn admission_caps_each_address_and_the_total() {
    let (_, metrics) = metrics();
    let admission = Arc::new(Admission { table: Mutex::default(), limits: limits(2, 3), metrics });
    let a: IpAddr = "192.0.2.1".parse().unwrap();
    let b: IpAddr = "192.0.2.2".parse().unwrap();
    let c: IpAddr = "192.0.2.3".parse().unwrap();
    let a1 = admission.admit(a).unwrap();
    let _a2 = admission.admit(a).unwrap();
    assert_eq!(admission.admit(a).err(), Some(Refusal::PerIpCap));
    let _b1 = admission.admit(b).unwrap();
    assert_eq!(admission.admit(c).err(), Some(Refusal::GlobalCap));
    drop(a1);
    let _c1 = admission.admit(c).expect("a closed connection frees its place");
    assert_eq!(admission.table.lock().unwrap().total, 3);
}

#[test]
fn the_connection_cap_stays_below_the_descriptor_limit() {
    let l = HttpLimits::default();
    assert_eq!(l.effective(1_000_000).max_connections, l.max_connections);
    assert_eq!(l.effective(1024).max_connections, 1024 - FD_RESERVE as usize);
    assert!(l.effective(0).max_connections > 0);
}

struct Running {
    addr: SocketAddr,
    registry: Registry,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(limits: HttpLimits) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (registry, metrics) = metrics();
    let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(serve(listener, None, app, limits, metrics, rx, Duration::from_secs(1)));
    Running { addr, registry, stop, task }
}

async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

async fn get_health(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: palaver\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await.expect("answer").unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Waits for the server to close `stream`; answers how long that took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue, // e.g. a 408 before the close
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn a_slowloris_request_is_cut_off_at_the_header_timeout() {
    let server = start(limits(100, 100)).await;
    let mut slow = connect_from("127.0.0.1", server.addr).await;
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: pal").await.unwrap();
    let took = closed_within(&mut slow, Duration::from_secs(5)).await.expect("closed by the server");
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    let _ = server.stop.send(true);
    server.task.await.unwrap();
}

#[tokio::test]
async fn a_silent_keep_alive_connection_is_closed_when_idle() {
    let server = start(limits(100, 100)).await;
    let mut quiet = connect_from("127.0.0.1", server.addr).await;
    assert!(get_health(&mut quiet).await.starts_with("HTTP/1.1 200"));
    closed_within(&mut quiet, Duration::from_secs(5)).await.expect("idle connection closed");
    let mut never_spoke = connect_from("127.0.0.1", server.addr).await;
    closed_within(&mut never_spoke, Duration::from_secs(5)).await.expect("silent connection closed");
    assert!(counter(&server.registry, "palaver_http_connections_timed_out_total", "idle") >= 1);
}

#[tokio::test]
async fn one_address_over_its_cap_is_refused_while_others_are_served() {
    let server = start(HttpLimits { idle_timeout_ms: 60_000, header_read_timeout_ms: 60_000, ..limits(3, 100) }).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from("127.0.0.1", server.addr).await;
        assert!(get_health(&mut s).await.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let mut extra = connect_from("127.0.0.1", server.addr).await;
    closed_within(&mut extra, Duration::from_secs(2)).await.expect("the fourth connection is closed at once");
    let mut other = connect_from("127.0.0.2", server.addr).await;
    assert!(get_health(&mut other).await.starts_with("HTTP/1.1 200"), "another address is still served");
    assert!(get_health(&mut held[0]).await.starts_with("HTTP/1.1 200"), "admitted connections keep working");
    assert_eq!(counter(&server.registry, "palaver_http_connections_refused_total", "per_ip_cap"), 1);
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from("127.0.0.1", server.addr).await;
    assert!(get_health(&mut again).await.starts_with("HTTP/1.1 200"), "places are released on close");
}
