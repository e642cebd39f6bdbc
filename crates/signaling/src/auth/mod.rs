//! Authentication: HMAC-signed server requests ([`hmac`]), access tokens ([`token`]),
//! their revocation ([`revocation`]) and the bearer-token extractor ([`bearer`]).

pub mod bearer;
pub mod hmac;
pub mod revocation;
pub mod token;

pub use bearer::{AuthenticatedUser, authenticate_token};
pub use hmac::{HmacAuthenticated, HmacKeys};
pub use revocation::RevocationList;
pub use token::{IssuedToken, TokenError, TokenGrant, TokenService};
