//! `incomingCallContext`: the opaque token an application answers, rejects or redirects an
//! incoming call by. It is an HMAC-SHA256-signed, expiring claim naming the call, the callee
//! and the invitation (`<base64url JSON>.<base64url MAC>`); single use is enforced by the
//! machine, which remembers the ids it has consumed until they expire.

use super::CallAutomationError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What an `incomingCallContext` stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingCallClaim {
    /// Unique per IncomingCall event (the single-use key).
    pub id: String,
    /// The call (its `serverCallId`).
    pub call_id: String,
    /// Who is being called (the identity the application answers as).
    pub callee: String,
    /// Who is calling.
    pub caller: String,
    /// Expiry, ms since the Unix epoch.
    pub exp_ms: u64,
}

/// Signs and checks contexts with one server key.
#[derive(Clone)]
pub struct ContextSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for ContextSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContextSigner(..)")
    }
}

fn mac(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(payload);
    m.finalize().into_bytes().to_vec()
}

impl ContextSigner {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// A signer whose key is derived from a persisted secret (`incomingCallContext`s then
    /// verify after a restart, and on every node that shares the secret).
    pub fn from_secret(secret: &str) -> Self {
        use sha2::Digest;
        let mut hash = Sha256::new();
        hash.update(b"palaver incomingCallContext v1\0");
        hash.update(secret.as_bytes());
        Self { key: hash.finalize().into() }
    }

    /// A signer with a fresh random key (contexts do not outlive the process: a call rings
    /// for seconds).
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
        Self { key }
    }

    pub fn sign(&self, claim: &IncomingCallClaim) -> String {
        let payload = serde_json::to_vec(claim).expect("plain struct");
        let sig = mac(&self.key, &payload);
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(sig))
    }

    /// The claim of an authentic, unexpired context (`400/8523` otherwise).
    pub fn verify(&self, context: &str, now_ms: u64) -> Result<IncomingCallClaim, CallAutomationError> {
        let invalid = || CallAutomationError::invalid_argument("The incomingCallContext is invalid.");
        let (payload, sig) = context.trim().split_once('.').ok_or_else(invalid)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| invalid())?;
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        m.update(&payload);
        m.verify_slice(&sig).map_err(|_| invalid())?;
        let claim: IncomingCallClaim = serde_json::from_slice(&payload).map_err(|_| invalid())?;
        if now_ms >= claim.exp_ms {
            return Err(CallAutomationError::invalid_argument("The incomingCallContext has expired."));
        }
        Ok(claim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> IncomingCallClaim {
        IncomingCallClaim {
            id: "i1".into(),
            call_id: "c1".into(),
            callee: "8:acs:r_b".into(),
            caller: "8:acs:r_a".into(),
            exp_ms: 1_000,
        }
    }

    #[test]
    fn signed_contexts_verify_until_they_expire() {
        let signer = ContextSigner::new([7; 32]);
        let ctx = signer.sign(&claim());
        assert_eq!(signer.verify(&ctx, 999).unwrap(), claim());
        let expired = signer.verify(&ctx, 1_000).unwrap_err();
        assert_eq!((expired.status, expired.subcode), (400, 8523));
        assert!(expired.message.contains("expired"));
    }

    #[test]
    fn forged_or_foreign_contexts_are_refused() {
        let signer = ContextSigner::new([7; 32]);
        let ctx = signer.sign(&claim());
        let other = ContextSigner::new([8; 32]);
        assert_eq!(other.verify(&ctx, 0).unwrap_err().subcode, 8523);
        let (payload, sig) = ctx.split_once('.').unwrap();
        let mut forged = claim();
        forged.callee = "8:acs:r_evil".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert!(signer.verify(&format!("{forged_payload}.{sig}"), 0).is_err());
        for junk in ["", "x", "a.b", &format!("{payload}."), "....."] {
            assert_eq!(signer.verify(junk, 0).unwrap_err().subcode, 8523, "{junk}");
        }
    }
}
