//! AEAD_AES_128_GCM (RFC 7714) for one SRTP/SRTCP session key: AES-NI + PCLMULQDQ when the CPU
//! has them (`gcm_ni.rs`), else the `aes-gcm` crate.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, KeyInit, Nonce, Tag};

/// One AES-128-GCM key.
pub(super) struct Gcm {
    portable: Aes128Gcm,
    /// Present only when `gcm_ni::available()` said so.
    #[cfg(target_arch = "x86_64")]
    ni: Option<super::gcm_ni::GcmKey>,
}

impl Gcm {
    pub fn new(key: &[u8; 16]) -> Self {
        #[cfg(target_arch = "x86_64")]
        let ni = super::gcm_ni::available();
        #[cfg(not(target_arch = "x86_64"))]
        let ni = false;
        Self::with_backend(key, ni)
    }

    /// `ni` may only be true when `gcm_ni::available()` is (tests force it off).
    fn with_backend(key: &[u8; 16], ni: bool) -> Self {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `ni` is only true when `gcm_ni::available()` found the CPU features.
        let ni = ni.then(|| unsafe { super::gcm_ni::GcmKey::new(key) });
        #[cfg(not(target_arch = "x86_64"))]
        let _ = ni;
        Self {
            portable: Aes128Gcm::new(key.into()),
            #[cfg(target_arch = "x86_64")]
            ni,
        }
    }

    /// Encrypts `data` in place; returns the tag over `aad` and the ciphertext.
    pub fn seal(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
        #[cfg(target_arch = "x86_64")]
        if let Some(key) = &self.ni {
            // SAFETY: `ni` is only set when `gcm_ni::available()` found the CPU features.
            return unsafe { key.seal(nonce, aad, data) };
        }
        match self.portable.encrypt_in_place_detached(&Nonce::from(*nonce), aad, data) {
            Ok(tag) => tag.into(),
            // aes-gcm refuses only inputs longer than GCM's 2^36-byte limit, far beyond a datagram.
            Err(_) => [0; 16],
        }
    }

    /// Checks `tag`, then decrypts `data` in place; `false` (and `data` untouched) on a mismatch.
    pub fn open(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8], tag: &[u8; 16]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if let Some(key) = &self.ni {
            // SAFETY: `ni` is only set when `gcm_ni::available()` found the CPU features.
            return unsafe { key.open(nonce, aad, data, tag) };
        }
        self.portable.decrypt_in_place_detached(&Nonce::from(*nonce), aad, data, &Tag::from(*tag)).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends() -> impl Iterator<Item = bool> {
        #[cfg(target_arch = "x86_64")]
        let ni = crate::srtp::gcm_ni::available();
        #[cfg(not(target_arch = "x86_64"))]
        let ni = false;
        [false, true].into_iter().filter(move |b| !b || ni)
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// GCM spec (McGrew/Viega) test case 4: AES-128, 96-bit IV, 20-byte AAD, 60-byte plaintext.
    #[test]
    fn gcm_spec_test_case_4() {
        let key: [u8; 16] = hex("feffe9928665731c6d6a8f9467308308").try_into().unwrap();
        let nonce: [u8; 12] = hex("cafebabefacedbaddecaf888").try_into().unwrap();
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let plain = hex(concat!(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72",
            "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
        ));
        let cipher = hex(concat!(
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e",
            "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
        ));
        let tag = hex("5bc94fbc3221a5db94fae95ae7121a47");
        for backend in backends() {
            let gcm = Gcm::with_backend(&key, backend);
            let mut data = plain.clone();
            assert_eq!(gcm.seal(&nonce, &aad, &mut data).to_vec(), tag, "GHASH/CTR-NI {backend}");
            assert_eq!(data, cipher, "GHASH/CTR-NI {backend}");
            assert!(gcm.open(&nonce, &aad, &mut data, tag.as_slice().try_into().unwrap()));
            assert_eq!(data, plain);
        }
    }

    /// Every AAD length 0..40 and payload length 0..300 (partial blocks, four-block groups)
    /// agrees with the `aes-gcm` crate; a flipped bit anywhere is refused with `data` untouched.
    #[test]
    fn matches_aes_gcm_crate_and_refuses_tampering() {
        let key: [u8; 16] = std::array::from_fn(|i| (i * 29 + 5) as u8);
        let nonce: [u8; 12] = std::array::from_fn(|i| (i * 3 + 1) as u8);
        let reference = Aes128Gcm::new(&key.into());
        for backend in backends() {
            let gcm = Gcm::with_backend(&key, backend);
            for (aad_len, len) in (0..40).step_by(3).flat_map(|a| (0..300).map(move |n| (a, n))) {
                let aad: Vec<u8> = (0..aad_len).map(|i| (i * 7) as u8).collect();
                let plain: Vec<u8> = (0..len).map(|i| (i * 11 + aad_len) as u8).collect();
                let mut ours = plain.clone();
                let tag = gcm.seal(&nonce, &aad, &mut ours);
                let mut theirs = plain.clone();
                let their_tag = reference.encrypt_in_place_detached(&Nonce::from(nonce), &aad, &mut theirs).unwrap();
                assert_eq!((&ours, tag), (&theirs, their_tag.into()), "aad {aad_len} len {len}");
                if len > 0 {
                    let mut tampered = ours.clone();
                    tampered[len / 2] ^= 0x10;
                    let before = tampered.clone();
                    assert!(!gcm.open(&nonce, &aad, &mut tampered, &tag), "aad {aad_len} len {len}");
                    assert_eq!(tampered, before, "refused data must stay untouched");
                }
                assert!(gcm.open(&nonce, &aad, &mut ours, &tag), "aad {aad_len} len {len}");
                assert_eq!(ours, plain);
            }
        }
    }
}
