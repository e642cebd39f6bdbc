//! AES-128 counter-mode keystream with AES-NI: the round keys expanded once per session key,
//! eight counter blocks encrypted side by side (the AES rounds of independent blocks overlap;
//! a 100-byte audio payload is one group) and XORed into the packet in place. The `aes`
//! crate's `encrypt_blocks` runs blocks beyond its 8-wide groups one at a time, and the
//! counter blocks have to be staged in memory for it.

use std::arch::x86_64::*;

/// Whether this CPU has what [`RoundKeys`] needs.
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("sse2")
}

/// The eleven AES-128 round keys.
#[derive(Clone, Copy)]
pub(super) struct RoundKeys([__m128i; 11]);

#[inline]
#[target_feature(enable = "aes,sse2")]
fn expand_step(key: __m128i, assist: __m128i) -> __m128i {
    let assist = _mm_shuffle_epi32(assist, 0xFF);
    let mut key = key;
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    _mm_xor_si128(key, assist)
}

macro_rules! expand {
    ($keys:ident, $i:literal, $rcon:literal) => {
        $keys[$i] = expand_step($keys[$i - 1], _mm_aeskeygenassist_si128($keys[$i - 1], $rcon));
    };
}

impl RoundKeys {
    /// FIPS-197 key expansion.
    ///
    /// # Safety
    /// The CPU must have the features [`available`] checks.
    #[target_feature(enable = "aes,sse2")]
    pub unsafe fn new(key: &[u8; 16]) -> Self {
        // SAFETY: `key` is 16 readable bytes; the load is unaligned.
        let first = unsafe { _mm_loadu_si128(key.as_ptr().cast::<__m128i>()) };
        let mut keys = [first; 11];
        expand!(keys, 1, 0x01);
        expand!(keys, 2, 0x02);
        expand!(keys, 3, 0x04);
        expand!(keys, 4, 0x08);
        expand!(keys, 5, 0x10);
        expand!(keys, 6, 0x20);
        expand!(keys, 7, 0x40);
        expand!(keys, 8, 0x80);
        expand!(keys, 9, 0x1B);
        expand!(keys, 10, 0x36);
        Self(keys)
    }
}

/// AES of one block.
#[inline]
#[target_feature(enable = "aes,sse2")]
pub(super) fn encrypt_block(keys: &RoundKeys, block: __m128i) -> __m128i {
    let keys = &keys.0;
    let mut block = _mm_xor_si128(block, keys[0]);
    for key in &keys[1..10] {
        block = _mm_aesenc_si128(block, *key);
    }
    _mm_aesenclast_si128(block, keys[10])
}

/// AES of the eight counter blocks `counter`, `counter + 1`, … (128-bit big-endian).
#[inline]
#[target_feature(enable = "aes,sse2")]
fn keystream8(keys: &RoundKeys, counter: u128) -> [__m128i; 8] {
    let keys = &keys.0;
    let mut blocks = [_mm_setzero_si128(); 8];
    for (j, block) in blocks.iter_mut().enumerate() {
        let bytes = counter.wrapping_add(j as u128).to_be_bytes();
        // SAFETY: `bytes` is 16 readable bytes; the load is unaligned.
        *block = _mm_xor_si128(unsafe { _mm_loadu_si128(bytes.as_ptr().cast::<__m128i>()) }, keys[0]);
    }
    for key in &keys[1..10] {
        for block in &mut blocks {
            *block = _mm_aesenc_si128(*block, *key);
        }
    }
    for block in &mut blocks {
        *block = _mm_aesenclast_si128(*block, keys[10]);
    }
    blocks
}

/// XORs the AES-CTR keystream starting at counter block `iv` into `data`.
///
/// # Safety
/// The CPU must have the features [`available`] checks.
#[target_feature(enable = "aes,sse2")]
pub(super) unsafe fn apply_ctr(keys: &RoundKeys, iv: [u8; 16], data: &mut [u8]) {
    let mut counter = u128::from_be_bytes(iv);
    for group in data.chunks_mut(8 * 16) {
        let keystream = keystream8(keys, counter);
        counter = counter.wrapping_add(8);
        let (blocks, rest) = group.as_chunks_mut::<16>();
        for (block, key) in blocks.iter_mut().zip(&keystream) {
            let at = block.as_mut_ptr().cast::<__m128i>();
            // SAFETY: `block` is 16 readable and writable bytes; unaligned load and store.
            unsafe { _mm_storeu_si128(at, _mm_xor_si128(_mm_loadu_si128(at), *key)) };
        }
        if !rest.is_empty() {
            let mut last = [0u8; 16];
            // SAFETY: `last` is 16 writable bytes; the store is unaligned.
            unsafe { _mm_storeu_si128(last.as_mut_ptr().cast::<__m128i>(), keystream[blocks.len()]) };
            for (byte, key) in rest.iter_mut().zip(last) {
                *byte ^= key;
            }
        }
    }
}
