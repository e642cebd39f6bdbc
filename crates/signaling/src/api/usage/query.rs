//! Query-string parsing for the usage API: percent-decoding (a literal `+` stays `+`, so
//! RFC 3339 offsets survive unencoded), duplicates refused.

use crate::api::ApiError;
use palaver_core::ErrorCode;

#[derive(Debug, Default)]
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let key = decode(k)?;
            if pairs.iter().any(|(existing, _)| *existing == key) {
                return Err(ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!("query parameter `{key}` is given twice"),
                )
                .with_target(key));
            }
            pairs.push((key, decode(v)?));
        }
        Ok(Self(pairs))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

fn decode(text: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::new(ErrorCode::InvalidParameter, format!("query text `{text}` is not valid percent-encoded UTF-8"))
    };
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// Percent-encode everything but unreserved characters.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_refuses_duplicates() {
        let q =
            QueryParams::parse(Some("from=2026-11-21T10%3A00%3A00%2B02:00&to=2026-11-22T00:00:00+01:00&x")).unwrap();
        assert_eq!(q.get("from"), Some("2026-11-21T10:00:00+02:00"));
        assert_eq!(q.get("to"), Some("2026-11-22T00:00:00+01:00"));
        assert_eq!(q.get("x"), Some(""));
        assert!(QueryParams::parse(Some("from=a&from=b")).is_err());
        assert!(QueryParams::parse(Some("from=%zz")).is_err());
        assert!(QueryParams::parse(Some("from=%ff")).is_err());
        assert_eq!(encode("a b+c/="), "a%20b%2Bc%2F%3D");
    }
}
