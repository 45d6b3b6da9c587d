//! Any bytes, fed whole and in two pieces: no panic, identical results either way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stcp_engine::codec::SnappyDecoder;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, wire)) = data.split_first() else {
        return;
    };
    let mut whole = Vec::new();
    let whole_result = SnappyDecoder::new().decode(wire, &mut whole);

    let cut = usize::from(cut) * wire.len() / 256;
    let (head, tail) = wire.split_at(cut);
    let mut decoder = SnappyDecoder::new();
    let mut pieces = Vec::new();
    let split_result = decoder
        .decode(head, &mut pieces)
        .and_then(|()| decoder.decode(tail, &mut pieces));

    assert_eq!(whole_result.is_ok(), split_result.is_ok());
    if whole_result.is_ok() {
        assert_eq!(whole, pieces);
    } else {
        // Data is only released once its chunk verified, so the valid prefix matches.
        assert!(whole.starts_with(&pieces) || pieces.starts_with(&whole));
    }
});
