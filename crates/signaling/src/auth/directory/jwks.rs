//! A tenant's signing keys (JWKS): inline from config, or fetched from its `jwks_uri` with a
//! cache (one hour; refreshed when a token names an unknown `kid`, at most once a minute).

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const CACHE_FOR: Duration = Duration::from_secs(3600);
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Parsed RSA signing keys.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<(Option<String>, DecodingKey)>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|(kid, _)| kid)).finish()
    }
}

impl KeySet {
    /// Parse a JWKS document; only RSA keys are kept (the IdP signs with RS256).
    pub fn parse(json: &str) -> Result<Self, String> {
        let set: JwkSet = serde_json::from_str(json).map_err(|e| format!("invalid JWKS: {e}"))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            if let AlgorithmParameters::RSA(rsa) = &jwk.algorithm {
                let key =
                    DecodingKey::from_rsa_components(&rsa.n, &rsa.e).map_err(|e| format!("invalid RSA key: {e}"))?;
                keys.push((jwk.common.key_id.clone(), key));
            }
        }
        if keys.is_empty() {
            return Err("JWKS holds no RSA signing key".into());
        }
        Ok(Self { keys })
    }

    /// Keys that may have signed a token with header `kid` (all keys when it has none).
    pub fn candidates(&self, kid: Option<&str>) -> Vec<DecodingKey> {
        self.keys.iter().filter(|(k, _)| kid.is_none() || k.as_deref() == kid).map(|(_, key)| key.clone()).collect()
    }
}

/// Where a tenant's keys come from.
pub enum TenantKeys {
    Inline(KeySet),
    Remote { uri: String, client: reqwest::Client, cache: Mutex<Option<(KeySet, Instant)>> },
}

impl std::fmt::Debug for TenantKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TenantKeys::Inline(k) => f.debug_tuple("Inline").field(k).finish(),
            TenantKeys::Remote { uri, .. } => f.debug_struct("Remote").field("uri", uri).finish(),
        }
    }
}

impl TenantKeys {
    pub fn remote(uri: &str) -> Result<Self, String> {
        let client =
            reqwest::Client::builder().timeout(FETCH_TIMEOUT).build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(TenantKeys::Remote { uri: uri.to_string(), client, cache: Mutex::new(None) })
    }

    /// Candidate keys for `kid` at `now`; a remote set is fetched or refreshed as needed.
    /// An error means the keys could not be obtained at all.
    pub async fn candidates(&self, kid: Option<&str>, now: Instant) -> Result<Vec<DecodingKey>, String> {
        match self {
            TenantKeys::Inline(set) => Ok(set.candidates(kid)),
            TenantKeys::Remote { uri, client, cache } => {
                let mut cache = cache.lock().await;
                let (fresh, found) = match &*cache {
                    Some((set, at)) => {
                        let found = set.candidates(kid);
                        let age = now.saturating_duration_since(*at);
                        (age < CACHE_FOR && (!found.is_empty() || age < MIN_REFRESH_INTERVAL), found)
                    }
                    None => (false, Vec::new()),
                };
                if fresh {
                    return Ok(found);
                }
                match fetch(client, uri).await {
                    Ok(set) => {
                        let found = set.candidates(kid);
                        *cache = Some((set, now));
                        Ok(found)
                    }
                    // Keep serving a stale set if the IdP is briefly unreachable.
                    Err(e) if cache.is_some() => {
                        tracing::warn!(uri = %uri, error = %e, "JWKS refresh failed; using cached keys");
                        Ok(found)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }
}

async fn fetch(client: &reqwest::Client, uri: &str) -> Result<KeySet, String> {
    let resp = client.get(uri).send().await.map_err(|e| format!("fetching JWKS from {uri}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("fetching JWKS from {uri}: HTTP {}", resp.status()));
    }
    let text = resp.text().await.map_err(|e| format!("reading JWKS from {uri}: {e}"))?;
    KeySet::parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SET_A: &str = r#"{"keys":[{"kty":"RSA","kid":"a","n":"sXch","e":"AQAB"}]}"#;
    const SET_AB: &str =
        r#"{"keys":[{"kty":"RSA","kid":"a","n":"sXch","e":"AQAB"},{"kty":"RSA","kid":"b","n":"sXch","e":"AQAB"}]}"#;

    /// A JWKS endpoint on loopback that serves SET_A, then SET_AB, counting fetches.
    async fn jwks_server(fetches: Arc<AtomicUsize>) -> String {
        let app = axum::Router::new().route(
            "/keys",
            axum::routing::get(move || {
                let n = fetches.fetch_add(1, Ordering::SeqCst);
                async move { if n == 0 { SET_A } else { SET_AB } }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/keys")
    }

    #[tokio::test]
    async fn remote_keys_are_cached_and_refreshed_for_unknown_kids() {
        let fetches = Arc::new(AtomicUsize::new(0));
        let keys = TenantKeys::remote(&jwks_server(fetches.clone()).await).unwrap();
        let t0 = Instant::now();
        assert_eq!(keys.candidates(Some("a"), t0).await.unwrap().len(), 1);
        assert_eq!(keys.candidates(Some("a"), t0 + Duration::from_secs(30)).await.unwrap().len(), 1);
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "cached");
        // Unknown kid within the minimum refresh interval: no refetch.
        assert_eq!(keys.candidates(Some("b"), t0 + Duration::from_secs(30)).await.unwrap().len(), 0);
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // Later, an unknown kid triggers a refresh (key rotation).
        assert_eq!(keys.candidates(Some("b"), t0 + Duration::from_secs(61)).await.unwrap().len(), 1);
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        // After the cache lifetime, refetched even for known kids.
        keys.candidates(Some("a"), t0 + Duration::from_secs(61 + 3601)).await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn unreachable_jwks_is_an_error_without_a_cache() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let keys = TenantKeys::remote(&format!("http://{addr}/keys")).unwrap();
        assert!(keys.candidates(None, Instant::now()).await.is_err());
    }

    #[test]
    fn parse_rejects_garbage_and_keyless_sets() {
        assert!(KeySet::parse("nope").is_err());
        assert!(KeySet::parse(r#"{"keys":[]}"#).is_err());
        let set = KeySet::parse(r#"{"keys":[{"kty":"RSA","kid":"a","n":"sXch","e":"AQAB"}]}"#).unwrap();
        assert_eq!(set.candidates(Some("a")).len(), 1);
        assert_eq!(set.candidates(Some("b")).len(), 0);
        assert_eq!(set.candidates(None).len(), 1);
    }
}
