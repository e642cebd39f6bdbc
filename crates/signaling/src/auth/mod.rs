//! Authentication: the one [`Authenticator`] every door uses ([`authenticator`]), HMAC-signed
//! server requests ([`hmac`]), access tokens ([`token`]), their revocation ([`revocation`]) and
//! directory users' IdP tokens with the token exchange ([`directory`]), and the gate of
//! development sign-in ([`dev_sign_in`]). No HTTP here: the
//! extractors that apply these checks to requests live in `api`.

pub mod authenticator;
pub mod dev_sign_in;
pub mod directory;
pub mod hmac;
pub mod revocation;
pub mod token;

pub use authenticator::{Authenticator, Credential, Door, Principal, bearer_token};
pub use hmac::HmacKeys;
pub use revocation::RevocationList;
pub use token::{IssuedToken, TokenError, TokenGrant, TokenService};
