//! Vectors recorded from Go (frp v0.70.0, `../shared/vectors/frp-v0.70.0.json`), the
//! worked examples of the protocol reference (§14), and a table of corrupt inputs.

use std::path::PathBuf;

use serde_json::Value;
use stcp_engine::codec::{
    CipherKey, DecryptStream, EncryptStream, RecvStack, SendStack, SnappyDecoder, SnappyEncoder,
    SnappyError,
};
use stcp_engine::proto::{
    auth_key, decode_frame, encode_frame, FrameError, Login, Message, NewProxy, NewVisitorConn,
    NewWorkConn, Ping, ReqWorkConn,
};

fn vectors() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/frp-v0.70.0.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "cannot read the Go test vectors at {}: {err}. They live in shared/ beside \
             the checkout; these tests need them and do not skip.",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("vector file is valid JSON")
}

fn entries<'a>(vectors: &'a Value, key: &str) -> &'a [Value] {
    let list = vectors[key]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    assert!(!list.is_empty(), "vector file has no `{key}` entries");
    list
}

fn hex_field(entry: &Value, key: &str) -> Vec<u8> {
    hex::decode(
        entry[key]
            .as_str()
            .unwrap_or_else(|| panic!("missing `{key}`")),
    )
    .unwrap()
}

fn writes(entry: &Value) -> Vec<Vec<u8>> {
    entry["writes"]
        .as_array()
        .expect("`writes` list")
        .iter()
        .map(|w| hex::decode(w.as_str().unwrap()).unwrap())
        .collect()
}

fn frame_of(msg: impl Into<Message>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&msg.into(), &mut out);
    out
}

/// Key order matters for byte equality with Go; compare the keys first for a clear
/// message, then the bytes.
fn assert_same_json(ours: &[u8], go: &[u8], what: &str) {
    let keys = |json: &[u8]| -> Vec<String> {
        let text = std::str::from_utf8(json).unwrap();
        let mut keys = Vec::new();
        let mut de = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        if let Some(Ok(Value::Object(map))) = de.next() {
            keys.extend(map.keys().cloned());
        }
        keys
    };
    let (ours_value, go_value): (Value, Value) = (
        serde_json::from_slice(ours).unwrap(),
        serde_json::from_slice(go).unwrap(),
    );
    assert_eq!(ours_value, go_value, "{what}: JSON values differ");
    assert_eq!(
        keys(ours).len(),
        keys(go).len(),
        "{what}: omitted fields differ"
    );
    assert_eq!(
        String::from_utf8_lossy(ours),
        String::from_utf8_lossy(go),
        "{what}: key order or formatting differs"
    );
}

#[test]
fn go_frames_decode_and_reencode_identically() {
    let vectors = vectors();
    for entry in entries(&vectors, "frames") {
        let name = entry["name"].as_str().unwrap();
        let wire = hex_field(entry, "hex");
        let (msg, consumed) = decode_frame(&wire)
            .unwrap_or_else(|err| panic!("{name}: {err}"))
            .unwrap_or_else(|| panic!("{name}: decoder wants more bytes"));
        assert_eq!(consumed, wire.len(), "{name}");
        let go_type = name.split('_').next().unwrap();
        assert_eq!(msg.name(), go_type, "{name}");
        assert_eq!(msg.type_byte(), wire[0], "{name}");

        let ours = frame_of(msg.clone());
        assert_same_json(&ours[9..], &wire[9..], name);
        assert_eq!(ours, wire, "{name}: frame bytes");
        // A prefix of a frame is never an error, only "need more".
        for cut in 0..wire.len() {
            assert_eq!(decode_frame(&wire[..cut]), Ok(None), "{name} cut at {cut}");
        }
    }
}

#[test]
fn go_frames_decode_to_expected_fields() {
    let vectors = vectors();
    let frame = |wanted: &str| -> Message {
        let entry = entries(&vectors, "frames")
            .iter()
            .find(|e| e["name"] == wanted)
            .unwrap_or_else(|| panic!("no frame vector {wanted}"));
        decode_frame(&hex_field(entry, "hex")).unwrap().unwrap().0
    };
    let Message::Login(login) = frame("Login_relogin_metas") else {
        panic!("not a Login")
    };
    assert_eq!(login.run_id, "0123456789abcdef");
    assert_eq!(login.timestamp, 1_700_000_001);
    assert_eq!(login.pool_count, 5);
    assert_eq!(login.metas.get("zone").map(String::as_str), Some("eu"));
    let Message::NewProxy(proxy) = frame("NewProxy_stcp") else {
        panic!("not a NewProxy")
    };
    assert!(proxy.use_encryption && proxy.use_compression);
    assert_eq!(
        (proxy.sk.as_str(), proxy.allow_users),
        ("secret", vec!["*".to_string()])
    );
    let Message::StartWorkConn(start) = frame("StartWorkConn") else {
        panic!("not a StartWorkConn")
    };
    assert_eq!((start.src_port, start.dst_port), (51234, 7000));
}

#[test]
fn go_auth_keys() {
    let vectors = vectors();
    for entry in entries(&vectors, "auth_keys") {
        let secret = entry["secret"].as_str().unwrap();
        let timestamp = entry["timestamp"].as_i64().unwrap();
        assert_eq!(
            auth_key(secret, timestamp),
            entry["key"].as_str().unwrap(),
            "{entry}"
        );
    }
}

#[test]
fn go_cfb_streams_decrypt_and_reencrypt() {
    let vectors = vectors();
    for entry in entries(&vectors, "cfb") {
        let derived = CipherKey::derive(entry["key"].as_str().unwrap().as_bytes());
        let wire = hex_field(entry, "wire");
        let writes = writes(entry);
        let iv: [u8; 16] = wire[..16].try_into().unwrap();
        for key in [derived.portable(), derived.clone()] {
            let what = format!("key {:?} on {}", entry["key"], key.backend_name());
            let mut plain = wire.clone();
            let range = DecryptStream::new(&key).decrypt(&mut plain);
            assert_eq!(plain[range], writes.concat(), "{what}: decrypt");

            let mut encrypted = Vec::new();
            let mut stream = EncryptStream::with_iv(&key, iv);
            for write in &writes {
                let mut buf = write.clone();
                if let Some(iv) = stream.encrypt(&mut buf) {
                    encrypted.extend_from_slice(&iv);
                }
                encrypted.extend_from_slice(&buf);
            }
            assert_eq!(
                hex::encode(encrypted),
                hex::encode(&wire),
                "{what}: encrypt"
            );
        }
    }
}

#[test]
fn go_snappy_streams_decode_and_reencode() {
    let vectors = vectors();
    for (index, entry) in entries(&vectors, "snappy").iter().enumerate() {
        let wire = hex_field(entry, "wire");
        let writes = writes(entry);
        let mut decoded = Vec::new();
        let mut decoder = SnappyDecoder::new();
        decoder.decode(&wire, &mut decoded).unwrap();
        decoder.finish().unwrap();
        assert!(decoded == writes.concat(), "snappy #{index}: decode");

        let mut encoder = SnappyEncoder::new();
        let mut encoded = Vec::new();
        for write in &writes {
            encoder.encode(write, &mut encoded);
        }
        assert!(encoded == wire, "snappy #{index}: encode differs from Go");
    }
}

#[test]
fn go_payload_stacks_decode_and_reencode() {
    let vectors = vectors();
    for (index, entry) in entries(&vectors, "payload_stack").iter().enumerate() {
        let key = CipherKey::derive(entry["key"].as_str().unwrap().as_bytes());
        let encrypted = entry["use_encryption"].as_bool().unwrap();
        let compressed = entry["use_compression"].as_bool().unwrap();
        let key = encrypted.then_some(&key);
        let wire = hex_field(entry, "wire");
        let writes = writes(entry);

        let mut recv = RecvStack::new(key, compressed);
        let mut plain = Vec::new();
        recv.open(&mut wire.clone(), &mut plain).unwrap();
        recv.finish().unwrap();
        assert!(plain == writes.concat(), "stack #{index}: decode");

        let iv = wire[..16].try_into().unwrap();
        let mut send = SendStack::with_iv(key, iv, compressed);
        let mut sealed = Vec::new();
        for write in &writes {
            send.seal(write, &mut sealed);
        }
        assert!(sealed == wire, "stack #{index}: encode differs from Go");
    }
}

/// frp-protocol.md §14 (the yamux rows belong to the mux tests).
#[test]
fn reference_section_14() {
    assert_eq!(
        auth_key("abc", 1_700_000_000),
        "22bd6333f840eeeee03ad14f75fd96ac"
    );
    assert_eq!(
        auth_key("", 1_700_000_000),
        "24920decf83f6960b80f737a28eeafc1"
    );
    assert_eq!(
        auth_key("secret", 1_700_000_000),
        "e37729af62f40f134311cffbc230178e"
    );
    for (secret, key) in [
        ("abc", "62e5ed67fdd04e5f1f71d779ceb9667f"),
        ("secret", "8a69215e54aca50e54f738de611a87f9"),
        ("", "cdc9dc4c472c37331281df4c232a8407"),
    ] {
        assert_eq!(
            hex::encode(CipherKey::derive(secret.as_bytes()).key_bytes()),
            key
        );
    }
    assert_ne!(
        hex::encode(CipherKey::derive(b"abc").key_bytes()),
        "874b50f3f2c17f09b0381aac50ce7d50",
        "wrong salt"
    );

    let ping = frame_of(Ping::default());
    assert_eq!(hex::encode(&ping), "6800000000000000027b7d");
    assert_eq!(
        hex::encode(frame_of(ReqWorkConn {})),
        "7200000000000000027b7d"
    );

    let key = CipherKey::derive(b"abc");
    let iv: [u8; 16] = std::array::from_fn(|i| i as u8);
    let mut stream = EncryptStream::with_iv(&key, iv);
    let (mut first, mut second) = (ping.clone(), ping);
    assert_eq!(stream.encrypt(&mut first), Some(iv));
    assert_eq!(hex::encode(&first), "c6740161fd1427c7cbb905");
    assert_eq!(stream.encrypt(&mut second), None);
    assert_eq!(
        hex::encode([first, second].concat()),
        "c6740161fd1427c7cbb905ea97902f91a4383ad8d082"
    );

    let mut snappy = Vec::new();
    SnappyEncoder::new().encode(b"hello", &mut snappy);
    assert_eq!(
        hex::encode(snappy),
        "ff060000734e6150705901090000bb1f1c1968656c6c6f"
    );

    let login = frame_of(Login {
        version: "0.70.1".into(),
        hostname: "myhost".into(),
        os: "linux".into(),
        arch: "amd64".into(),
        user: "alice".into(),
        privilege_key: auth_key("abc", 1_700_000_000),
        timestamp: 1_700_000_000,
        pool_count: 1,
        ..Login::default()
    });
    assert_eq!(hex::encode(&login[..9]), "6f00000000000000bd");
    assert_eq!(
        &login[9..],
        br#"{"version":"0.70.1","hostname":"myhost","os":"linux","arch":"amd64","user":"alice","privilege_key":"22bd6333f840eeeee03ad14f75fd96ac","timestamp":1700000000,"client_spec":{},"pool_count":1}"#
    );
    assert_eq!(
        hex::encode(frame_of(NewWorkConn {
            run_id: "0123456789abcdef".into(),
            ..NewWorkConn::default()
        })),
        "77000000000000001d7b2272756e5f6964223a2230313233343536373839616263646566227d"
    );
    let proxy = frame_of(NewProxy {
        proxy_name: "alice.ssh".into(),
        proxy_type: "stcp".into(),
        use_encryption: true,
        sk: "secret".into(),
        allow_users: vec!["*".into()],
        ..NewProxy::default()
    });
    assert_eq!(hex::encode(&proxy[..9]), "700000000000000066");
    let visitor = frame_of(NewVisitorConn {
        run_id: "0123456789abcdef".into(),
        proxy_name: "alice.ssh".into(),
        sign_key: auth_key("secret", 1_700_000_000),
        timestamp: 1_700_000_000,
        use_encryption: true,
        ..NewVisitorConn::default()
    });
    assert_eq!(hex::encode(&visitor[..9]), "760000000000000091");
}

#[test]
fn corrupt_frames_are_rejected_with_the_right_error() {
    let frame = |type_byte: u8, length: i64, body: &[u8]| {
        let mut out = vec![type_byte];
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(body);
        out
    };
    let bad_body = |msg| move |err: &FrameError| matches!(err, FrameError::BadBody { msg: m, .. } if *m == msg);
    type Check = Box<dyn Fn(&FrameError) -> bool>;
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        (
            "unknown type",
            b"x".to_vec(),
            Box::new(|e| *e == FrameError::UnknownType(b'x')),
        ),
        (
            "yamux byte",
            vec![0x00, 0x01],
            Box::new(|e| *e == FrameError::UnknownType(0)),
        ),
        (
            "TLS byte",
            vec![0x16],
            Box::new(|e| *e == FrameError::UnknownType(0x16)),
        ),
        (
            "negative length",
            frame(b'h', -2, b"{}"),
            Box::new(|e| *e == FrameError::NegativeLength(-2)),
        ),
        (
            "i64::MIN length",
            frame(b'h', i64::MIN, b""),
            Box::new(|e| *e == FrameError::NegativeLength(i64::MIN)),
        ),
        (
            "oversize length",
            frame(b'o', 10241, b""),
            Box::new(|e| *e == FrameError::TooLong(10241)),
        ),
        (
            "huge length",
            frame(b'o', i64::MAX, b""),
            Box::new(|e| *e == FrameError::TooLong(i64::MAX)),
        ),
        (
            "empty body",
            frame(b'h', 0, b""),
            Box::new(bad_body("Ping")),
        ),
        (
            "not JSON",
            frame(b'w', 3, b"{x}"),
            Box::new(bad_body("NewWorkConn")),
        ),
        (
            "JSON array",
            frame(b'1', 2, b"[]"),
            Box::new(bad_body("LoginResp")),
        ),
        (
            "JSON array of fields",
            frame(b'1', 12, br#"["1","x",""]"#),
            Box::new(bad_body("LoginResp")),
        ),
        (
            "JSON string",
            frame(b'h', 4, br#""{}""#),
            Box::new(bad_body("Ping")),
        ),
        (
            "wrong field type",
            frame(b'o', 15, br#"{"timestamp":"1"}"#),
            Box::new(bad_body("Login")),
        ),
        (
            "port out of range",
            frame(b's', 18, br#"{"src_port":70000}"#),
            Box::new(bad_body("StartWorkConn")),
        ),
        (
            "trailing garbage",
            frame(b'h', 3, b"{}x"),
            Box::new(bad_body("Ping")),
        ),
        (
            "bad base64",
            frame(b'u', 10, br#"{"c":"@@"}"#),
            Box::new(bad_body("UdpPacket")),
        ),
    ];
    for (what, wire, check) in cases {
        match decode_frame(&wire) {
            Err(err) => {
                assert!(check(&err), "{what}: unexpected error {err:?}");
                assert!(!err.to_string().is_empty());
            }
            Ok(other) => panic!("{what}: expected an error, got {other:?}"),
        }
    }
    // Go's Unmarshal treats a `null` body as a no-op.
    assert_eq!(
        decode_frame(&frame(b'h', 6, b" null ")),
        Ok(Some((Message::Ping(Ping::default()), 15)))
    );
    // The maximum body is accepted.
    let mut body = br#"{"error":""#.to_vec();
    body.resize(10240 - 2, b'a');
    body.extend_from_slice(br#""}"#);
    let max = frame(b'4', 10240, &body);
    assert_eq!(decode_frame(&max).unwrap().unwrap().1, max.len());
}

#[test]
fn corrupt_snappy_streams_are_rejected_with_the_right_error() {
    const ID: &[u8] = b"\xff\x06\x00\x00sNaPpY";
    let hello = hex::decode("01090000bb1f1c1968656c6c6f").unwrap();
    let with_id = |chunk: &[u8]| [ID, chunk].concat();
    let mut bad_crc = hello.clone();
    bad_crc[4] ^= 1;
    // Declares 5 bytes, then a 5-byte literal with only 2 bytes present.
    let bad_compressed = with_id(&[0x00, 0x08, 0, 0, 0, 0, 0, 0, 0x05, 0x10, 0xff, 0xff]);
    type Check = fn(&SnappyError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("data before stream id", hello.clone(), |e| {
            *e == SnappyError::MissingStreamIdentifier(1)
        }),
        (
            "bad stream id body",
            b"\xff\x06\x00\x00sNaPpZ".to_vec(),
            |e| *e == SnappyError::BadStreamIdentifier,
        ),
        (
            "bad stream id length",
            b"\xff\x05\x00\x00sNaPp".to_vec(),
            |e| *e == SnappyError::BadStreamIdentifier,
        ),
        ("bad CRC", with_id(&bad_crc), |e| {
            matches!(e, SnappyError::ChecksumMismatch { .. })
        }),
        ("reserved unskippable", with_id(&[0x02, 0, 0, 0]), |e| {
            *e == SnappyError::ReservedChunk(2)
        }),
        (
            "reserved unskippable 0x7f",
            with_id(&[0x7f, 0, 0, 0]),
            |e| *e == SnappyError::ReservedChunk(0x7f),
        ),
        ("oversize chunk", with_id(&[0x00, 0xff, 0xff, 0xff]), |e| {
            matches!(e, SnappyError::ChunkTooLarge { len: 0xff_ffff, .. })
        }),
        (
            "oversize skippable",
            with_id(&[0x80, 0xcf, 0x2a, 0x01]),
            |e| matches!(e, SnappyError::ChunkTooLarge { .. }),
        ),
        (
            "chunk without checksum",
            with_id(&[0x01, 3, 0, 0, 1, 2, 3]),
            |e| *e == SnappyError::ChunkTooShort(3),
        ),
        (
            "uncompressed too big",
            with_id(&[0x01, 0x05, 0x00, 0x01]),
            |e| *e == SnappyError::DecodedTooLarge(65537),
        ),
        (
            "compressed decodes too big",
            with_id(&[0x00, 0x08, 0, 0, 0, 0, 0, 0, 0x81, 0x80, 0x04, 0]),
            |e| *e == SnappyError::DecodedTooLarge(65537),
        ),
        ("corrupt block", bad_compressed, |e| {
            matches!(e, SnappyError::CorruptBlock(_))
        }),
    ];
    for (what, wire, check) in cases {
        let mut out = Vec::new();
        match SnappyDecoder::new().decode(&wire, &mut out) {
            Err(err) => assert!(check(&err), "{what}: unexpected error {err:?}"),
            Ok(()) => panic!("{what}: accepted, produced {out:?}"),
        }
        assert!(out.is_empty(), "{what}: released unverified data");
    }

    // Truncated streams are only detectable at end of stream.
    let whole = with_id(&hello);
    for cut in ID.len() + 1..whole.len() {
        let mut decoder = SnappyDecoder::new();
        let mut out = Vec::new();
        decoder.decode(&whole[..cut], &mut out).unwrap();
        assert!(out.is_empty());
        assert!(
            matches!(decoder.finish(), Err(SnappyError::Truncated(_))),
            "cut at {cut}"
        );
    }
    let mut decoder = SnappyDecoder::new();
    decoder.decode(&whole, &mut Vec::new()).unwrap();
    decoder.finish().unwrap();
}
