//! HMAC-SHA1 (RFC 2104) for SRTP/SRTCP authentication: the `hmac` crate keyed once per session
//! key, its state cloned per tag (a stack copy, no allocation). The `sha1` crate picks SHA-NI
//! itself at run time. palaver's own SHA-NI HMAC was not 20 % faster end to end and was removed
//! (docs/media.md, "SRTP crypto backends").

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// One keyed HMAC-SHA1.
#[derive(Clone)]
pub(super) struct HmacSha1(Hmac<Sha1>);

impl HmacSha1 {
    /// Keys the MAC (the `hmac` crate hashes keys longer than a block, RFC 2104 section 2).
    pub fn new(key: &[u8]) -> Self {
        Self(<Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length"))
    }

    /// The 20-byte HMAC of `message || suffix` (SRTP appends the rollover counter to the
    /// authenticated packet without it being in the buffer).
    pub fn tag<const S: usize>(&self, message: &[u8], suffix: [u8; S]) -> [u8; 20] {
        let mut mac = self.0.clone();
        mac.update(message);
        mac.update(&suffix);
        mac.finalize().into_bytes().into()
    }
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
            assert_eq!(HmacSha1::new(&key).tag(&data, []).to_vec(), hex(expected));
        }
    }

    /// The rollover-counter suffix is authenticated as if it followed the message in the
    /// buffer, at every message length across three SHA-1 blocks.
    #[test]
    fn suffix_is_appended_to_the_message() {
        let mac = HmacSha1::new(&[0x5A; 20]);
        let message: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..=message.len() {
            let joined = [&message[..len], &[1, 2, 3, 4]].concat();
            assert_eq!(mac.tag(&message[..len], [1, 2, 3, 4]), mac.tag(&joined, []), "len {len}");
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
                let ours = HmacSha1::new(&key).tag(&msg, []);
                assert_eq!(tag.len() == tag_len && ours[..tag_len] == tag[..], valid, "tcId {id}");
                checked += 1;
            }
        }
        assert_eq!(checked, 170);
    }
}
