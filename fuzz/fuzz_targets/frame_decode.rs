//! Any bytes: decode_frame must not panic, must never claim bytes past the input, and
//! a decoded message must survive encode -> decode unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stcp_engine::proto::{decode_frame, encode_frame, FrameError};

fuzz_target!(|data: &[u8]| {
    let Ok(Some((msg, consumed))) = decode_frame(data) else {
        return;
    };
    assert!(consumed <= data.len());
    let mut frame = Vec::new();
    encode_frame(&msg, &mut frame);
    match decode_frame(&frame) {
        Ok(Some((again, used))) => {
            assert_eq!(used, frame.len());
            assert_eq!(again, msg);
        }
        // Go-style escaping of `<>&` can push a re-encoded body over the limit.
        Err(FrameError::TooLong(_)) => {}
        other => panic!("re-encoded {msg:?} decodes as {other:?}"),
    }
});
