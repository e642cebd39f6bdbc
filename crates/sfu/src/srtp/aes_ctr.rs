//! AES-128 counter mode (RFC 3711 4.1.1) for one SRTP/SRTCP session key: the hand-written
//! AES-NI keystream (`aes_ni.rs`) or the `ctr` crate over the `aes` crate's key schedule (which
//! picks AES-NI itself at run time), as the context's [`Backend`] says.

use aes::Aes128Enc;
use aes::cipher::{InnerIvInit, KeyInit, StreamCipher};

use super::Backend;

/// One AES-128 key, expanded for counter mode.
// One per SRTP context, built once and read per packet: boxing the larger RustCrypto key
// schedule would add a pointer chase to every packet on that backend to save memory no one
// multiplies.
#[allow(clippy::large_enum_variant)]
pub(super) enum AesCtr {
    /// Built only when `aes_ni::available()` said so.
    #[cfg(target_arch = "x86_64")]
    HandWritten(super::aes_ni::RoundKeys),
    RustCrypto(Aes128Enc),
}

impl AesCtr {
    /// The hand-written backend falls back to RustCrypto on CPUs without AES-NI.
    pub fn new(key: &[u8; 16], backend: Backend) -> Self {
        #[cfg(target_arch = "x86_64")]
        if backend == Backend::HandWritten && super::aes_ni::available() {
            // SAFETY: `aes_ni::available()` found the CPU features.
            return Self::HandWritten(unsafe { super::aes_ni::RoundKeys::new(key) });
        }
        let _ = backend;
        Self::RustCrypto(Aes128Enc::new(key.into()))
    }

    /// XORs the keystream that starts at counter block `iv` into `data`.
    pub fn apply(&self, iv: [u8; 16], data: &mut [u8]) {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: this variant is only built when `aes_ni::available()` found the features.
            Self::HandWritten(keys) => unsafe { super::aes_ni::apply_ctr(keys, iv, data) },
            Self::RustCrypto(key) => {
                let core = ctr::CtrCore::<Aes128Enc, ctr::flavors::Ctr128BE>::inner_iv_init(key.clone(), &iv.into());
                ctr::Ctr128BE::<Aes128Enc>::from_core(core).apply_keystream(data);
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

    /// NIST SP 800-38A F.5.1 (CTR-AES128.Encrypt): four blocks from counter f0f1…feff, then
    /// the same keystream cut at every length up to 300 bytes (partial blocks, several 8-block
    /// groups, a counter that carries across 64 bits) against the `ctr` crate.
    #[test]
    fn sp800_38a_vector_and_every_length() {
        let key: [u8; 16] = hex("2b7e151628aed2a6abf7158809cf4f3c").try_into().unwrap();
        let iv: [u8; 16] = hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").try_into().unwrap();
        let plain = hex(concat!(
            "6bc1bee22e409f96e93d7e117393172a",
            "ae2d8a571e03ac9c9eb76fac45af8e51",
            "30c81c46a35ce411e5fbc1191a0a52ef",
            "f69f2445df4f9b17ad2b417be66c3710"
        ));
        let cipher = hex(concat!(
            "874d6191b620e3261bef6864990db6ce",
            "9806f66b7970fdff8617187bb9fffdff",
            "5ae4df3edbd5d35e5b4f09020db03eab",
            "1e031dda2fbe03d1792170a0f3009cee"
        ));
        let carry_iv: [u8; 16] = hex("000102030405060708ffffffffffffff").try_into().unwrap();
        for backend in Backend::ALL {
            let ctr = AesCtr::new(&key, backend);
            let mut data = plain.clone();
            ctr.apply(iv, &mut data);
            assert_eq!(data, cipher, "{backend:?}");
            for start in [iv, carry_iv] {
                for len in 0..=300 {
                    let mut ours: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
                    let mut theirs = ours.clone();
                    ctr.apply(start, &mut ours);
                    let core = ctr::CtrCore::<Aes128Enc, ctr::flavors::Ctr128BE>::inner_iv_init(
                        Aes128Enc::new(&key.into()),
                        &start.into(),
                    );
                    ctr::Ctr128BE::<Aes128Enc>::from_core(core).apply_keystream(&mut theirs);
                    assert_eq!(ours, theirs, "len {len}, {backend:?}");
                }
            }
        }
    }
}
