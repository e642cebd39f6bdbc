//! Shared helpers for end-to-end tests (start the real binary, sign requests).
