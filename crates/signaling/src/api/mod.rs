//! Thin HTTP handlers of the REST APIs (H3 moves today's `http/` and `*_api/` here);
//! chat so far.

pub mod chat;
