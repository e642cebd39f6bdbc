//! HMAC-SHA1 (RFC 2104) for SRTP/SRTCP authentication, keyed once per session, in one of two
//! backends ([`Backend`]). Hand-written: the SHA-1 states after the ipad and opad blocks are
//! computed when the context is built, and a tag is one SHA-NI call (`sha_ni.rs`) over the
//! packet's whole 64-byte blocks straight from the buffer plus a stack copy of the padded tail
//! (with the rollover-counter suffix). RustCrypto: the keyed `hmac` crate state, cloned per tag.

use hmac::Mac;
use sha1::Sha1Core;
use sha1::digest::core_api::Block;

type Sha1Block = Block<Sha1Core>;

const BLOCK_LEN: usize = 64;
const DIGEST_LEN: usize = 20;
const SHA1_INIT: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];

use super::Backend;

/// One HMAC-SHA1 key.
#[derive(Clone)]
pub(super) enum HmacSha1 {
    /// The two keyed SHA-1 states; built only when `sha_ni::available()` said so.
    HandWritten {
        inner: [u32; 5],
        outer: [u32; 5],
    },
    RustCrypto(hmac::Hmac<sha1::Sha1>),
}

/// Views whole 64-byte blocks as the `sha1` crate's block type without copying.
fn as_sha1_blocks(blocks: &[[u8; BLOCK_LEN]]) -> &[Sha1Block] {
    const {
        assert!(size_of::<Sha1Block>() == BLOCK_LEN && align_of::<Sha1Block>() == 1);
    }
    // SAFETY: `Sha1Block` is `GenericArray<u8, U64>`, a `repr(transparent)` wrapper around
    // nested `repr(C)` arrays of 64 `u8` (size 64 and alignment 1, asserted above), so it has the
    // layout of `[u8; 64]`; the `sha1` crate's own `compress` casts in the other direction.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast::<Sha1Block>(), blocks.len()) }
}

fn compress(state: &mut [u32; 5], blocks: &[[u8; BLOCK_LEN]]) {
    sha1::compress(state, as_sha1_blocks(blocks));
}

impl HmacSha1 {
    /// Keys the MAC (keys longer than a block are hashed first, RFC 2104 section 2). The
    /// hand-written backend falls back to RustCrypto on CPUs without the SHA extensions.
    pub fn new(key: &[u8], backend: Backend) -> Self {
        #[cfg(target_arch = "x86_64")]
        if backend == Backend::HandWritten && super::sha_ni::available() {
            let mut padded = [0u8; BLOCK_LEN];
            if key.len() > BLOCK_LEN {
                padded[..DIGEST_LEN].copy_from_slice(&sha1(key));
            } else {
                padded[..key.len()].copy_from_slice(key);
            }
            let keyed = |pad: u8| {
                let mut state = SHA1_INIT;
                compress(&mut state, &[padded.map(|k| k ^ pad)]);
                state
            };
            return Self::HandWritten { inner: keyed(0x36), outer: keyed(0x5C) };
        }
        let _ = backend;
        // `new_from_slice` accepts keys of every length (HMAC hashes long ones itself).
        Self::RustCrypto(<hmac::Hmac<sha1::Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key length"))
    }

    /// The 20-byte HMAC of `message || suffix` (SRTP appends the rollover counter to the
    /// authenticated packet without it being in the buffer).
    pub fn tag<const S: usize>(&self, message: &[u8], suffix: [u8; S]) -> [u8; DIGEST_LEN] {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::HandWritten { inner, outer } => {
                let (whole, rest) = message.as_chunks::<BLOCK_LEN>();
                let mut tail = [[0u8; BLOCK_LEN]; 2];
                let blocks = pad_tail(&mut tail, rest, suffix, BLOCK_LEN + message.len() + S);
                // SAFETY: this variant is only built when `sha_ni::available()` found the features.
                unsafe { super::sha_ni::hmac_sha1(inner, outer, whole, &tail[..blocks]) }
            }
            #[cfg(not(target_arch = "x86_64"))]
            Self::HandWritten { .. } => unreachable!("only built on x86_64"),
            Self::RustCrypto(keyed) => {
                let mut mac = keyed.clone();
                mac.update(message);
                mac.update(&suffix);
                mac.finalize().into_bytes().into()
            }
        }
    }
}

/// Writes the last partial block of a message (`rest`, then `suffix`), the 0x80 padding byte
/// and the 64-bit big-endian bit length of the whole `total` bytes into `tail`; returns how
/// many of its two blocks are used.
fn pad_tail<const S: usize>(tail: &mut [[u8; BLOCK_LEN]; 2], rest: &[u8], suffix: [u8; S], total: usize) -> usize {
    const {
        // < 64 message bytes + suffix + 0x80 + 64-bit length must fit two blocks
        assert!(S <= BLOCK_LEN - 9);
    }
    let bytes = tail.as_flattened_mut();
    let used = rest.len() + S;
    bytes[..rest.len()].copy_from_slice(rest);
    bytes[rest.len()..used].copy_from_slice(&suffix);
    bytes[used] = 0x80;
    let blocks = if used + 9 <= BLOCK_LEN { 1 } else { 2 };
    bytes[blocks * BLOCK_LEN - 8..blocks * BLOCK_LEN].copy_from_slice(&((total as u64) * 8).to_be_bytes());
    blocks
}

/// SHA-1 of `message` (for keys longer than a block).
fn sha1(message: &[u8]) -> [u8; DIGEST_LEN] {
    let (whole, rest) = message.as_chunks::<BLOCK_LEN>();
    let mut state = SHA1_INIT;
    if !whole.is_empty() {
        compress(&mut state, whole);
    }
    let mut tail = [[0u8; BLOCK_LEN]; 2];
    let blocks = pad_tail(&mut tail, rest, [], message.len());
    compress(&mut state, &tail[..blocks]);
    digest_bytes(&state)
}

fn digest_bytes(state: &[u32; 5]) -> [u8; DIGEST_LEN] {
    let mut out = [0u8; DIGEST_LEN];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// RFC 2202 section 3 test cases 1, 2, 3 and 6 (short, ASCII, 50-byte and longer-than-block key).
    #[test]
    fn rfc2202_vectors() {
        let cases: [(Vec<u8>, Vec<u8>, &str); 4] = [
            (vec![0x0B; 20], b"Hi There".to_vec(), "b617318655057264e28bc0b6fb378c8ef146be00"),
            (b"Jefe".to_vec(), b"what do ya want for nothing?".to_vec(), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
            (vec![0xAA; 20], vec![0xDD; 50], "125d7342b9ac11cd91a39af48aa17b4f63f175d3"),
            (
                vec![0xAA; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "aa4ae5e15272d00e95705637ce8a3b55ed402112",
            ),
        ];
        for (key, data, expected) in cases {
            for backend in Backend::ALL {
                assert_eq!(HmacSha1::new(&key, backend).tag(&data, []).to_vec(), hex(expected), "{backend:?}");
            }
        }
    }

    /// Every tail shape (message lengths across three block boundaries, with and without the
    /// 4-byte suffix) agrees with the `hmac` crate.
    #[test]
    fn matches_hmac_crate_for_every_length() {
        let key: Vec<u8> = (0..20u8).map(|i| i.wrapping_mul(37) ^ 0x5A).collect();
        let message: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for (backend, len) in Backend::ALL.into_iter().flat_map(|b| (0..=message.len()).map(move |len| (b, len))) {
            let ours = HmacSha1::new(&key, backend);
            let mut theirs = <hmac::Hmac<sha1::Sha1> as Mac>::new_from_slice(&key).unwrap();
            theirs.update(&message[..len]);
            let plain: [u8; 20] = theirs.clone().finalize().into_bytes().into();
            assert_eq!(ours.tag(&message[..len], []), plain, "len {len}, {backend:?}");
            theirs.update(&[1, 2, 3, 4]);
            let suffixed: [u8; 20] = theirs.finalize().into_bytes().into();
            assert_eq!(ours.tag(&message[..len], [1, 2, 3, 4]), suffixed, "len {len} + suffix, {backend:?}");
        }
    }

    /// Wycheproof's HMAC-SHA1 vectors (`testdata/wycheproof/`; 10-, 20- and 65-byte keys, full
    /// and 80-bit tags): a valid tag is the MAC's prefix, an invalid one is not.
    #[test]
    fn wycheproof_hmac_sha1() {
        let file: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/wycheproof/hmac_sha1_test.json"
        )))
        .unwrap();
        let mut checked = 0;
        for group in file["testGroups"].as_array().unwrap() {
            let tag_len = group["tagSize"].as_u64().unwrap() as usize / 8;
            for test in group["tests"].as_array().unwrap() {
                let id = &test["tcId"];
                let field = |name: &str| hex(test[name].as_str().unwrap());
                let (key, msg, tag) = (field("key"), field("msg"), field("tag"));
                let valid = test["result"] == "valid";
                for backend in Backend::ALL {
                    let ours = HmacSha1::new(&key, backend).tag(&msg, []);
                    assert_eq!(tag.len() == tag_len && ours[..tag_len] == tag[..], valid, "tcId {id} {backend:?}");
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 170);
    }
}
