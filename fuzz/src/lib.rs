//! Support code for the cargo-fuzz targets in `fuzz_targets/`.
//!
//! `checks` contains the invariants, shared with the stable fuzz tests in `tests/fuzz.rs`, and
//! `input` turns libFuzzer's bytes into a parser input and the parameters to check it with.

pub mod checks;
pub mod input;
