//! [`Repeatability`]: a create request the client may safely repeat (ACS's
//! `Repeatability-Request-ID`). The API layer reads the header and fingerprints the request;
//! the domain stores the first answer under the id and replays it.

/// A repeatable request: the client-chosen id and a fingerprint of what was asked, so a
/// replay with the same id gets the first answer and a different request with a reused id
/// can be refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeatability {
    pub request_id: String,
    pub fingerprint: String,
}
