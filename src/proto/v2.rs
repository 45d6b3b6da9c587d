//! Wire protocol v2 (frp v0.69+, opt-in; `frp:pkg/proto/wire`, `frp:pkg/msg/wire_v2.go`).
//! Pure, no I/O. See ../shared/frp-protocol.md appendix A.
//!
//! Every v2 connection or stream starts with [`MAGIC`]. Then frames:
//! `type u16 BE | flags u16 BE (0) | length u32 BE | payload` (payload ≤ 64 KiB).
//! A message frame's payload is a u16 BE message id followed by the same JSON as v1.
//! Only the control connection has hellos (and, after LoginResp, an AEAD stream).

use serde::{Deserialize, Serialize};

use super::frame::GoJsonFormatter;
use super::msg::Message;

/// "FRP\0\x02\r\n": frps tells v2 from v1 by these 7 bytes (`wire.CheckMagic`).
pub const MAGIC: &[u8; 7] = b"FRP\x00\x02\r\n";
pub const FRAME_HEADER_LEN: usize = 8;
/// `DefaultMaxFramePayloadSize`.
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024;

pub const FRAME_CLIENT_HELLO: u16 = 1;
pub const FRAME_SERVER_HELLO: u16 = 2;
pub const FRAME_MESSAGE: u16 = 16;

/// The only message codec frp defines.
pub const CODEC_JSON: &str = "json";
/// Length of `clientRandom` / `serverRandom`.
pub const CRYPTO_RANDOM_LEN: usize = 32;
/// The AEAD algorithms frp knows (`supportedAEADAlgorithms`).
pub const AEAD_ALGORITHMS: [&str; 2] = ["aes-256-gcm", "xchacha20-poly1305"];

/// Every error is fatal to the connection. Texts follow frp's where it has one.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum V2Error {
    #[error("unsupported v2 frame flags: {0}")]
    Flags(u16),
    #[error("v2 frame payload length {0} exceeds limit {MAX_PAYLOAD_LEN}")]
    TooLong(usize),
    #[error("unexpected v2 frame type {got}, want {want}")]
    UnexpectedFrame { got: u16, want: u16 },
    #[error("v2 message frame payload too short ({0} bytes, the type id alone is 2)")]
    ShortMessage(usize),
    #[error("unknown v2 message type {0}")]
    UnknownMessage(u16),
    #[error("invalid JSON in v2 {what}: {reason}")]
    BadJson { what: &'static str, reason: String },
    /// A hello that parses but cannot be agreed on (frp's validation messages).
    #[error("{0}")]
    Negotiation(String),
}

/// v2 message ids (`V2Type*`) against the v1 type bytes they share a struct with.
const MESSAGE_IDS: [(u16, u8); 18] = [
    (1, b'o'),  // Login
    (2, b'1'),  // LoginResp
    (3, b'p'),  // NewProxy
    (4, b'2'),  // NewProxyResp
    (5, b'c'),  // CloseProxy
    (6, b'w'),  // NewWorkConn
    (7, b'r'),  // ReqWorkConn
    (8, b's'),  // StartWorkConn
    (9, b'v'),  // NewVisitorConn
    (10, b'3'), // NewVisitorConnResp
    (11, b'h'), // Ping
    (12, b'4'), // Pong
    (13, b'u'), // UDPPacket
    (14, b'i'), // NatHoleVisitor
    (15, b'n'), // NatHoleClient
    (16, b'm'), // NatHoleResp
    (17, b'5'), // NatHoleSid
    (18, b'6'), // NatHoleReport
];

/// The v2 id of `msg`.
pub fn message_id(msg: &Message) -> u16 {
    let byte = msg.type_byte();
    MESSAGE_IDS
        .iter()
        .find(|(_, b)| *b == byte)
        .map(|(id, _)| *id)
        .expect("every v1 type byte has a v2 id")
}

fn v1_byte_of(id: u16) -> Option<u8> {
    MESSAGE_IDS.iter().find(|(i, _)| *i == id).map(|(_, b)| *b)
}

/// One decoded frame, borrowing its payload from the input.
#[derive(Debug, PartialEq)]
pub struct RawFrame<'a> {
    pub frame_type: u16,
    pub payload: &'a [u8],
}

/// Decodes the frame at the start of `buf`: `Ok(None)` until it is complete; never
/// consumes a byte past it. Bad flags or length are rejected from the header alone.
pub fn decode_raw_frame(buf: &[u8]) -> Result<Option<(RawFrame<'_>, usize)>, V2Error> {
    let Some(header) = buf.get(..FRAME_HEADER_LEN) else {
        return Ok(None);
    };
    let frame_type = u16::from_be_bytes([header[0], header[1]]);
    let flags = u16::from_be_bytes([header[2], header[3]]);
    let length = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if flags != 0 {
        return Err(V2Error::Flags(flags));
    }
    if length > MAX_PAYLOAD_LEN {
        return Err(V2Error::TooLong(length));
    }
    let end = FRAME_HEADER_LEN + length;
    let Some(payload) = buf.get(FRAME_HEADER_LEN..end) else {
        return Ok(None);
    };
    Ok(Some((
        RawFrame {
            frame_type,
            payload,
        },
        end,
    )))
}

/// Appends one frame to `out`.
pub fn encode_raw_frame(frame_type: u16, payload: &[u8], out: &mut Vec<u8>) -> Result<(), V2Error> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(V2Error::TooLong(payload.len()));
    }
    out.extend_from_slice(&frame_type.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Appends a message frame (id + Go-identical JSON) to `out`. Fails only when the
/// JSON is over 64 KiB (huge metas), which frps would refuse anyway.
pub fn encode_message_frame(msg: &Message, out: &mut Vec<u8>) -> Result<(), V2Error> {
    let start = out.len();
    out.extend_from_slice(&FRAME_MESSAGE.to_be_bytes());
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&message_id(msg).to_be_bytes());
    msg.write_json(&mut *out)
        .expect("messages have only string map keys, so JSON encoding cannot fail");
    let payload_len = out.len() - start - FRAME_HEADER_LEN;
    if payload_len > MAX_PAYLOAD_LEN {
        out.truncate(start);
        return Err(V2Error::TooLong(payload_len));
    }
    out[start + 4..start + 8].copy_from_slice(&(payload_len as u32).to_be_bytes());
    Ok(())
}

/// A message frame's payload -> the message (`DecodeV2MessageFrame`).
pub fn decode_message_payload(payload: &[u8]) -> Result<Message, V2Error> {
    let Some((id, json)) = payload.split_first_chunk::<2>() else {
        return Err(V2Error::ShortMessage(payload.len()));
    };
    let id = u16::from_be_bytes(*id);
    let byte = v1_byte_of(id).ok_or(V2Error::UnknownMessage(id))?;
    match Message::from_json(byte, json) {
        Some(Ok(msg)) => Ok(msg),
        Some(Err(err)) => Err(V2Error::BadJson {
            what: Message::name_of_type(byte).unwrap_or("message"),
            reason: err.to_string(),
        }),
        None => Err(V2Error::UnknownMessage(id)),
    }
}

/// Decodes a message frame at the start of `buf` (like [`super::decode_frame`] for v1).
pub fn decode_message_frame(buf: &[u8]) -> Result<Option<(Message, usize)>, V2Error> {
    let Some((frame, used)) = decode_raw_frame(buf)? else {
        return Ok(None);
    };
    if frame.frame_type != FRAME_MESSAGE {
        return Err(V2Error::UnexpectedFrame {
            got: frame.frame_type,
            want: FRAME_MESSAGE,
        });
    }
    Ok(Some((decode_message_payload(frame.payload)?, used)))
}

// ---- hellos (Go field order; `omitempty` on scalars and slices only) ----

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BootstrapInfo {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub transport: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub tls: bool,
    #[serde(rename = "tcpMux", default, skip_serializing_if = "is_false")]
    pub tcp_mux: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientHello {
    #[serde(default)]
    pub bootstrap: BootstrapInfo,
    #[serde(default)]
    pub capabilities: ClientCapabilities,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientCapabilities {
    #[serde(default)]
    pub message: MessageCapabilities,
    #[serde(default)]
    pub crypto: CryptoCapabilities,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageCapabilities {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codecs: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CryptoCapabilities {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub algorithms: Vec<String>,
    #[serde(
        rename = "clientRandom",
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "super::msg::base64_bytes"
    )]
    pub client_random: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerHello {
    #[serde(default)]
    pub selected: ServerSelection,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerSelection {
    #[serde(default)]
    pub message: MessageSelection,
    #[serde(default)]
    pub crypto: CryptoSelection,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageSelection {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub codec: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CryptoSelection {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub algorithm: String,
    #[serde(
        rename = "serverRandom",
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "super::msg::base64_bytes"
    )]
    pub server_random: Vec<u8>,
}

/// Go's `json.Marshal` bytes for a hello. The transcript hashes exactly these bytes.
pub fn hello_json<T: Serialize>(hello: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoJsonFormatter);
    hello
        .serialize(&mut ser)
        .expect("hellos have only string keys, so JSON encoding cannot fail");
    out
}

/// Parses a hello payload (ClientHello or ServerHello).
pub fn parse_hello<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    payload: &[u8],
) -> Result<T, V2Error> {
    serde_json::from_slice(payload).map_err(|e| V2Error::BadJson {
        what,
        reason: e.to_string(),
    })
}

impl ClientHello {
    /// frpc's hello: JSON codec, `algorithms` in preference order, a fresh random.
    pub fn new(
        bootstrap: BootstrapInfo,
        algorithms: &[&str],
        client_random: [u8; CRYPTO_RANDOM_LEN],
    ) -> ClientHello {
        ClientHello {
            bootstrap,
            capabilities: ClientCapabilities {
                message: MessageCapabilities {
                    codecs: vec![CODEC_JSON.into()],
                },
                crypto: CryptoCapabilities {
                    algorithms: algorithms.iter().map(|a| a.to_string()).collect(),
                    client_random: client_random.to_vec(),
                },
            },
        }
    }
}

/// frps's choice (`NewServerHello`): validate the client's hello and pick the first
/// algorithm in the client's list that frp supports. `Err` carries the text frps
/// puts in the ServerHello's `error`.
pub fn server_hello_for(
    client: &ClientHello,
    server_random: [u8; CRYPTO_RANDOM_LEN],
) -> Result<ServerHello, V2Error> {
    if !client
        .capabilities
        .message
        .codecs
        .iter()
        .any(|c| c == CODEC_JSON)
    {
        return Err(V2Error::Negotiation("unsupported message codec".into()));
    }
    let crypto = &client.capabilities.crypto;
    if crypto.client_random.len() != CRYPTO_RANDOM_LEN {
        return Err(V2Error::Negotiation(format!(
            "invalid crypto client random length {}, want {CRYPTO_RANDOM_LEN}",
            crypto.client_random.len()
        )));
    }
    let algorithm = crypto
        .algorithms
        .iter()
        .find(|a| AEAD_ALGORITHMS.contains(&a.as_str()))
        .ok_or_else(|| V2Error::Negotiation("no supported crypto algorithm".into()))?;
    Ok(ServerHello {
        selected: ServerSelection {
            message: MessageSelection {
                codec: CODEC_JSON.into(),
            },
            crypto: CryptoSelection {
                algorithm: algorithm.clone(),
                server_random: server_random.to_vec(),
            },
        },
        error: String::new(),
    })
}

/// The error-carrying ServerHello frps sends when it cannot agree (`DefaultServerHello`).
pub fn server_hello_error(error: String) -> ServerHello {
    ServerHello {
        selected: ServerSelection {
            message: MessageSelection {
                codec: CODEC_JSON.into(),
            },
            ..Default::default()
        },
        error,
    }
}

/// frpc's check of frps's answer (`ValidateServerHelloForClient`); returns the
/// selected algorithm name.
pub fn check_server_hello<'a>(
    client: &ClientHello,
    server: &'a ServerHello,
) -> Result<&'a str, V2Error> {
    if !server.error.is_empty() {
        return Err(V2Error::Negotiation(server.error.clone()));
    }
    if server.selected.message.codec != CODEC_JSON {
        return Err(V2Error::Negotiation(format!(
            "unsupported selected message codec: {}",
            server.selected.message.codec
        )));
    }
    let crypto = &server.selected.crypto;
    if !AEAD_ALGORITHMS.contains(&crypto.algorithm.as_str()) {
        return Err(V2Error::Negotiation(format!(
            "unknown selected crypto algorithm: {}",
            crypto.algorithm
        )));
    }
    if !client
        .capabilities
        .crypto
        .algorithms
        .contains(&crypto.algorithm)
    {
        return Err(V2Error::Negotiation(format!(
            "selected crypto algorithm was not advertised by client: {}",
            crypto.algorithm
        )));
    }
    if crypto.server_random.len() != CRYPTO_RANDOM_LEN {
        return Err(V2Error::Negotiation(format!(
            "invalid crypto server random length {}, want {CRYPTO_RANDOM_LEN}",
            crypto.server_random.len()
        )));
    }
    Ok(&crypto.algorithm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::msg::{LoginResp, Ping};

    /// The appendix's hello payloads, byte for byte.
    const CLIENT_HELLO: &str = r#"{"bootstrap":{"transport":"tcp","tls":true,"tcpMux":true},"capabilities":{"message":{"codecs":["json"]},"crypto":{"algorithms":["aes-256-gcm","xchacha20-poly1305"],"clientRandom":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}}"#;
    const SERVER_HELLO: &str = r#"{"selected":{"message":{"codec":"json"},"crypto":{"algorithm":"aes-256-gcm","serverRandom":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}}}"#;

    fn reference_client_hello() -> ClientHello {
        ClientHello::new(
            BootstrapInfo {
                transport: "tcp".into(),
                tls: true,
                tcp_mux: true,
            },
            &AEAD_ALGORITHMS,
            [0; 32],
        )
    }

    #[test]
    fn hellos_encode_like_go() {
        let client = reference_client_hello();
        assert_eq!(hello_json(&client), CLIENT_HELLO.as_bytes());
        let server = server_hello_for(&client, [1; 32]).unwrap();
        assert_eq!(hello_json(&server), SERVER_HELLO.as_bytes());
        let parsed: ClientHello = parse_hello("ClientHello", CLIENT_HELLO.as_bytes()).unwrap();
        assert_eq!(parsed, client);
        assert_eq!(check_server_hello(&client, &server), Ok("aes-256-gcm"));
    }

    #[test]
    fn ping_frame_matches_reference() {
        let mut out = Vec::new();
        encode_message_frame(&Ping::default().into(), &mut out).unwrap();
        assert_eq!(
            hex(&out),
            "00100000".to_owned() + "00000004" + "000b" + "7b7d"
        );
        let (msg, used) = decode_message_frame(&out).unwrap().unwrap();
        assert_eq!((msg, used), (Message::Ping(Ping::default()), out.len()));
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn every_message_round_trips_with_its_own_id() {
        for (id, byte) in MESSAGE_IDS {
            let msg = Message::from_json(byte, b"{}").unwrap().unwrap();
            assert_eq!(message_id(&msg), id);
            let mut out = Vec::new();
            encode_message_frame(&msg, &mut out).unwrap();
            assert_eq!(decode_message_frame(&out).unwrap().unwrap().0, msg);
        }
    }

    #[test]
    fn stops_exactly_at_the_frame_end() {
        let mut wire = Vec::new();
        let resp = LoginResp {
            run_id: "abc".into(),
            ..Default::default()
        };
        encode_message_frame(&resp.into(), &mut wire).unwrap();
        let len = wire.len();
        wire.extend_from_slice(b"aead-stream-bytes");
        assert_eq!(decode_message_frame(&wire).unwrap().unwrap().1, len);
        for cut in 0..len {
            assert_eq!(decode_message_frame(&wire[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn rejects_corrupt_frames_with_clear_errors() {
        assert_eq!(
            decode_raw_frame(b"\x00\x10\x00\x01\x00\x00\x00\x00"),
            Err(V2Error::Flags(1))
        );
        assert_eq!(
            decode_raw_frame(b"\x00\x10\x00\x00\x00\x01\x00\x01"),
            Err(V2Error::TooLong(65537))
        );
        assert_eq!(
            V2Error::TooLong(65537).to_string(),
            "v2 frame payload length 65537 exceeds limit 65536"
        );
        assert_eq!(
            decode_message_frame(b"\x00\x01\x00\x00\x00\x00\x00\x02{}"),
            Err(V2Error::UnexpectedFrame { got: 1, want: 16 })
        );
        assert_eq!(
            decode_message_frame(b"\x00\x10\x00\x00\x00\x00\x00\x01\x00"),
            Err(V2Error::ShortMessage(1))
        );
        assert_eq!(
            decode_message_frame(b"\x00\x10\x00\x00\x00\x00\x00\x04\x00\x13{}"),
            Err(V2Error::UnknownMessage(19))
        );
        assert!(matches!(
            decode_message_frame(b"\x00\x10\x00\x00\x00\x00\x00\x04\x00\x01[]"),
            Err(V2Error::BadJson { what: "Login", .. })
        ));
        let mut out = Vec::new();
        assert_eq!(
            encode_raw_frame(FRAME_MESSAGE, &vec![0; MAX_PAYLOAD_LEN + 1], &mut out),
            Err(V2Error::TooLong(MAX_PAYLOAD_LEN + 1))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn negotiation_failures_use_frps_texts() {
        let mut client = reference_client_hello();
        client.capabilities.crypto.algorithms = vec!["rot13".into(), "xchacha20-poly1305".into()];
        let server = server_hello_for(&client, [2; 32]).unwrap();
        assert_eq!(server.selected.crypto.algorithm, "xchacha20-poly1305");

        client.capabilities.crypto.algorithms = vec!["rot13".into()];
        assert_eq!(
            server_hello_for(&client, [2; 32]).unwrap_err().to_string(),
            "no supported crypto algorithm"
        );
        client.capabilities.crypto.client_random = vec![0; 5];
        assert_eq!(
            server_hello_for(&client, [2; 32]).unwrap_err().to_string(),
            "invalid crypto client random length 5, want 32"
        );
        client.capabilities.message.codecs.clear();
        assert_eq!(
            server_hello_for(&client, [2; 32]).unwrap_err().to_string(),
            "unsupported message codec"
        );

        let client = reference_client_hello();
        let mut server = server_hello_for(&client, [1; 32]).unwrap();
        server.selected.crypto.server_random.pop();
        assert_eq!(
            check_server_hello(&client, &server)
                .unwrap_err()
                .to_string(),
            "invalid crypto server random length 31, want 32"
        );
        let refused = server_hello_error("no supported crypto algorithm".into());
        assert_eq!(
            hello_json(&refused),
            br#"{"selected":{"message":{"codec":"json"},"crypto":{}},"error":"no supported crypto algorithm"}"#
        );
        assert_eq!(
            check_server_hello(&client, &refused)
                .unwrap_err()
                .to_string(),
            "no supported crypto algorithm"
        );
    }
}
