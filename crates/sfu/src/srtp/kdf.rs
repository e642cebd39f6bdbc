//! RFC 3711 section 4.3 key derivation with the AES-CM PRF (key derivation rate 0), used by
//! both the AES-CM/HMAC-SHA1 profiles and AEAD_AES_128_GCM (RFC 7714 section 11).

use aes::Aes128Enc;
use aes::cipher::{BlockEncrypt, KeyInit};

pub const LABEL_RTP_ENCRYPTION: u8 = 0;
pub const LABEL_RTP_AUTH: u8 = 1;
pub const LABEL_RTP_SALT: u8 = 2;
pub const LABEL_RTCP_ENCRYPTION: u8 = 3;
pub const LABEL_RTCP_AUTH: u8 = 4;
pub const LABEL_RTCP_SALT: u8 = 5;

/// Fills `out` with the session key material for `label` from a 16-byte master key and a
/// master salt of up to 14 bytes.
pub fn derive_session_key(master_key: &[u8; 16], master_salt: &[u8], label: u8, out: &mut [u8]) {
    let aes = Aes128Enc::new(master_key.into());
    let mut input = [0u8; 16];
    let salt_len = master_salt.len().min(14);
    input[..salt_len].copy_from_slice(&master_salt[..salt_len]);
    input[7] ^= label;
    for (i, chunk) in out.chunks_mut(16).enumerate() {
        let mut block = input;
        block[14..16].copy_from_slice(&(i as u16).to_be_bytes());
        let mut b = block.into();
        aes.encrypt_block(&mut b);
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// RFC 3711 appendix B.3 test vectors.
    #[test]
    fn rfc3711_b3_vectors() {
        let key: [u8; 16] = hex("E1F97A0D3E018BE0D64FA32C06DE4139").try_into().unwrap();
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let mut enc = [0u8; 16];
        derive_session_key(&key, &salt, LABEL_RTP_ENCRYPTION, &mut enc);
        assert_eq!(enc.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut session_salt = [0u8; 14];
        derive_session_key(&key, &salt, LABEL_RTP_SALT, &mut session_salt);
        assert_eq!(session_salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        let mut auth = [0u8; 20];
        derive_session_key(&key, &salt, LABEL_RTP_AUTH, &mut auth);
        assert_eq!(auth.to_vec(), hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"));
    }
}
