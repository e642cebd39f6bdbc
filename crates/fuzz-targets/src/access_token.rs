//! palaver access tokens (`palaver_signaling::auth::token::TokenService`, EdDSA JWTs) as they
//! arrive in `Authorization: Bearer`, WebSocket upgrades and the QUIC auth frame. Three modes by
//! the first byte: the rest as a raw token; a header and payload from the input signed with the
//! service's own key (so the claim checks after the signature are reached); and a grant from
//! the input issued and verified again. Properties: no panic (including arithmetic overflow on
//! any `exp`); a verified token is for this resource and unexpired; an issued token's payload
//! base64 has no `-`/`_` (the SDKs decode it with a standard decoder) and verifies back to the
//! claims it was issued with.

use crate::Fields;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ed25519_dalek::{Signer, SigningKey};
use palaver_core::{Scope, ScopeSet};
use palaver_signaling::auth::token::{TokenGrant, TokenService};

const SEED: [u8; 32] = [7; 32];
const RESOURCE: &str = "fuzz-resource";
const NOW_MS: i64 = 1_800_000_000_000;

thread_local! {
    static SERVICE: TokenService = TokenService::from_seed_base64(
        &base64::engine::general_purpose::STANDARD.encode(SEED),
        RESOURCE,
        "europe",
    )
    .expect("valid seed");
}

/// One input (the body of the libFuzzer target of the same name).
pub fn run(data: &[u8]) {
    SERVICE.with(|service| {
        let mut fields = Fields::new(data);
        let token = match fields.byte() % 3 {
            0 => String::from_utf8_lossy(fields.rest()).into_owned(),
            1 => {
                let header = B64URL.encode(fields.part(0xFF));
                let payload = B64URL.encode(fields.rest());
                let input = format!("{header}.{payload}");
                let signature = SigningKey::from_bytes(&SEED).sign(input.as_bytes());
                format!("{input}.{}", B64URL.encode(signature.to_bytes()))
            }
            _ => {
                let scopes = fields.byte();
                let scopes = [Scope::Chat, Scope::Voip, Scope::ChatJoin, Scope::ChatJoinLimited, Scope::VoipJoin]
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| scopes & (1 << i) != 0)
                    .fold(ScopeSet::empty(), |set, (_, s)| set.with(s));
                let expires_at_ms = i64::from_be_bytes(std::array::from_fn(|_| fields.byte()));
                let native = fields.byte() & 1 == 1;
                let name = Some(fields.text(0xFF)).filter(|n| !n.is_empty());
                let tid = Some(fields.text(0xFF)).filter(|t| !t.is_empty());
                let raw_id = fields.text(0xFF);
                let grant = TokenGrant { raw_id, scopes, expires_at_ms, name, tid, native };
                let Ok(issued) = service.issue(&grant, NOW_MS) else { return };
                let _ = issued.expires_on();
                let payload = issued.token.split('.').nth(1).expect("three parts");
                assert!(!payload.contains(['-', '_']), "payload base64 {payload} is not SDK-safe");
                let verified = service.verify(&issued.token, NOW_MS);
                if expires_at_ms.div_euclid(1000) > NOW_MS / 1000 {
                    assert_eq!(verified, Ok(issued.claims), "an issued token did not verify to its claims");
                }
                issued.token
            }
        };
        if let Ok(claims) = service.verify(&token, NOW_MS) {
            assert_eq!(claims.resource_id, RESOURCE);
            assert!(i128::from(claims.exp) * 1000 > i128::from(NOW_MS), "an expired token verified");
        }
    });
}
