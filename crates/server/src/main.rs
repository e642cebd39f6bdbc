//! The palaver server binary.
fn main() {}
