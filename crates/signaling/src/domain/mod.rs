//! Domain rules of the control plane, free of HTTP and storage types: what may happen and
//! what it produces, with time passed in. Chat lives in [`chat`].

pub mod chat;
