//! AEAD_AES_128_GCM (RFC 7714) for one SRTP/SRTCP session key: the hand-written AES-NI +
//! PCLMULQDQ code (`gcm_ni.rs`) or the `aes-gcm` crate (which picks those instructions itself at
//! run time), as the context's [`Backend`] says.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, KeyInit, Nonce, Tag};

use super::Backend;

/// One AES-128-GCM key.
// Built once per context and kept inline (see `context.rs`); the size difference is the point.
#[allow(clippy::large_enum_variant)]
pub(super) enum Gcm {
    /// Built only when `gcm_ni::available()` said so.
    #[cfg(target_arch = "x86_64")]
    HandWritten(super::gcm_ni::GcmKey),
    RustCrypto(Aes128Gcm),
}

impl Gcm {
    /// The hand-written backend falls back to RustCrypto on CPUs without AES-NI/PCLMULQDQ.
    pub fn new(key: &[u8; 16], backend: Backend) -> Self {
        #[cfg(target_arch = "x86_64")]
        if backend == Backend::HandWritten && super::gcm_ni::available() {
            // SAFETY: `gcm_ni::available()` found the CPU features.
            return Self::HandWritten(unsafe { super::gcm_ni::GcmKey::new(key) });
        }
        let _ = backend;
        Self::RustCrypto(Aes128Gcm::new(key.into()))
    }

    /// Encrypts `data` in place; returns the tag over `aad` and the ciphertext.
    pub fn seal(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: this variant is only built when `gcm_ni::available()` found the features.
            Self::HandWritten(key) => unsafe { key.seal(nonce, aad, data) },
            Self::RustCrypto(key) => match key.encrypt_in_place_detached(&Nonce::from(*nonce), aad, data) {
                Ok(tag) => tag.into(),
                // aes-gcm refuses only inputs longer than GCM's 2^36-byte limit, far beyond a datagram.
                Err(_) => [0; 16],
            },
        }
    }

    /// Checks `tag`, then decrypts `data` in place; `false` (and `data` untouched) on a mismatch.
    pub fn open(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8], tag: &[u8; 16]) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: this variant is only built when `gcm_ni::available()` found the features.
            Self::HandWritten(key) => unsafe { key.open(nonce, aad, data, tag) },
            Self::RustCrypto(key) => {
                key.decrypt_in_place_detached(&Nonce::from(*nonce), aad, data, &Tag::from(*tag)).is_ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for backend in Backend::ALL {
            let gcm = Gcm::new(&key, backend);
            let mut data = plain.clone();
            assert_eq!(gcm.seal(&nonce, &aad, &mut data).to_vec(), tag, "{backend:?}");
            assert_eq!(data, cipher, "{backend:?}");
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
        for backend in Backend::ALL {
            let gcm = Gcm::new(&key, backend);
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

    fn hex_field(test: &serde_json::Value, name: &str) -> Vec<u8> {
        hex(test[name].as_str().unwrap_or_else(|| panic!("field {name}")))
    }

    /// Wycheproof's AES-128-GCM vectors with a 96-bit IV and a 128-bit tag (the only shape
    /// SRTP uses; `testdata/wycheproof/`): valid ones seal to the published ciphertext and tag
    /// and open back; invalid ones (modified tags, special cases) are refused, data untouched.
    #[test]
    fn wycheproof_aes_128_gcm() {
        let file: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/wycheproof/aes_gcm_128_96_test.json"
        )))
        .unwrap();
        let mut checked = 0;
        for group in file["testGroups"].as_array().unwrap() {
            for test in group["tests"].as_array().unwrap() {
                let id = &test["tcId"];
                let key: [u8; 16] = hex_field(test, "key").try_into().unwrap();
                let nonce: [u8; 12] = hex_field(test, "iv").try_into().unwrap();
                let (aad, msg, ct) = (hex_field(test, "aad"), hex_field(test, "msg"), hex_field(test, "ct"));
                let tag: [u8; 16] = hex_field(test, "tag").try_into().unwrap();
                let valid = test["result"] == "valid";
                for backend in Backend::ALL {
                    let gcm = Gcm::new(&key, backend);
                    if valid {
                        let mut data = msg.clone();
                        assert_eq!(gcm.seal(&nonce, &aad, &mut data), tag, "tcId {id} {backend:?}");
                        assert_eq!(data, ct, "tcId {id} {backend:?}");
                    }
                    let mut data = ct.clone();
                    assert_eq!(gcm.open(&nonce, &aad, &mut data, &tag), valid, "tcId {id} {backend:?}");
                    assert_eq!(&data, if valid { &msg } else { &ct }, "tcId {id} {backend:?}");
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 67);
    }
}
