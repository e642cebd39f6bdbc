//! ICE-lite STUN (RFC 5389 / RFC 8445): validating a Binding request (USERNAME, short-term
//! MESSAGE-INTEGRITY, FINGERPRINT) and writing the Binding success response with
//! XOR-MAPPED-ADDRESS, all over borrowed buffers without allocating.

use std::net::{IpAddr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

const MAGIC: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const ATTR_FINGERPRINT: u16 = 0x8028;
const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// Why a STUN message was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("not a well-formed STUN binding request")]
    Malformed,
    #[error("USERNAME missing or not local:remote")]
    BadUsername,
    #[error("MESSAGE-INTEGRITY missing or wrong")]
    BadIntegrity,
    #[error("FINGERPRINT wrong")]
    BadFingerprint,
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// True if the datagram looks like STUN (RFC 7983 demultiplexing plus the magic cookie).
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= 20 && buf[0] < 4 && buf[4..8] == MAGIC.to_be_bytes()
}

/// A structurally valid Binding request, not yet authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingRequest<'a> {
    pub transaction_id: [u8; 12],
    /// The local (server) part of USERNAME: the server's ICE ufrag.
    pub local_ufrag: &'a str,
    integrity_at: usize,
    message: &'a [u8],
}

fn crc32(parts: &[&[u8]]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for part in parts {
        for &b in *part {
            crc = TABLE[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
        }
    }
    !crc
}

impl<'a> BindingRequest<'a> {
    /// Parses a Binding request; checks FINGERPRINT if present.
    pub fn parse(buf: &'a [u8]) -> Result<Self, StunError> {
        if !is_stun(buf) || u16::from_be_bytes([buf[0], buf[1]]) != BINDING_REQUEST {
            return Err(StunError::Malformed);
        }
        let length = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if !length.is_multiple_of(4) || 20 + length != buf.len() {
            return Err(StunError::Malformed);
        }
        let mut username = None;
        let mut integrity_at = None;
        let mut at = 20;
        while at < buf.len() {
            if at + 4 > buf.len() {
                return Err(StunError::Malformed);
            }
            let kind = u16::from_be_bytes([buf[at], buf[at + 1]]);
            let len = u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize;
            let value_end = at + 4 + len;
            if value_end > buf.len() {
                return Err(StunError::Malformed);
            }
            let value = &buf[at + 4..value_end];
            match kind {
                ATTR_USERNAME if integrity_at.is_none() => username = Some(value),
                ATTR_MESSAGE_INTEGRITY => {
                    if len != 20 {
                        return Err(StunError::Malformed);
                    }
                    integrity_at = Some(at);
                }
                ATTR_FINGERPRINT => {
                    if len != 4 || value_end != buf.len() {
                        return Err(StunError::Malformed);
                    }
                    let expected = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
                    if crc32(&[&buf[..at]]) ^ FINGERPRINT_XOR != expected {
                        return Err(StunError::BadFingerprint);
                    }
                }
                _ => {}
            }
            at = value_end.div_ceil(4) * 4;
        }
        let username =
            std::str::from_utf8(username.ok_or(StunError::BadUsername)?).map_err(|_| StunError::BadUsername)?;
        let (local_ufrag, _) = username.split_once(':').ok_or(StunError::BadUsername)?;
        let mut transaction_id = [0u8; 12];
        transaction_id.copy_from_slice(&buf[8..20]);
        Ok(Self {
            transaction_id,
            local_ufrag,
            integrity_at: integrity_at.ok_or(StunError::BadIntegrity)?,
            message: buf,
        })
    }

    /// Checks MESSAGE-INTEGRITY against the local ICE password.
    pub fn verify(&self, password: &[u8]) -> Result<(), StunError> {
        let at = self.integrity_at;
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(password).map_err(|_| StunError::BadIntegrity)?;
        mac.update(&self.message[..2]);
        mac.update(&((at + 24 - 20) as u16).to_be_bytes());
        mac.update(&self.message[4..at]);
        let expected = mac.finalize().into_bytes();
        if expected.ct_eq(&self.message[at + 4..at + 24]).unwrap_u8() == 1 {
            Ok(())
        } else {
            Err(StunError::BadIntegrity)
        }
    }
}

/// Writes a Binding success response for `request` telling the peer its `mapped` address,
/// signed with the local ICE password. Returns the length.
pub fn write_binding_success(
    out: &mut [u8],
    transaction_id: &[u8; 12],
    mapped: SocketAddr,
    password: &[u8],
) -> Result<usize, StunError> {
    let address_len = if mapped.is_ipv4() { 8 } else { 20 };
    let total = 20 + (4 + address_len) + 24 + 8;
    if out.len() < total {
        return Err(StunError::BufferTooSmall);
    }
    out[..2].copy_from_slice(&BINDING_SUCCESS.to_be_bytes());
    out[4..8].copy_from_slice(&MAGIC.to_be_bytes());
    out[8..20].copy_from_slice(transaction_id);
    let mut at = 20;
    out[at..at + 2].copy_from_slice(&ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
    out[at + 2..at + 4].copy_from_slice(&(address_len as u16).to_be_bytes());
    out[at + 4] = 0;
    out[at + 5] = if mapped.is_ipv4() { 1 } else { 2 };
    out[at + 6..at + 8].copy_from_slice(&(mapped.port() ^ (MAGIC >> 16) as u16).to_be_bytes());
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&MAGIC.to_be_bytes());
    key[4..].copy_from_slice(transaction_id);
    match mapped.ip() {
        IpAddr::V4(ip) => {
            for (i, b) in ip.octets().iter().enumerate() {
                out[at + 8 + i] = b ^ key[i];
            }
        }
        IpAddr::V6(ip) => {
            for (i, b) in ip.octets().iter().enumerate() {
                out[at + 8 + i] = b ^ key[i];
            }
        }
    }
    at += 4 + address_len;
    let at = append_message_integrity(out, at, password)?;
    Ok(append_fingerprint(out, at))
}

/// Append MESSAGE-INTEGRITY (HMAC-SHA1 keyed by `password`) to the message written in
/// `out[..at]`, whose length field is first set to cover this attribute (RFC 5389 §15.4);
/// returns the new end. `out` must have room for the 24 bytes.
fn append_message_integrity(out: &mut [u8], at: usize, password: &[u8]) -> Result<usize, StunError> {
    out[2..4].copy_from_slice(&((at + 24 - 20) as u16).to_be_bytes());
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(password).map_err(|_| StunError::BadIntegrity)?;
    mac.update(&out[..at]);
    let tag = mac.finalize().into_bytes();
    out[at..at + 2].copy_from_slice(&ATTR_MESSAGE_INTEGRITY.to_be_bytes());
    out[at + 2..at + 4].copy_from_slice(&20u16.to_be_bytes());
    out[at + 4..at + 24].copy_from_slice(&tag);
    Ok(at + 24)
}

/// Append FINGERPRINT (CRC-32 of the message so far, XORed, RFC 5389 §15.5) to `out[..at]`,
/// length field included; returns the message's full length. `out` must have room for 8 bytes.
fn append_fingerprint(out: &mut [u8], at: usize) -> usize {
    out[2..4].copy_from_slice(&((at + 8 - 20) as u16).to_be_bytes());
    let fingerprint = crc32(&[&out[..at]]) ^ FINGERPRINT_XOR;
    out[at..at + 2].copy_from_slice(&ATTR_FINGERPRINT.to_be_bytes());
    out[at + 2..at + 4].copy_from_slice(&4u16.to_be_bytes());
    out[at + 4..at + 8].copy_from_slice(&fingerprint.to_be_bytes());
    at + 8
}

/// Builds a Binding request as a browser would (for tests and the load generator).
pub fn write_binding_request(
    out: &mut [u8],
    transaction_id: &[u8; 12],
    username: &str,
    password: &[u8],
) -> Result<usize, StunError> {
    let user_len = username.len();
    let padded = user_len.div_ceil(4) * 4;
    let total = 20 + 4 + padded + 24 + 8;
    if out.len() < total {
        return Err(StunError::BufferTooSmall);
    }
    out[..total].fill(0);
    out[..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    out[4..8].copy_from_slice(&MAGIC.to_be_bytes());
    out[8..20].copy_from_slice(transaction_id);
    out[20..22].copy_from_slice(&ATTR_USERNAME.to_be_bytes());
    out[22..24].copy_from_slice(&(user_len as u16).to_be_bytes());
    out[24..24 + user_len].copy_from_slice(username.as_bytes());
    let at = append_message_integrity(out, 24 + padded, password)?;
    Ok(append_fingerprint(out, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
    }

    /// RFC 5769 section 2.1 sample request (username "evtj:h6vY", password "VOkJxbRl1RmTxUk/WvJxBt").
    #[test]
    fn rfc5769_sample_request_verifies() {
        let hex = "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74\
                   002400046e0001ff80290008932ff9b151263b36000600096576746a3a6836765920202000080014\
                   9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf";
        let hex: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
        let msg: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        let req = BindingRequest::parse(&msg).unwrap();
        assert_eq!(req.local_ufrag, "evtj");
        req.verify(b"VOkJxbRl1RmTxUk/WvJxBt").unwrap();
        assert_eq!(req.verify(b"wrong"), Err(StunError::BadIntegrity));
        let mut bad = msg.clone();
        bad[30] ^= 1;
        assert!(BindingRequest::parse(&bad).is_err());
    }

    #[test]
    fn request_and_response_round_trip() {
        let mut buf = [0u8; 200];
        let n = write_binding_request(&mut buf, &[7; 12], "srv:cli", b"secret-password").unwrap();
        let req = BindingRequest::parse(&buf[..n]).unwrap();
        assert_eq!(req.local_ufrag, "srv");
        req.verify(b"secret-password").unwrap();
        let mut resp = [0u8; 100];
        let addr: SocketAddr = "192.0.2.1:32853".parse().unwrap();
        let n = write_binding_success(&mut resp, &req.transaction_id, addr, b"secret-password").unwrap();
        assert!(is_stun(&resp[..n]));
        assert_eq!(&resp[..2], &BINDING_SUCCESS.to_be_bytes());
        // RFC 5769 2.2: 192.0.2.1:32853 xor-encodes to port a147, address e112a643
        assert_eq!(&resp[26..32], &[0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43]);
        for cut in 0..n {
            let _ = BindingRequest::parse(&buf[..cut]);
        }
    }
}
