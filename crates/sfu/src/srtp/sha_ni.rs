//! A whole HMAC-SHA1 tag with the x86 SHA extensions in one call: the inner hash's blocks, the
//! outer block (built in registers from the inner digest) and the output, with the SHA-1 state
//! kept in vector registers throughout. Per-block calls into the `sha1` crate cost ~3 ns each
//! (feature check, state load/store; benches/benches/srtp.rs) and a tag needs three of them.
//! The round sequence is the `sha1` crate's x86 backend (itself Intel's reference sequence).

use std::arch::x86_64::*;

/// Whether this CPU has what [`hmac_sha1`] needs.
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("sha")
        && std::arch::is_x86_feature_detected!("sse2")
        && std::arch::is_x86_feature_detected!("ssse3")
        && std::arch::is_x86_feature_detected!("sse4.1")
}

/// Reverses the 16 bytes of a vector: big-endian message words in SHA-NI lane order.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn byte_reverse() -> __m128i {
    _mm_set_epi64x(0x0001_0203_0405_0607, 0x0809_0A0B_0C0D_0E0F)
}

#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn load_state(state: &[u32; 5]) -> (__m128i, __m128i) {
    let abcd = _mm_set_epi32(state[0] as i32, state[1] as i32, state[2] as i32, state[3] as i32);
    (abcd, _mm_set_epi32(state[4] as i32, 0, 0, 0))
}

#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn load_block(block: &[u8; 64]) -> [__m128i; 4] {
    let mask = byte_reverse();
    let words = block.as_ptr().cast::<__m128i>();
    // SAFETY: `block` is 64 readable bytes, four unaligned 16-byte loads.
    let [w0, w1, w2, w3] = unsafe {
        [
            _mm_loadu_si128(words),
            _mm_loadu_si128(words.add(1)),
            _mm_loadu_si128(words.add(2)),
            _mm_loadu_si128(words.add(3)),
        ]
    };
    [_mm_shuffle_epi8(w0, mask), _mm_shuffle_epi8(w1, mask), _mm_shuffle_epi8(w2, mask), _mm_shuffle_epi8(w3, mask)]
}

macro_rules! rounds4 {
    ($h0:ident, $h1:ident, $wk:expr, $i:expr) => {
        _mm_sha1rnds4_epu32($h0, _mm_sha1nexte_epu32($h1, $wk), $i)
    };
}

macro_rules! schedule {
    ($v0:expr, $v1:expr, $v2:expr, $v3:expr) => {
        _mm_sha1msg2_epu32(_mm_xor_si128(_mm_sha1msg1_epu32($v0, $v1), $v2), $v3)
    };
}

macro_rules! schedule_rounds4 {
    ($h0:ident, $h1:ident, $w0:expr, $w1:expr, $w2:expr, $w3:expr, $w4:expr, $i:expr) => {
        $w4 = schedule!($w0, $w1, $w2, $w3);
        $h1 = rounds4!($h0, $h1, $w4, $i);
    };
}

/// One SHA-1 compression of the message words `w` (SHA-NI lane order) into `(abcd, e)`.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn compress(abcd: __m128i, e: __m128i, w: [__m128i; 4]) -> (__m128i, __m128i) {
    let [mut w0, mut w1, mut w2, mut w3] = w;
    let mut w4;
    let mut h0 = abcd;
    let mut h1 = _mm_add_epi32(e, w0);

    h1 = _mm_sha1rnds4_epu32(h0, h1, 0);
    h0 = rounds4!(h1, h0, w1, 0);
    h1 = rounds4!(h0, h1, w2, 0);
    h0 = rounds4!(h1, h0, w3, 0);
    schedule_rounds4!(h0, h1, w0, w1, w2, w3, w4, 0);

    schedule_rounds4!(h1, h0, w1, w2, w3, w4, w0, 1);
    schedule_rounds4!(h0, h1, w2, w3, w4, w0, w1, 1);
    schedule_rounds4!(h1, h0, w3, w4, w0, w1, w2, 1);
    schedule_rounds4!(h0, h1, w4, w0, w1, w2, w3, 1);
    schedule_rounds4!(h1, h0, w0, w1, w2, w3, w4, 1);

    schedule_rounds4!(h0, h1, w1, w2, w3, w4, w0, 2);
    schedule_rounds4!(h1, h0, w2, w3, w4, w0, w1, 2);
    schedule_rounds4!(h0, h1, w3, w4, w0, w1, w2, 2);
    schedule_rounds4!(h1, h0, w4, w0, w1, w2, w3, 2);
    schedule_rounds4!(h0, h1, w0, w1, w2, w3, w4, 2);

    schedule_rounds4!(h1, h0, w1, w2, w3, w4, w0, 3);
    schedule_rounds4!(h0, h1, w2, w3, w4, w0, w1, 3);
    schedule_rounds4!(h1, h0, w3, w4, w0, w1, w2, 3);
    schedule_rounds4!(h0, h1, w4, w0, w1, w2, w3, 3);
    schedule_rounds4!(h1, h0, w0, w1, w2, w3, w4, 3);

    (_mm_add_epi32(abcd, h0), _mm_sha1nexte_epu32(h1, e))
}

/// HMAC-SHA1 from the keyed `inner`/`outer` states: the inner hash over `whole` then `tail`
/// (already padded, bit length included), then the outer block (20-byte digest, padding,
/// length 84 bytes).
///
/// # Safety
/// The CPU must have the features [`available`] checks.
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
pub(super) unsafe fn hmac_sha1(inner: &[u32; 5], outer: &[u32; 5], whole: &[[u8; 64]], tail: &[[u8; 64]]) -> [u8; 20] {
    let (mut abcd, mut e) = load_state(inner);
    for block in whole.iter().chain(tail) {
        (abcd, e) = compress(abcd, e, load_block(block));
    }
    // Outer block words W0..W3 = A..D (already in lane order), W4 = E, W5 = 0x80000000 (the
    // padding bit), W6..W14 = 0, W15 = 84 * 8 bits.
    let w1 = _mm_set_epi32(_mm_extract_epi32(e, 3), 0x8000_0000_u32 as i32, 0, 0);
    let w3 = _mm_set_epi32(0, 0, 0, 84 * 8);
    let (outer_abcd, outer_e) = load_state(outer);
    let (abcd, e) = compress(outer_abcd, outer_e, [abcd, w1, _mm_setzero_si128(), w3]);
    let mut out = [0u8; 20];
    // SAFETY: `out` has 16 writable bytes at its start; the store is unaligned.
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast::<__m128i>(), _mm_shuffle_epi8(abcd, byte_reverse())) };
    out[16..].copy_from_slice(&(_mm_extract_epi32(e, 3) as u32).to_be_bytes());
    out
}
