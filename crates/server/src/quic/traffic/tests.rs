use super::*;
use crate::quic::{counted_endpoint, server_config};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::time::Duration;

#[test]
fn a_gro_batch_counts_as_its_segments() {
    let meta = |len, stride| RecvMeta { len, stride, ..RecvMeta::default() };
    assert_eq!(datagrams_in(&[meta(1200, 1200)]), 1);
    // Three full segments and a short last one, as quinn splits them.
    assert_eq!(datagrams_in(&[meta(3 * 1200 + 100, 1200), meta(80, 80)]), 5);
    assert_eq!(datagrams_in(&[]), 0);
}

/// A well-formed QUIC v1 long-header Initial (1,200 bytes, as clients pad them) of random
/// payload for a connection nobody started: quinn surfaces it as a connection attempt when its
/// unprotected reserved bits happen to be valid (one time in four), and it fails to decrypt.
fn bogus_initial(n: u8) -> Vec<u8> {
    let mut p = vec![0xc3, 0, 0, 0, 1, 8, n, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0];
    let length = 1200 - p.len() - 2;
    p.extend_from_slice(&(0x4000 | length as u16).to_be_bytes());
    p.extend((0..length).map(|_| rand::random::<u8>()));
    p
}

/// Waits up to 5 s for `done`; on failure the panic names `what` and the counts seen last
/// (`details`), so a failure under load says which count fell short.
async fn until(what: &str, mut done: impl FnMut() -> bool, details: impl Fn() -> String) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} did not happen within 5 s: {}", details());
}

#[tokio::test]
async fn junk_is_counted_as_discarded_and_a_real_connections_datagrams_are_not() {
    let dir = std::env::temp_dir().join(format!("palaver-quic-traffic-{}", rand::random::<u64>()));
    let tls = crate::tls::ensure_self_signed(&dir, &[]).unwrap();
    let traffic = Arc::new(QuicTraffic::default());
    let server =
        counted_endpoint("127.0.0.1:0".parse().unwrap(), 1 << 20, server_config(&tls).unwrap(), traffic.clone())
            .unwrap();
    let addr = server.local_addr().unwrap();
    // The accept loop of QuicServer::start, with an echo in place of the signaling stream.
    let accept = {
        let (server, traffic) = (server.clone(), traffic.clone());
        tokio::spawn(async move {
            while let Some(incoming) = server.accept().await {
                traffic.attempt();
                let traffic = traffic.clone();
                tokio::spawn(async move {
                    let Ok((connection, _tracked)) = traffic.handshake(incoming).await else { return };
                    if let Ok((mut send, mut recv)) = connection.accept_bi().await {
                        let echo = recv.read_to_end(1024).await.unwrap_or_default();
                        let _ = send.write_all(&echo).await;
                        let _ = send.finish();
                    }
                    connection.closed().await;
                });
            }
        })
    };

    // Junk of the flood trial's kinds: random bytes, bogus Initials, short headers of unknown
    // connections, a long header of an unknown version.
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = 0u64;
    for n in 0..40u8 {
        let random: Vec<u8> = (0..200).map(|_| rand::random::<u8>()).collect();
        let short_header: Vec<u8> = std::iter::once(0x40 | (n & 0x1f)).chain((0..60).map(|i| i ^ n)).collect();
        let unknown_version = [0xc0, 0xfa, 0xce, 0xb0, 0x0c, 0, 0, 1, 2, 3];
        for datagram in [random, bogus_initial(n), short_header, unknown_version.to_vec()] {
            junk.send_to(&datagram, addr).unwrap();
            sent += 1;
        }
    }
    // Every junk datagram is discarded, the Initials quinn surfaced once their handshake failed.
    until(
        "the junk being read and discarded",
        || traffic.counts() == TrafficCounts { received: sent, discarded: sent },
        || format!("{:?} for {sent} sent", traffic.counts()),
    )
    .await;
    let surfaced = traffic.attempts.load(Ordering::Relaxed);
    assert_eq!(traffic.failed_attempts.load(Ordering::Relaxed), surfaced);
    assert!(surfaced > 0, "none of 40 junk Initials had valid reserved bits: the attempt path went untested");

    // A real connection's datagrams (its handshake, stream and acks) are used, not discarded.
    let ca = std::fs::read(tls.ca.as_ref().unwrap()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut crypto = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![palaver_core::protocol::quic::ALPN.to_vec()];
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap(),
    )));
    let connection = client.connect(addr, "localhost").unwrap().await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(b"hello over quic").await.unwrap();
    send.finish().unwrap();
    assert_eq!(recv.read_to_end(1024).await.unwrap(), b"hello over quic");
    // While the connection is open, every datagram the client sent was used.
    let from_client = || connection.stats().udp_tx.datagrams;
    until(
        "the client's datagrams being read and used",
        || {
            let now = traffic.counts();
            now.received == sent + from_client() && now.discarded == sent
        },
        || format!("{:?} for {sent} junk and {} from the client", traffic.counts(), from_client()),
    )
    .await;
    let before_close = from_client();
    assert!(before_close >= 2, "handshake and stream: {before_close}");

    // Once both ends closed, the ended connection's datagrams still count as used. Only what
    // the client sent after its close may have reached a server connection that had already
    // drained (a repeated CONNECTION_CLOSE when the machine is loaded): that is discarded.
    connection.close(0u32.into(), b"done");
    client.wait_idle().await;
    until(
        "the closed connection's datagrams being read and still counted as used",
        || {
            let now = traffic.counts();
            now.received == sent + from_client() && now.discarded <= sent + (from_client() - before_close)
        },
        || {
            format!(
                "{:?} for {sent} junk, {} from the client, {before_close} before its close",
                traffic.counts(),
                from_client()
            )
        },
    )
    .await;
    assert!(from_client() > before_close, "the close was sent");

    server.close(0u32.into(), b"");
    accept.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_collector_exports_both_counters_and_never_goes_back() {
    let traffic = Arc::new(QuicTraffic::default());
    let collector = TrafficCollector::new(traffic.clone()).unwrap();
    let value = |families: &[MetricFamily], name: &str| {
        families.iter().find(|f| f.name() == name).map(|f| f.get_metric()[0].get_counter().value() as u64)
    };
    traffic.received(7);
    traffic.attempt();
    let families = collector.collect();
    assert_eq!(value(&families, "palaver_quic_datagrams_received_total"), Some(7));
    assert_eq!(value(&families, "palaver_quic_datagrams_discarded_total"), Some(6));
    // More used than read for an instant (a scrape between the read and the count): held.
    traffic.attempt();
    traffic.attempt();
    let families = collector.collect();
    assert_eq!(value(&families, "palaver_quic_datagrams_discarded_total"), Some(6));
}
