//! AES-128-GCM (NIST SP 800-38D, 96-bit IV, 16-byte tag) with AES-NI and PCLMULQDQ for SRTP's
//! AEAD profile: counter mode from `aes_ni.rs`, GHASH in the byte-reflected domain (Intel's
//! carry-less multiplication white paper: multiply, shift left by one, reduce), four
//! ciphertext blocks per reduction with precomputed H², H³, H⁴. An audio packet's AAD, seven
//! payload blocks and length block are a dozen multiplications; the `aes-gcm` crate spent
//! ~150 ns on it (benches/benches/srtp.rs).

use std::arch::x86_64::*;

use super::aes_ni::{RoundKeys, apply_ctr, encrypt_block};

/// Whether this CPU has what [`GcmKey`] needs.
pub(super) fn available() -> bool {
    super::aes_ni::available()
        && std::arch::is_x86_feature_detected!("pclmulqdq")
        && std::arch::is_x86_feature_detected!("ssse3")
}

/// Round keys and the hash key's first four powers (byte-reflected).
#[derive(Clone, Copy)]
pub(super) struct GcmKey {
    keys: RoundKeys,
    /// H, H², H³, H⁴.
    h: [__m128i; 4],
}

#[inline]
#[target_feature(enable = "aes,pclmulqdq,sse2,ssse3")]
fn byte_reverse(x: __m128i) -> __m128i {
    _mm_shuffle_epi8(x, _mm_set_epi64x(0x0001_0203_0405_0607, 0x0809_0A0B_0C0D_0E0F))
}

/// The 256-bit carry-less product of `a` and `b` as (low, high) halves.
#[inline]
#[target_feature(enable = "aes,pclmulqdq,sse2,ssse3")]
fn clmul(a: __m128i, b: __m128i) -> (__m128i, __m128i) {
    let low = _mm_clmulepi64_si128(a, b, 0x00);
    let mid = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x10), _mm_clmulepi64_si128(a, b, 0x01));
    let high = _mm_clmulepi64_si128(a, b, 0x11);
    (_mm_xor_si128(low, _mm_slli_si128(mid, 8)), _mm_xor_si128(high, _mm_srli_si128(mid, 8)))
}

/// Shifts a (sum of) 256-bit product(s) left by one bit and reduces it modulo the GCM
/// polynomial (reflected domain).
#[inline]
#[target_feature(enable = "aes,pclmulqdq,sse2,ssse3")]
fn reduce(low: __m128i, high: __m128i) -> __m128i {
    let carry_low = _mm_srli_epi32(low, 31);
    let carry_high = _mm_srli_epi32(high, 31);
    let mut low = _mm_slli_epi32(low, 1);
    let mut high = _mm_slli_epi32(high, 1);
    let across = _mm_srli_si128(carry_low, 12);
    low = _mm_or_si128(low, _mm_slli_si128(carry_low, 4));
    high = _mm_or_si128(high, _mm_slli_si128(carry_high, 4));
    high = _mm_or_si128(high, across);

    let a = _mm_xor_si128(_mm_xor_si128(_mm_slli_epi32(low, 31), _mm_slli_epi32(low, 30)), _mm_slli_epi32(low, 25));
    let folded = _mm_srli_si128(a, 4);
    low = _mm_xor_si128(low, _mm_slli_si128(a, 12));
    let b = _mm_xor_si128(_mm_xor_si128(_mm_srli_epi32(low, 1), _mm_srli_epi32(low, 2)), _mm_srli_epi32(low, 7));
    low = _mm_xor_si128(low, _mm_xor_si128(b, folded));
    _mm_xor_si128(high, low)
}

#[inline]
#[target_feature(enable = "aes,pclmulqdq,sse2,ssse3")]
fn gf_mul(a: __m128i, b: __m128i) -> __m128i {
    let (low, high) = clmul(a, b);
    reduce(low, high)
}

#[inline]
#[target_feature(enable = "aes,pclmulqdq,sse2,ssse3")]
fn load(block: &[u8; 16]) -> __m128i {
    // SAFETY: 16 readable bytes, unaligned load.
    byte_reverse(unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) })
}

impl GcmKey {
    /// # Safety
    /// The CPU must have the features [`available`] checks.
    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3")]
    pub unsafe fn new(key: &[u8; 16]) -> Self {
        // SAFETY: the caller checked the CPU features `RoundKeys::new` needs (a subset).
        let keys = unsafe { RoundKeys::new(key) };
        let h1 = byte_reverse(encrypt_block(&keys, _mm_setzero_si128()));
        let h2 = gf_mul(h1, h1);
        let h3 = gf_mul(h2, h1);
        let h4 = gf_mul(h3, h1);
        Self { keys, h: [h1, h2, h3, h4] }
    }

    /// GHASH state `x` continued over `data`, zero-padded to whole blocks.
    #[inline]
    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3")]
    fn absorb(&self, mut x: __m128i, data: &[u8]) -> __m128i {
        let [h1, h2, h3, h4] = self.h;
        let (quads, rest) = data.as_chunks::<64>();
        for quad in quads {
            let (blocks, _) = quad.as_chunks::<16>();
            let b0 = _mm_xor_si128(x, load(&blocks[0]));
            let (l0, u0) = clmul(b0, h4);
            let (l1, u1) = clmul(load(&blocks[1]), h3);
            let (l2, u2) = clmul(load(&blocks[2]), h2);
            let (l3, u3) = clmul(load(&blocks[3]), h1);
            let low = _mm_xor_si128(_mm_xor_si128(l0, l1), _mm_xor_si128(l2, l3));
            let high = _mm_xor_si128(_mm_xor_si128(u0, u1), _mm_xor_si128(u2, u3));
            x = reduce(low, high);
        }
        let (blocks, tail) = rest.as_chunks::<16>();
        for block in blocks {
            x = gf_mul(_mm_xor_si128(x, load(block)), h1);
        }
        if !tail.is_empty() {
            let mut last = [0u8; 16];
            last[..tail.len()].copy_from_slice(tail);
            x = gf_mul(_mm_xor_si128(x, load(&last)), h1);
        }
        x
    }

    /// The tag over `aad` and `ciphertext` for the pre-counter block `j0`.
    #[inline]
    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3")]
    fn tag(&self, j0: &[u8; 16], aad: &[u8], ciphertext: &[u8]) -> [u8; 16] {
        let x = self.absorb(_mm_setzero_si128(), aad);
        let x = self.absorb(x, ciphertext);
        let lengths = _mm_set_epi64x((aad.len() as u64 * 8) as i64, (ciphertext.len() as u64 * 8) as i64);
        let x = gf_mul(_mm_xor_si128(x, lengths), self.h[0]);
        // SAFETY: `j0` is 16 readable bytes, unaligned load.
        let mask = encrypt_block(&self.keys, unsafe { _mm_loadu_si128(j0.as_ptr().cast::<__m128i>()) });
        let mut tag = [0u8; 16];
        // SAFETY: `tag` is 16 writable bytes, unaligned store.
        unsafe { _mm_storeu_si128(tag.as_mut_ptr().cast::<__m128i>(), _mm_xor_si128(byte_reverse(x), mask)) };
        tag
    }

    /// Encrypts `data` in place and returns the tag.
    ///
    /// # Safety
    /// The CPU must have the features [`available`] checks.
    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3")]
    pub unsafe fn seal(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
        let j0 = pre_counter(nonce);
        // SAFETY: the caller checked the CPU features (a superset of `aes_ni::available`).
        unsafe { apply_ctr(&self.keys, first_counter(&j0), data) };
        self.tag(&j0, aad, data)
    }

    /// Checks `tag` and only then decrypts `data` in place; on a mismatch `data` is untouched.
    ///
    /// # Safety
    /// The CPU must have the features [`available`] checks.
    #[target_feature(enable = "aes,pclmulqdq,sse2,ssse3")]
    pub unsafe fn open(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8], tag: &[u8; 16]) -> bool {
        use subtle::ConstantTimeEq;
        let j0 = pre_counter(nonce);
        if self.tag(&j0, aad, data).ct_eq(tag).unwrap_u8() != 1 {
            return false;
        }
        // SAFETY: the caller checked the CPU features (a superset of `aes_ni::available`).
        unsafe { apply_ctr(&self.keys, first_counter(&j0), data) };
        true
    }
}

/// J0 = nonce || 0x00000001 (96-bit nonce).
fn pre_counter(nonce: &[u8; 12]) -> [u8; 16] {
    let mut j0 = [0u8; 16];
    j0[..12].copy_from_slice(nonce);
    j0[15] = 1;
    j0
}

/// inc32(J0): the payload's first counter block. The 128-bit increments of `apply_ctr` equal
/// GCM's 32-bit ones here: the low word starts at 2 and a packet has far fewer than 2³² blocks.
fn first_counter(j0: &[u8; 16]) -> [u8; 16] {
    let mut counter = *j0;
    counter[15] = 2;
    counter
}
