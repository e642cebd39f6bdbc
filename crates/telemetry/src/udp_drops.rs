//! Kernel receive drops of the server's own UDP sockets (the QUIC endpoint, the media
//! workers): datagrams the kernel discarded because a socket's receive buffer was full, which
//! no user-space counter can see. Read at scrape time from the `drops` column of
//! `/proc/net/udp` and `/proc/net/udp6` for the sockets' inodes, and exported as
//! `palaver_udp_receive_drops_total{socket}` (`socket` from the closed set [`UdpSocketKind`]).
//!
//! A socket is named by its local port and found among the process's own file descriptors
//! (`/proc/self/fd/* -> socket:[inode]`), so another process's socket on the same port is
//! never counted. Linux only; elsewhere the family has no series.

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, LabelPair, Metric, MetricFamily, MetricType};
use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, RwLock};

const FAMILY: &str = "palaver_udp_receive_drops_total";
const HELP: &str = "Datagrams the kernel dropped because the socket's receive buffer was full, by socket.";

/// Which of the server's UDP sockets (the label value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UdpSocketKind {
    /// The QUIC endpoint (`[server.quic]`).
    Quic,
    /// A WebRTC media worker's socket (`[media]`).
    Media,
}

impl UdpSocketKind {
    pub const ALL: [UdpSocketKind; 2] = [Self::Quic, Self::Media];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quic => "quic",
            Self::Media => "media",
        }
    }
}

/// One line of `/proc/net/udp{,6}`: the local port, the inode and the drop count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UdpLine {
    port: u16,
    inode: u64,
    drops: u64,
}

/// Parse one table line (`sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout
/// inode ref pointer drops`); `None` for the header or a line of another shape.
fn parse_line(line: &str) -> Option<UdpLine> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    if cols.len() < 13 || !cols[0].ends_with(':') {
        return None;
    }
    let port = u16::from_str_radix(cols[1].rsplit(':').next()?, 16).ok()?;
    let inode = cols[9].parse().ok()?;
    let drops = cols[12].parse().ok()?;
    Some(UdpLine { port, inode, drops })
}

fn udp_table() -> io::Result<Vec<UdpLine>> {
    let mut lines = Vec::new();
    for path in ["/proc/net/udp", "/proc/net/udp6"] {
        match std::fs::read_to_string(path) {
            Ok(text) => lines.extend(text.lines().filter_map(parse_line)),
            // No IPv6 in this kernel: only the IPv4 table exists.
            Err(e) if e.kind() == io::ErrorKind::NotFound && path.ends_with('6') => {}
            Err(e) => return Err(e),
        }
    }
    Ok(lines)
}

/// Inodes of the sockets this process holds open.
fn own_socket_inodes() -> io::Result<HashSet<u64>> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(target) = std::fs::read_link(entry?.path()) else { continue }; // closed meanwhile
        let target = target.to_string_lossy();
        if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
            inodes.extend(inode.parse::<u64>().ok());
        }
    }
    Ok(inodes)
}

/// The inode of this process's UDP socket bound to local `port`, if it has one.
pub fn own_udp_socket_inode(port: u16) -> io::Result<Option<u64>> {
    let own = own_socket_inodes()?;
    Ok(udp_table()?.into_iter().find(|l| l.port == port && own.contains(&l.inode)).map(|l| l.inode))
}

/// Kernel receive drops of the sockets with these inodes, summed (sockets since closed count 0).
pub fn udp_receive_drops(inodes: &[u64]) -> io::Result<u64> {
    Ok(udp_table()?.iter().filter(|l| inodes.contains(&l.inode)).map(|l| l.drops).sum())
}

/// The sockets being watched, by kind.
pub type WatchedSockets = Arc<RwLock<HashMap<UdpSocketKind, Vec<u64>>>>;

/// Collects [`FAMILY`] at scrape time from the watched sockets.
pub struct UdpDropsCollector {
    desc: Desc,
    sockets: WatchedSockets,
}

impl UdpDropsCollector {
    pub fn new(sockets: WatchedSockets) -> prometheus::Result<Self> {
        let desc = Desc::new(FAMILY.into(), HELP.into(), vec!["socket".into()], HashMap::new())?;
        Ok(Self { desc, sockets })
    }
}

impl Collector for UdpDropsCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let sockets = self.sockets.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let mut metrics = Vec::new();
        for kind in UdpSocketKind::ALL {
            let Some(inodes) = sockets.get(&kind) else { continue };
            let drops = match udp_receive_drops(inodes) {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read /proc/net/udp");
                    continue;
                }
            };
            let mut label = LabelPair::default();
            label.set_name("socket".into());
            label.set_value(kind.as_str().into());
            let mut counter = Counter::default();
            counter.set_value(drops as f64);
            let mut m = Metric::default();
            m.set_counter(counter);
            m.set_label(vec![label]);
            metrics.push(m);
        }
        let mut family = MetricFamily::default();
        family.set_name(FAMILY.into());
        family.set_help(HELP.into());
        family.set_field_type(MetricType::COUNTER);
        family.set_metric(metrics);
        vec![family]
    }
}

#[cfg(test)]
mod tests;
