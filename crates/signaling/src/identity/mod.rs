//! The Identity API (ACS-compatible): create and delete communication identities, issue
//! and revoke their access tokens, and exchange a directory user's IdP token.
//!
//! [`service`] holds the domain operations (no HTTP); [`routes`] parses, authenticates
//! and calls them.

mod routes;
pub mod service;
#[cfg(test)]
mod tests;

pub use routes::{API_VERSIONS, routes};
