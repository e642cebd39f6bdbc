//! Helpers shared by the bench targets: Opus test frames and per-thread CPU time. Each bench
//! uses some of them.

#![allow(dead_code)]

pub mod opus_frames;
pub mod thread_cpu;
