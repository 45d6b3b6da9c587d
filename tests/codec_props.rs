//! Property tests: however the input is split across calls, decoders and encoders
//! give the same result as one call with everything.

use proptest::prelude::*;
use stcp_engine::codec::{
    CipherKey, DecryptStream, EncryptStream, RecvStack, SendStack, SnappyDecoder, SnappyEncoder,
};
use stcp_engine::proto::{
    decode_frame, encode_frame, Message, NewProxy, NewVisitorConn, Ping, StartWorkConn,
};

/// Cuts `data` at the given fractions (sorted, deduplicated) into consecutive pieces.
fn split<'a>(data: &'a [u8], cuts: &[f64]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|f| (f * data.len() as f64) as usize)
        .collect();
    points.push(data.len());
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for point in points {
        pieces.push(&data[start..point]);
        start = point;
    }
    pieces
}

fn cuts() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(0.0..1.0f64, 0..12)
}

/// Mostly-compressible bytes, so both chunk types show up.
fn payload(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..max_len),
        (prop::collection::vec(any::<u8>(), 1..8), 0..max_len)
            .prop_map(|(unit, len)| { unit.iter().copied().cycle().take(len).collect() }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    let text = "[ -~<>&\u{e9}\u{2028}]{0,24}";
    prop_oneof![
        (text, any::<i64>()).prop_map(|(privilege_key, timestamp)| Ping {
            privilege_key,
            timestamp
        }
        .into()),
        (text, text, any::<bool>(), prop::collection::vec(text, 0..3)).prop_map(
            |(proxy_name, sk, use_encryption, allow_users)| NewProxy {
                proxy_name,
                proxy_type: "stcp".into(),
                use_encryption,
                sk,
                allow_users,
                metas: [("k".to_string(), "v".to_string())].into(),
                ..NewProxy::default()
            }
            .into()
        ),
        (text, any::<u16>(), any::<u16>()).prop_map(|(src_addr, src_port, dst_port)| {
            StartWorkConn {
                src_addr,
                src_port,
                dst_port,
                ..StartWorkConn::default()
            }
            .into()
        }),
        (text, any::<i64>(), any::<bool>()).prop_map(|(sign_key, timestamp, use_compression)| {
            NewVisitorConn {
                sign_key,
                timestamp,
                use_compression,
                ..NewVisitorConn::default()
            }
            .into()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn cfb_is_split_invariant(data in payload(3000), cuts in cuts(), iv in any::<[u8; 16]>()) {
        let derived = CipherKey::derive(b"abc");
        let mut reference = data.clone();
        EncryptStream::with_iv(&derived.portable(), iv).encrypt(&mut reference);

        for key in [derived.portable(), derived.clone()] {
            let mut encrypted = Vec::new();
            let mut stream = EncryptStream::with_iv(&key, iv);
            for piece in split(&data, &cuts) {
                let mut piece = piece.to_vec();
                stream.encrypt(&mut piece);
                encrypted.extend_from_slice(&piece);
            }
            prop_assert_eq!(&encrypted, &reference);

            let mut wire = [&iv[..], &reference].concat();
            let mut decrypted = Vec::new();
            let mut reader = DecryptStream::new(&key);
            let len = wire.len();
            let mut start = 0;
            for end in split(&vec![0; len], &cuts).iter().scan(0, |at, p| { *at += p.len(); Some(*at) }) {
                let piece = &mut wire[start..end];
                let range = reader.decrypt(piece);
                decrypted.extend_from_slice(&piece[range]);
                start = end;
            }
            prop_assert_eq!(&decrypted, &data);
        }
    }

    #[test]
    fn snappy_decode_is_split_invariant(writes in prop::collection::vec(payload(70_000), 1..4), cuts in cuts()) {
        let mut encoder = SnappyEncoder::new();
        let mut wire = Vec::new();
        for write in &writes {
            encoder.encode(write, &mut wire);
        }
        let mut decoder = SnappyDecoder::new();
        let mut decoded = Vec::new();
        for piece in split(&wire, &cuts) {
            decoder.decode(piece, &mut decoded).unwrap();
        }
        decoder.finish().unwrap();
        prop_assert!(decoded == writes.concat());
    }

    #[test]
    fn stacks_round_trip_in_any_split(
        data in payload(20_000),
        cuts in cuts(),
        encrypt in any::<bool>(),
        compress in any::<bool>(),
    ) {
        let key = CipherKey::derive(b"secret");
        let key = encrypt.then_some(&key);
        let mut send = SendStack::new(key, compress);
        let mut wire = Vec::new();
        for piece in split(&data, &cuts) {
            send.seal(piece, &mut wire);
        }
        let mut recv = RecvStack::new(key, compress);
        let mut plain = Vec::new();
        let wire_len = wire.len();
        let mut pieces = split(&vec![0; wire_len], &cuts).iter().map(|p| p.len()).collect::<Vec<_>>().into_iter();
        let mut rest = &mut wire[..];
        while !rest.is_empty() {
            let len = pieces.next().unwrap_or(rest.len()).min(rest.len());
            let (piece, tail) = rest.split_at_mut(len);
            recv.open(piece, &mut plain).unwrap();
            rest = tail;
        }
        recv.finish().unwrap();
        prop_assert!(plain == data);
        prop_assert_eq!(send.is_identity(), !encrypt && !compress);
    }

    #[test]
    fn frames_are_split_invariant(messages in prop::collection::vec(message(), 1..5), cuts in cuts()) {
        let mut wire = Vec::new();
        for msg in &messages {
            encode_frame(msg, &mut wire);
        }
        let mut buffer = Vec::new();
        let mut decoded = Vec::new();
        for piece in split(&wire, &cuts) {
            buffer.extend_from_slice(piece);
            while let Some((msg, used)) = decode_frame(&buffer).unwrap() {
                decoded.push(msg);
                buffer.drain(..used);
            }
        }
        prop_assert!(buffer.is_empty());
        prop_assert_eq!(decoded, messages);
    }
}
