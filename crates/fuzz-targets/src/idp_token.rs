//! IdP (directory) tokens (`palaver_signaling::auth::directory::DirectoryValidator`, RS256 JWTs) as
//! `POST /teamsUser/:exchangeAccessToken` and the native directory client present them, then
//! the exchange checks. Two modes by the first byte: the rest as a raw token; or claims built
//! from the input (each claim valid, absent, text or a number from the input) signed with the
//! trusted tenant's key, so the checks after the signature are reached. Properties: no panic
//! (including arithmetic overflow on any `exp`/`nbf`); a validated user belongs to the
//! configured tenant, has an oid and an unexpired token.

use crate::{Fields, run_ready};
use palaver_signaling::auth::directory::dev_idp::{DEV_APP_ID, DEV_AUDIENCE, DEV_ISSUER, DEV_TENANT_ID};
use palaver_signaling::auth::directory::{DevIdp, DirectoryConfig, DirectoryValidator, check_exchange};
use rand::SeedableRng;
use rsa::pkcs1::EncodeRsaPrivateKey;
use serde_json::{Map, Value, json};

const NOW: i64 = 1_800_000_000;

thread_local! {
    static TENANT: (DevIdp, DirectoryValidator) = {
        // A fixed key keeps crashes reproducible; 1024 bits keeps signing cheap per input.
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::StdRng::seed_from_u64(19), 1024).expect("RSA key");
        let pem = key.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).expect("PEM");
        let idp = DevIdp::from_pem(&pem).expect("dev IdP key");
        let validator = DirectoryValidator::new(&DirectoryConfig::default(), [idp.tenant_config()]).expect("tenant");
        (idp, validator)
    };
}

/// One claim: the valid value, absent, text or a number from the input.
fn claim(fields: &mut Fields<'_>, valid: Value) -> Option<Value> {
    match fields.byte() % 4 {
        0 => Some(valid),
        1 => None,
        2 => Some(Value::String(fields.text(0xFF))),
        _ => Some(json!(i64::from_be_bytes(std::array::from_fn(|_| fields.byte())))),
    }
}

/// One input (the body of the libFuzzer target of the same name).
pub fn run(data: &[u8]) {
    TENANT.with(|(idp, validator)| {
        let mut fields = Fields::new(data);
        let token = if fields.byte() & 1 == 0 {
            String::from_utf8_lossy(fields.rest()).into_owned()
        } else {
            let mut claims = Map::new();
            for (name, valid) in [
                ("iss", json!(DEV_ISSUER)),
                ("aud", json!(DEV_AUDIENCE)),
                ("exp", json!(NOW + 3600)),
                ("nbf", json!(NOW - 60)),
                ("tid", json!(DEV_TENANT_ID)),
                ("oid", json!("00000000-0000-4000-8000-000000000001")),
                ("appid", json!(DEV_APP_ID)),
                ("scp", json!("Teams.ManageCalls Teams.ManageChats")),
                ("name", json!("Fuzz")),
                ("tenant_region_scope", json!("EU")),
            ] {
                if let Some(value) = claim(&mut fields, valid) {
                    claims.insert(name.into(), value);
                }
            }
            idp.sign_claims(&Value::Object(claims)).expect("signing")
        };
        let Ok(user) = run_ready(validator.validate(&token, NOW)) else { return };
        assert_eq!(user.tenant_id, DEV_TENANT_ID);
        assert!(!user.oid.is_empty());
        assert!(user.expires_at > NOW - 60, "an expired IdP token was accepted");
        let app_id = fields.text(0xFF);
        let user_id = fields.text(0xFF);
        if check_exchange(&user, &app_id, &user_id).is_ok() {
            assert_eq!((user.app_id.as_deref(), user.oid.as_str()), (Some(app_id.as_str()), user_id.as_str()));
        }
    });
}
