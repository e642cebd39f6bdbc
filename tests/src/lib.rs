//! Shared helpers for end-to-end tests: start the real `palaver` binary on loopback with a
//! temporary data directory, learn its URL from the ready line, and talk to it over HTTPS
//! (trusting the CA it generated), signing requests the way the ACS SDKs do.
//!
//! The binary is found next to the test executable (`target/<profile>/palaver`; `make test`
//! builds it first) or at `$PALAVER_BIN`.

pub mod hmac_client;
pub mod server;

pub use hmac_client::{HmacSigner, sign_headers};
pub use server::{Server, ServerOptions, TempDir, json_of};
