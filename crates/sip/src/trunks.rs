//! The trunks the gateway talks to: the allow-list (which source addresses may send SIP at
//! all; checked by the transport before a packet is parsed), trunk lookup by source, and the
//! digest challenges this gateway issues to trunks with credentials (RFC 3261 §22; one
//! challenge per configured algorithm — MD5, or SHA-256 first and MD5 beside it, RFC 8760
//! §2.4 — on one single-use nonce that expires).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use rsipstack::dialog::authenticate::verify_digest;
use rsipstack::sip::headers::auth::Algorithm;
use rsipstack::sip::typed::Authorization;
use rsipstack::sip::{Header, Request};

use crate::config::{DigestAlgorithm, TrunkConfig};

/// How long a nonce of a challenge stays usable.
const NONCE_LIFETIME: Duration = Duration::from_secs(60);
/// Outstanding nonces kept at most (a flood of unauthenticated INVITEs from an allowed
/// address cannot grow the table without bound; the oldest are dropped).
const MAX_NONCES: usize = 4096;

/// The configured trunks and the nonces handed out to them.
#[derive(Debug)]
pub struct Trunks {
    trunks: Vec<TrunkConfig>,
    by_ip: HashMap<IpAddr, usize>,
    nonces: Mutex<HashMap<String, Instant>>,
}

/// What a request's credentials amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// The trunk has no credentials configured, or the request proved them.
    Accepted,
    /// Answer 401 with these `WWW-Authenticate` values, in order of preference (the trunk's
    /// `digest_algorithms`).
    Challenge(Vec<String>),
}

impl Trunks {
    pub fn new(trunks: Vec<TrunkConfig>) -> Self {
        let mut by_ip = HashMap::new();
        for (index, trunk) in trunks.iter().enumerate() {
            for ip in &trunk.allow_from {
                by_ip.entry(*ip).or_insert(index);
            }
        }
        Self { trunks, by_ip, nonces: Mutex::new(HashMap::new()) }
    }

    /// Is `ip` on some trunk's allow-list?
    pub fn allowed(&self, ip: IpAddr) -> bool {
        self.by_ip.contains_key(&canonical(ip))
    }

    /// The trunk a request from `ip` belongs to.
    pub fn by_source(&self, ip: IpAddr) -> Option<&TrunkConfig> {
        self.by_ip.get(&canonical(ip)).map(|&i| &self.trunks[i])
    }

    pub fn all(&self) -> &[TrunkConfig] {
        &self.trunks
    }

    /// The first trunk (outbound calls go there).
    pub fn primary(&self) -> Option<&TrunkConfig> {
        self.trunks.first()
    }

    /// Checks the request's `Authorization` against the trunk's credentials.
    pub fn authenticate(&self, trunk: &TrunkConfig, request: &Request, now: Instant) -> Authentication {
        let (Some(username), Some(password)) = (&trunk.username, &trunk.password) else {
            return Authentication::Accepted;
        };
        // RFC 8760's `algorithm=SHA-256` in rsipstack's spelling (`crate::digest`; the
        // endpoint's inspector did it already for requests off the wire).
        let raw = request.headers.iter().find_map(|h| match h {
            Header::Authorization(a) => {
                Some(crate::digest::to_rsipstack(a.value()).unwrap_or_else(|| a.value().to_string()))
            }
            _ => None,
        });
        if let Some(raw) = raw
            && let Ok(auth) = Authorization::parse(&raw)
            && auth.username == *username
            && auth.realm == trunk.realm
            && offered(trunk, auth.algorithm)
            && self.take_nonce(&auth.nonce, now)
            && verify_digest(&auth, password, &request.method, &raw)
        {
            return Authentication::Accepted;
        }
        Authentication::Challenge(self.challenge(trunk, now))
    }

    /// Fresh `WWW-Authenticate` values: one per `digest_algorithms`, on one nonce.
    fn challenge(&self, trunk: &TrunkConfig, now: Instant) -> Vec<String> {
        let nonce = format!("{:032x}", rand::thread_rng().r#gen::<u128>());
        if let Ok(mut nonces) = self.nonces.lock() {
            nonces.retain(|_, issued| now.saturating_duration_since(*issued) < NONCE_LIFETIME);
            if nonces.len() >= MAX_NONCES
                && let Some(oldest) = nonces.iter().min_by_key(|(_, t)| **t).map(|(n, _)| n.clone())
            {
                nonces.remove(&oldest);
            }
            nonces.insert(nonce.clone(), now);
        }
        trunk
            .digest_algorithms
            .iter()
            .map(|a| format!("Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}", trunk.realm, a.name()))
            .collect()
    }

    /// Uses up a nonce this gateway issued (a replayed or stale one is refused).
    fn take_nonce(&self, nonce: &str, now: Instant) -> bool {
        let Ok(mut nonces) = self.nonces.lock() else { return false };
        match nonces.remove(nonce) {
            Some(issued) => now.saturating_duration_since(issued) < NONCE_LIFETIME,
            None => false,
        }
    }
}

/// Was `algorithm` (of an answer; none means MD5) one of the trunk's challenges?
fn offered(trunk: &TrunkConfig, algorithm: Option<Algorithm>) -> bool {
    let wanted = match algorithm.unwrap_or(Algorithm::Md5) {
        Algorithm::Md5 => DigestAlgorithm::Md5,
        Algorithm::Sha256 => DigestAlgorithm::Sha256,
        _ => return false,
    };
    trunk.digest_algorithms.contains(&wanted)
}

/// IPv4-mapped IPv6 sources compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SrtpPolicy;
    use rsipstack::sip::{Method, SipMessage};

    fn trunk(credentials: bool) -> TrunkConfig {
        TrunkConfig {
            name: "carrier".into(),
            address: "127.0.0.1:5080".parse().unwrap(),
            transport: Default::default(),
            allow_from: vec!["127.0.0.1".parse().unwrap()],
            username: credentials.then(|| "palaver".into()),
            password: credentials.then(|| "s3cret".into()),
            realm: "palaver".into(),
            digest_algorithms: vec![DigestAlgorithm::Md5],
            codecs: vec!["PCMU".into()],
            srtp: Some(SrtpPolicy::Off),
            ca_file: None,
            tls_server_name: None,
            client_cert_file: None,
            client_key_file: None,
            crl_file: None,
            caller_id: None,
            ringback: "off".into(),
            hold_audio: None,
            rtp_latching: false,
        }
    }

    fn invite(authorization: Option<&str>) -> Request {
        let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
        let text = format!(
            "INVITE sip:+14255550100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK1\r\n\
             From: <sip:+14255550199@127.0.0.1>;tag=a\r\nTo: <sip:+14255550100@127.0.0.1>\r\nCall-ID: c1\r\n\
             CSeq: 1 INVITE\r\n{auth}Content-Length: 0\r\n\r\n"
        );
        match SipMessage::try_from(text.as_str()).unwrap() {
            SipMessage::Request(r) => r,
            _ => unreachable!(),
        }
    }

    fn nonce_of(challenge: &[String]) -> String {
        challenge[0].split("nonce=\"").nth(1).unwrap().split('"').next().unwrap().to_owned()
    }

    #[test]
    fn the_challenge_offers_sha_256_first_and_md5_on_one_nonce_and_both_answers_verify() {
        let mut sha = trunk(true);
        sha.digest_algorithms = vec![DigestAlgorithm::Sha256, DigestAlgorithm::Md5];
        let trunks = Trunks::new(vec![sha]);
        let t = trunks.trunks[0].clone();
        let now = Instant::now();
        let uri = "sip:+14255550100@127.0.0.1";
        // What an RFC 8760 SBC (or rsipstack, through the inspector) answers.
        let answer = |algorithm: Algorithm, spelled: &str, nonce: &str| {
            let response = rsipstack::dialog::authenticate::compute_digest(
                "palaver",
                "s3cret",
                "palaver",
                nonce,
                &Method::Invite,
                uri,
                algorithm,
                None,
            );
            format!(
                "Digest username=\"palaver\", realm=\"palaver\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm={spelled}"
            )
        };
        for (algorithm, spelled) in [(Algorithm::Sha256, "SHA-256"), (Algorithm::Md5, "MD5")] {
            let Authentication::Challenge(challenge) = trunks.authenticate(&t, &invite(None), now) else { panic!() };
            assert_eq!(challenge.len(), 2);
            assert!(
                challenge[0].ends_with("algorithm=SHA-256") && challenge[1].ends_with("algorithm=MD5"),
                "{challenge:?}"
            );
            let nonce = nonce_of(&challenge);
            assert_eq!(nonce_of(&challenge[1..]), nonce, "one nonce for both");
            let proof = answer(algorithm, spelled, &nonce);
            assert_eq!(trunks.authenticate(&t, &invite(Some(&proof)), now), Authentication::Accepted, "{spelled}");
        }
        // A SHA-256 response labelled MD5 is wrong.
        let Authentication::Challenge(challenge) = trunks.authenticate(&t, &invite(None), now) else { panic!() };
        let nonce = nonce_of(&challenge);
        let mislabelled = answer(Algorithm::Sha256, "MD5", &nonce);
        assert!(matches!(trunks.authenticate(&t, &invite(Some(&mislabelled)), now), Authentication::Challenge(_)));
        // A trunk left at the default challenges with MD5 alone and refuses a SHA-256 answer.
        let md5 = Trunks::new(vec![trunk(true)]);
        let t = md5.trunks[0].clone();
        let Authentication::Challenge(challenge) = md5.authenticate(&t, &invite(None), now) else { panic!() };
        assert_eq!(challenge.len(), 1);
        assert!(challenge[0].ends_with("algorithm=MD5"), "{challenge:?}");
        let sha256 = answer(Algorithm::Sha256, "SHA-256", &nonce_of(&challenge));
        assert!(matches!(md5.authenticate(&t, &invite(Some(&sha256)), now), Authentication::Challenge(_)));
    }

    #[test]
    fn only_allow_listed_sources_are_trunks() {
        let trunks = Trunks::new(vec![trunk(false)]);
        assert!(trunks.allowed("127.0.0.1".parse().unwrap()));
        assert!(trunks.allowed("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!trunks.allowed("10.0.0.9".parse().unwrap()));
        assert_eq!(trunks.by_source("127.0.0.1".parse().unwrap()).unwrap().name, "carrier");
        assert_eq!(trunks.authenticate(&trunks.trunks[0], &invite(None), Instant::now()), Authentication::Accepted);
    }

    #[test]
    fn a_challenge_is_answered_once_with_the_right_password_only() {
        let trunks = Trunks::new(vec![trunk(true)]);
        let t = trunks.trunks[0].clone();
        let now = Instant::now();
        let Authentication::Challenge(challenge) = trunks.authenticate(&t, &invite(None), now) else { panic!() };
        let nonce = nonce_of(&challenge);
        let answer = |password: &str, nonce: &str| {
            let uri = "sip:+14255550100@127.0.0.1";
            let response = rsipstack::dialog::authenticate::compute_digest(
                "palaver",
                password,
                "palaver",
                nonce,
                &Method::Invite,
                uri,
                rsipstack::sip::headers::auth::Algorithm::Md5,
                None,
            );
            format!(
                "Digest username=\"palaver\", realm=\"palaver\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5"
            )
        };
        assert!(matches!(
            trunks.authenticate(&t, &invite(Some(&answer("wrong", &nonce))), now),
            Authentication::Challenge(_)
        ));
        // The wrong try used the nonce up: a new challenge is needed.
        let Authentication::Challenge(challenge) = trunks.authenticate(&t, &invite(None), now) else { panic!() };
        let nonce = nonce_of(&challenge);
        assert_eq!(trunks.authenticate(&t, &invite(Some(&answer("s3cret", &nonce))), now), Authentication::Accepted);
        assert!(
            matches!(
                trunks.authenticate(&t, &invite(Some(&answer("s3cret", &nonce))), now),
                Authentication::Challenge(_)
            ),
            "a nonce is single use"
        );
        let late = now + NONCE_LIFETIME + Duration::from_secs(1);
        let Authentication::Challenge(challenge) = trunks.authenticate(&t, &invite(None), now) else { panic!() };
        let nonce = nonce_of(&challenge);
        assert!(matches!(
            trunks.authenticate(&t, &invite(Some(&answer("s3cret", &nonce))), late),
            Authentication::Challenge(_)
        ));
    }
}
