//! One direction's SRTP/SRTCP crypto context: session keys derived once, per-SSRC rollover
//! and replay state in a small preallocated table, and in-place protect/unprotect.

use subtle::ConstantTimeEq;

use super::aes_ctr::AesCtr;
use super::gcm::Gcm;
use super::hmac_sha1::HmacSha1;
use super::kdf::*;
use super::replay::{ReplayWindow, RtpIndexEstimator};
use super::{Backend, Profile, SrtpError};
use crate::rtp::packet::header_len;

/// Upper bound on SSRCs tracked by one context (bounds memory under abuse).
const MAX_SSRCS: usize = 4096;
const RTCP_E_FLAG: u32 = 0x8000_0000;

// Contexts are long-lived (one per transport direction) and never moved on the hot path, so
// keeping the key schedules inline (no pointer chase per packet) is worth the size difference.
#[allow(clippy::large_enum_variant)]
enum Cipher {
    AesCm {
        rtp_key: AesCtr,
        rtp_salt: [u8; 14],
        rtp_auth: HmacSha1,
        rtcp_key: AesCtr,
        rtcp_salt: [u8; 14],
        rtcp_auth: HmacSha1,
    },
    Gcm {
        rtp: Gcm,
        rtp_salt: [u8; 12],
        rtcp: Gcm,
        rtcp_salt: [u8; 12],
    },
}

#[derive(Default, Clone, Copy)]
struct SsrcState {
    rtp_in: RtpIndexEstimator,
    rtcp_in: ReplayWindow,
    /// Sender side: (rollover counter, last sequence number sent), once started.
    rtp_out: Option<(u32, u16)>,
    rtcp_out_index: u32,
}

/// SRTP/SRTCP state for one direction of one transport.
pub struct SrtpContext {
    profile: Profile,
    cipher: Cipher,
    states: Vec<(u32, SsrcState)>,
    last_hit: usize,
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpContext").field("profile", &self.profile).field("ssrcs", &self.states.len()).finish()
    }
}

fn aes_cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..8]) {
        *b ^= s;
    }
    iv
}

fn gcm_iv(salt: &[u8; 12], ssrc: u32, high: u32, low: u16) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[6..10].copy_from_slice(&high.to_be_bytes());
    iv[10..12].copy_from_slice(&low.to_be_bytes());
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    iv
}

impl SrtpContext {
    /// Builds a context from DTLS-exported (or signalled) master key and salt.
    pub fn new(profile: Profile, master_key: &[u8], master_salt: &[u8]) -> Result<Self, SrtpError> {
        Self::with_backend(profile, master_key, master_salt, Backend::DEFAULT)
    }

    /// [`SrtpContext::new`] with the cipher implementations of `backend`.
    pub fn with_backend(
        profile: Profile,
        master_key: &[u8],
        master_salt: &[u8],
        backend: Backend,
    ) -> Result<Self, SrtpError> {
        let key: &[u8; 16] = master_key.try_into().map_err(|_| SrtpError::BadKeyLength)?;
        if master_salt.len() != profile.salt_len() {
            return Err(SrtpError::BadKeyLength);
        }
        let derive16 = |label| {
            let mut k = [0u8; 16];
            derive_session_key(key, master_salt, label, &mut k);
            k
        };
        let cipher = match profile {
            Profile::Aes128CmHmacSha1_80 | Profile::Aes128CmHmacSha1_32 => {
                let mut rtp_salt = [0u8; 14];
                let mut rtcp_salt = [0u8; 14];
                let mut rtp_auth = [0u8; 20];
                let mut rtcp_auth = [0u8; 20];
                derive_session_key(key, master_salt, LABEL_RTP_SALT, &mut rtp_salt);
                derive_session_key(key, master_salt, LABEL_RTCP_SALT, &mut rtcp_salt);
                derive_session_key(key, master_salt, LABEL_RTP_AUTH, &mut rtp_auth);
                derive_session_key(key, master_salt, LABEL_RTCP_AUTH, &mut rtcp_auth);
                Cipher::AesCm {
                    rtp_key: AesCtr::new(&derive16(LABEL_RTP_ENCRYPTION), backend),
                    rtp_salt,
                    rtp_auth: HmacSha1::new(&rtp_auth, backend),
                    rtcp_key: AesCtr::new(&derive16(LABEL_RTCP_ENCRYPTION), backend),
                    rtcp_salt,
                    rtcp_auth: HmacSha1::new(&rtcp_auth, backend),
                }
            }
            Profile::AeadAes128Gcm => {
                let mut rtp_salt = [0u8; 12];
                let mut rtcp_salt = [0u8; 12];
                derive_session_key(key, master_salt, LABEL_RTP_SALT, &mut rtp_salt);
                derive_session_key(key, master_salt, LABEL_RTCP_SALT, &mut rtcp_salt);
                Cipher::Gcm {
                    rtp: Gcm::new(&derive16(LABEL_RTP_ENCRYPTION), backend),
                    rtp_salt,
                    rtcp: Gcm::new(&derive16(LABEL_RTCP_ENCRYPTION), backend),
                    rtcp_salt,
                }
            }
        };
        Ok(Self { profile, cipher, states: Vec::with_capacity(16), last_hit: 0 })
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    fn state(&mut self, ssrc: u32) -> Option<&mut SsrcState> {
        if self.states.get(self.last_hit).is_some_and(|(s, _)| *s == ssrc) {
            return Some(&mut self.states[self.last_hit].1);
        }
        let at = self.states.iter().position(|(s, _)| *s == ssrc)?;
        self.last_hit = at;
        Some(&mut self.states[at].1)
    }

    fn state_or_insert(&mut self, ssrc: u32) -> Result<&mut SsrcState, SrtpError> {
        if self.state(ssrc).is_none() {
            if self.states.len() >= MAX_SSRCS {
                return Err(SrtpError::TooManySsrcs);
            }
            self.states.push((ssrc, SsrcState::default()));
            self.last_hit = self.states.len() - 1;
        }
        Ok(&mut self.states[self.last_hit].1)
    }

    /// Read-only state lookup that does not create an entry (for unprotect before auth).
    fn peek(&mut self, ssrc: u32) -> SsrcState {
        self.state(ssrc).copied().unwrap_or_default()
    }

    /// Encrypts and authenticates the RTP packet in `buf[..len]` in place, appending the tag.
    /// `buf` needs [`Profile::rtp_overhead`] bytes of room after `len`. Returns the new length.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let out_len = len + self.profile.rtp_overhead();
        if buf.len() < out_len {
            return Err(SrtpError::NoTailRoom);
        }
        let header = header_len(&buf[..len]).map_err(|_| SrtpError::BadHeader)?;
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let state = self.state_or_insert(ssrc)?;
        let roc = match state.rtp_out {
            None => {
                state.rtp_out = Some((0, seq));
                0
            }
            Some((roc, last)) => {
                if seq < last && last - seq > 0x8000 {
                    state.rtp_out = Some((roc.wrapping_add(1), seq));
                    roc.wrapping_add(1)
                } else if seq > last && seq - last > 0x8000 {
                    roc.wrapping_sub(1) // a resend from before the last wrap
                } else {
                    if seq > last {
                        state.rtp_out = Some((roc, seq));
                    }
                    roc
                }
            }
        };
        let index = (roc as u64) << 16 | seq as u64;
        match &self.cipher {
            Cipher::AesCm { rtp_key, rtp_salt, rtp_auth, .. } => {
                rtp_key.apply(aes_cm_iv(rtp_salt, ssrc, index), &mut buf[header..len]);
                let tag = rtp_auth.tag(&buf[..len], roc.to_be_bytes());
                buf[len..out_len].copy_from_slice(&tag[..out_len - len]);
            }
            Cipher::Gcm { rtp, rtp_salt, .. } => {
                let iv = gcm_iv(rtp_salt, ssrc, roc, seq);
                let (aad, rest) = buf.split_at_mut(header);
                let tag = rtp.seal(&iv, aad, &mut rest[..len - header]);
                buf[len..out_len].copy_from_slice(&tag);
            }
        }
        Ok(out_len)
    }

    /// Authenticates, replay-checks and decrypts the SRTP packet in `buf` in place. Returns the
    /// plaintext RTP length. Nothing about the SSRC's state changes unless authentication
    /// succeeds.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.profile.rtp_overhead();
        let header = header_len(buf).map_err(|_| SrtpError::BadHeader)?;
        if buf.len() < header + tag_len {
            return Err(SrtpError::Truncated);
        }
        let len = buf.len() - tag_len;
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let state = self.peek(ssrc);
        let index = state.rtp_in.estimate(seq).ok_or(SrtpError::Replayed)?;
        if !state.rtp_in.window.check(index) {
            return Err(SrtpError::Replayed);
        }
        let roc = (index >> 16) as u32;
        match &self.cipher {
            Cipher::AesCm { rtp_key, rtp_salt, rtp_auth, .. } => {
                let expected = rtp_auth.tag(&buf[..len], roc.to_be_bytes());
                if expected[..tag_len].ct_eq(&buf[len..]).unwrap_u8() != 1 {
                    return Err(SrtpError::AuthFailed);
                }
                rtp_key.apply(aes_cm_iv(rtp_salt, ssrc, index), &mut buf[header..len]);
            }
            Cipher::Gcm { rtp, rtp_salt, .. } => {
                let iv = gcm_iv(rtp_salt, ssrc, roc, seq);
                let tag = tag_from(&buf[len..]);
                let (aad, rest) = buf.split_at_mut(header);
                if !rtp.open(&iv, aad, &mut rest[..len - header], &tag) {
                    return Err(SrtpError::AuthFailed);
                }
            }
        }
        self.state_or_insert(ssrc)?.rtp_in.window.accept(index);
        Ok(len)
    }

    /// Encrypts and authenticates the compound RTCP packet in `buf[..len]` in place, appending
    /// the SRTCP index and tag ([`Profile::rtcp_overhead`] bytes). Returns the new length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let out_len = len + self.profile.rtcp_overhead();
        if buf.len() < out_len {
            return Err(SrtpError::NoTailRoom);
        }
        if len < 8 {
            return Err(SrtpError::Truncated);
        }
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let state = self.state_or_insert(ssrc)?;
        let index = state.rtcp_out_index & 0x7FFF_FFFF;
        state.rtcp_out_index = (index + 1) & 0x7FFF_FFFF;
        let word = (index | RTCP_E_FLAG).to_be_bytes();
        match &self.cipher {
            Cipher::AesCm { rtcp_key, rtcp_salt, rtcp_auth, .. } => {
                rtcp_key.apply(aes_cm_iv(rtcp_salt, ssrc, index as u64), &mut buf[8..len]);
                buf[len..len + 4].copy_from_slice(&word);
                let tag = rtcp_auth.tag(&buf[..len + 4], []);
                buf[len + 4..out_len].copy_from_slice(&tag[..10]);
            }
            Cipher::Gcm { rtcp, rtcp_salt, .. } => {
                let iv = gcm_iv(rtcp_salt, ssrc, 0, 0);
                let iv = xor_rtcp_index(iv, index);
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&word);
                let tag = rtcp.seal(&iv, &aad, &mut buf[8..len]);
                buf[len..len + 16].copy_from_slice(&tag);
                buf[len + 16..out_len].copy_from_slice(&word);
            }
        }
        Ok(out_len)
    }

    /// Authenticates, replay-checks and decrypts an SRTCP packet in place; returns the plaintext
    /// compound RTCP length.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let overhead = self.profile.rtcp_overhead();
        if buf.len() < 8 + overhead {
            return Err(SrtpError::Truncated);
        }
        let len = buf.len() - overhead;
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let word_at = match self.cipher {
            Cipher::AesCm { .. } => len,
            Cipher::Gcm { .. } => buf.len() - 4,
        };
        let word = u32::from_be_bytes([buf[word_at], buf[word_at + 1], buf[word_at + 2], buf[word_at + 3]]);
        if word & RTCP_E_FLAG == 0 {
            return Err(SrtpError::UnencryptedRtcp);
        }
        let index = word & 0x7FFF_FFFF;
        if !self.peek(ssrc).rtcp_in.check(index as u64) {
            return Err(SrtpError::Replayed);
        }
        match &self.cipher {
            Cipher::AesCm { rtcp_key, rtcp_salt, rtcp_auth, .. } => {
                let expected = rtcp_auth.tag(&buf[..len + 4], []);
                if expected[..10].ct_eq(&buf[len + 4..]).unwrap_u8() != 1 {
                    return Err(SrtpError::AuthFailed);
                }
                rtcp_key.apply(aes_cm_iv(rtcp_salt, ssrc, index as u64), &mut buf[8..len]);
            }
            Cipher::Gcm { rtcp, rtcp_salt, .. } => {
                let iv = xor_rtcp_index(gcm_iv(rtcp_salt, ssrc, 0, 0), index);
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&word.to_be_bytes());
                let tag = tag_from(&buf[len..len + 16]);
                if !rtcp.open(&iv, &aad, &mut buf[8..len], &tag) {
                    return Err(SrtpError::AuthFailed);
                }
            }
        }
        self.state_or_insert(ssrc)?.rtcp_in.accept(index as u64);
        Ok(len)
    }
}

fn tag_from(bytes: &[u8]) -> [u8; 16] {
    let mut tag = [0u8; 16];
    tag.copy_from_slice(bytes);
    tag
}

/// RFC 7714 9.1: the SRTCP index occupies the last four IV bytes (XORed into the salted IV).
fn xor_rtcp_index(mut iv: [u8; 12], index: u32) -> [u8; 12] {
    for (b, s) in iv[8..12].iter_mut().zip(index.to_be_bytes()) {
        *b ^= s;
    }
    iv
}

#[cfg(test)]
mod tests;
