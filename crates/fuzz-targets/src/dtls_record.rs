//! DTLS as palaver's media port sees it (`palaver_sfu::webrtc::dtls::DtlsSession`, server
//! role, after the engine routed a datagram whose first byte is 20..=63 to it). Two modes, by
//! the first input byte: raw datagrams (length-prefixed) fed to a fresh server session; or a
//! real handshake with an in-process client in which the input corrupts, drops or injects
//! datagrams of each flight. Properties: no panic; keys are only ever exported to the client
//! whose certificate matches the offer's fingerprint, and only once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::Fields;
use palaver_sfu::webrtc::dtls::{DtlsIdentity, DtlsSession};

thread_local! {
    static IDENTITIES: (DtlsIdentity, DtlsIdentity) = (
        DtlsIdentity::generate_server().expect("server certificate"),
        DtlsIdentity::generate(true).expect("client certificate"),
    );
}

const CLIENT: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 50000));
const SERVER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 40000));

/// Length-prefixed datagrams (u16, capped at a UDP payload).
fn datagrams(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (&[hi, lo], rest) = bytes.split_first_chunk::<2>()?;
        let len = (u16::from_be_bytes([hi, lo]) as usize % 1500).min(rest.len());
        let (datagram, rest) = rest.split_at(len);
        bytes = rest;
        Some(datagram)
    })
}

/// One input (the body of the libFuzzer target of the same name).
pub fn run(data: &[u8]) {
    IDENTITIES.with(|(server_id, client_id)| {
        let mut fields = Fields::new(data);
        let mode = fields.byte();
        let start = Instant::now();
        // The offer's fingerprint is the real client's, or (odd modes) someone else's.
        let expected = if mode & 1 == 0 { client_id.fingerprint() } else { server_id.fingerprint() };
        let mut server = DtlsSession::server(server_id, expected);
        let mut exported = 0;

        if mode & 0x80 == 0 {
            for (i, datagram) in datagrams(fields.rest()).enumerate() {
                let now = start + Duration::from_millis(i as u64 * 10);
                if let Ok(out) = server.handle(now, CLIENT, datagram) {
                    exported += usize::from(out.keys.is_some());
                }
                let _ = server.poll(now, CLIENT);
            }
            assert_eq!(exported, 0, "keys exported without a handshake");
            return;
        }

        let Ok((mut client, mut to_server)) = DtlsSession::client(client_id, server_id.fingerprint(), start, SERVER)
        else {
            return;
        };
        for round in 0..8u64 {
            let now = start + Duration::from_millis(round * 10);
            let mut to_client = Vec::new();
            let action = fields.byte();
            let flight: Vec<Vec<u8>> = to_server.drain(..).map(|d| d.to_vec()).collect();
            for mut datagram in flight {
                match action & 3 {
                    0 => {}
                    1 if !datagram.is_empty() => {
                        let at = fields.byte() as usize % datagram.len();
                        datagram[at] ^= fields.byte() | 1;
                    }
                    2 => datagram.truncate(fields.byte() as usize % (datagram.len() + 1)),
                    _ => continue,
                }
                if let Ok(out) = server.handle(now, CLIENT, &datagram) {
                    exported += usize::from(out.keys.is_some());
                    to_client.extend(out.transmit);
                }
            }
            if action & 4 != 0 {
                let injected = fields.part(0xFF);
                if let Ok(out) = server.handle(now, CLIENT, injected) {
                    exported += usize::from(out.keys.is_some());
                    to_client.extend(out.transmit);
                }
            }
            to_client.extend(server.poll(now, CLIENT));
            for datagram in to_client {
                if let Ok(out) = client.handle(now, SERVER, &datagram) {
                    to_server.extend(out.transmit);
                }
            }
            to_server.extend(client.poll(now, SERVER));
        }
        assert!(exported <= 1, "keys exported {exported} times");
        if mode & 1 == 1 {
            assert_eq!(exported, 0, "keys exported to a client whose fingerprint was not offered");
        }
    });
}
