//! Payload stack round trip: what SendStack seals, RecvStack opens, in any split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stcp_engine::codec::{CipherKey, RecvStack, SendStack};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, payload)) = data.split_first() else {
        return;
    };
    let key = CipherKey::derive(b"fuzz");
    let key = (flags & 1 == 1).then_some(&key);
    let compress = flags & 2 == 2;
    let write_len = usize::from(flags >> 2) + 1;

    let mut send = SendStack::new(key, compress);
    let mut wire = Vec::new();
    for write in payload.chunks(write_len) {
        send.seal(write, &mut wire);
    }
    let mut recv = RecvStack::new(key, compress);
    let mut plain = Vec::new();
    for piece in wire.chunks_mut(write_len + 7) {
        recv.open(piece, &mut plain).expect("our own output decodes");
    }
    recv.finish().expect("our own output ends on a chunk boundary");
    assert_eq!(plain, payload);
});
