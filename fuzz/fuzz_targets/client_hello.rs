//! Fuzzes the mesh gateway's ClientHello reader with arbitrary bytes from the network,
//! pushed in arbitrary pieces: it must never panic, and the outcome must not depend on how
//! the bytes were split across reads.
//!
//! Run (nightly): `cargo +nightly fuzz run client_hello` from this directory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strait_proxy::{parse_hello, HelloOutcome, HelloReader};

fuzz_target!(|data: &[u8]| {
    let Some((&n_cuts, rest)) = data.split_first() else {
        return;
    };
    // The first byte says how many of the following bytes are cut lengths.
    let n_cuts = usize::from(n_cuts % 8).min(rest.len());
    let (cuts, payload) = rest.split_at(n_cuts);

    let whole = parse_hello(payload);

    let mut reader = HelloReader::new();
    let mut remaining = payload;
    let mut outcome = HelloOutcome::NeedMore;
    for &cut in cuts {
        let (piece, tail) = remaining.split_at(usize::from(cut).min(remaining.len()));
        outcome = reader.push(piece);
        remaining = tail;
    }
    if !remaining.is_empty() || cuts.is_empty() {
        outcome = reader.push(remaining);
    }
    if payload.is_empty() {
        assert_eq!(whole, HelloOutcome::NeedMore);
        return;
    }
    assert_eq!(outcome, whole, "outcome depends on how the bytes were split");
    if let HelloOutcome::ServerName(name) = &whole {
        assert!(!name.is_empty());
    }
});
