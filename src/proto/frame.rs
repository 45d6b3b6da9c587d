//! v1 frames (`golib:msg/json`): type byte, int64 big-endian body length, JSON body.

use std::io;

use super::msg::Message;

/// Largest body golib's reader accepts (`defaultMaxMsgLength`); frp never changes it.
pub const MAX_BODY_LEN: i64 = 10240;

/// Type byte plus the int64 length.
pub const HEADER_LEN: usize = 9;

/// Every error is fatal to the connection, as in golib's `readMsg`.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FrameError {
    #[error("unknown frame type byte 0x{0:02x} (not one of frp's 18 message types)")]
    UnknownType(u8),
    #[error("frame header declares a negative body length ({0})")]
    NegativeLength(i64),
    #[error("frame body of {0} bytes exceeds frp's {MAX_BODY_LEN}-byte limit")]
    TooLong(i64),
    #[error("invalid JSON body for {msg} frame: {reason}")]
    BadBody { msg: &'static str, reason: String },
    /// A wire protocol v2 frame or hello that cannot be used.
    #[error("{0}")]
    V2(#[from] super::v2::V2Error),
}

/// Decodes the frame at the start of `buf`.
///
/// `Ok(None)` means more bytes are needed; `Ok(Some((msg, consumed)))` consumed exactly
/// one frame and never a byte past it (what follows may be IV or payload bytes).
/// Garbage is rejected as early as possible: the type byte as soon as 1 byte is
/// present, the length as soon as the 9-byte header is.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Message, usize)>, FrameError> {
    let Some(&type_byte) = buf.first() else {
        return Ok(None);
    };
    let Some(name) = Message::name_of_type(type_byte) else {
        return Err(FrameError::UnknownType(type_byte));
    };
    let Some(length_bytes) = buf.get(1..HEADER_LEN) else {
        return Ok(None);
    };
    let mut length = [0u8; 8];
    length.copy_from_slice(length_bytes);
    let length = i64::from_be_bytes(length);
    if length < 0 {
        return Err(FrameError::NegativeLength(length));
    }
    if length > MAX_BODY_LEN {
        return Err(FrameError::TooLong(length));
    }
    // 0 <= length <= MAX_BODY_LEN, so this cannot overflow.
    let frame_len = HEADER_LEN + length as usize;
    let Some(body) = buf.get(HEADER_LEN..frame_len) else {
        return Ok(None);
    };
    match Message::from_json(type_byte, body) {
        Some(Ok(msg)) => Ok(Some((msg, frame_len))),
        Some(Err(err)) => Err(FrameError::BadBody {
            msg: name,
            reason: err.to_string(),
        }),
        None => Err(FrameError::UnknownType(type_byte)),
    }
}

/// Appends one whole frame to `out` (a reusable buffer), ready for a single write,
/// as golib's `WriteMsg` does. The JSON is byte-identical to Go's `json.Marshal`.
pub fn encode_frame(msg: &Message, out: &mut Vec<u8>) {
    out.push(msg.type_byte());
    let length_at = out.len();
    out.extend_from_slice(&[0; 8]);
    msg.write_json(&mut *out)
        .expect("messages have only string map keys, so JSON encoding cannot fail");
    let body_len = (out.len() - length_at - 8) as i64;
    out[length_at..length_at + 8].copy_from_slice(&body_len.to_be_bytes());
}

/// serde_json's compact output plus the escapes Go's `json.Marshal` adds for HTML
/// safety (`<`, `>`, `&`, U+2028, U+2029), so our frames match Go's byte for byte.
pub(crate) struct GoJsonFormatter;

impl serde_json::ser::Formatter for GoJsonFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (index, ch) in fragment.char_indices() {
            let escape = match ch {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..index])?;
            writer.write_all(escape.as_bytes())?;
            start = index + ch.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::msg::{NewProxy, Ping};

    fn frame_of(msg: Message) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&msg, &mut out);
        out
    }

    #[test]
    fn ping_frame_matches_reference() {
        let frame = frame_of(Ping::default().into());
        assert_eq!(frame, b"h\0\0\0\0\0\0\0\x02{}");
        assert_eq!(
            decode_frame(&frame),
            Ok(Some((Message::Ping(Ping::default()), 11)))
        );
    }

    #[test]
    fn html_characters_are_escaped_like_go() {
        let frame = frame_of(
            NewProxy {
                proxy_name: "a<b>&c\u{2028}\"\n".into(),
                ..NewProxy::default()
            }
            .into(),
        );
        assert_eq!(
            &frame[HEADER_LEN..],
            br#"{"proxy_name":"a\u003cb\u003e\u0026c\u2028\"\n"}"#
        );
    }

    #[test]
    fn rejects_garbage_early() {
        assert_eq!(decode_frame(b"Z"), Err(FrameError::UnknownType(b'Z')));
        assert_eq!(decode_frame(b"h\0\0\0\0\0\0\0"), Ok(None));
        assert_eq!(
            decode_frame(b"h\xff\xff\xff\xff\xff\xff\xff\xff"),
            Err(FrameError::NegativeLength(-1))
        );
        assert_eq!(
            decode_frame(b"h\0\0\0\0\0\0\x28\x01"),
            Err(FrameError::TooLong(10241))
        );
        assert_eq!(
            FrameError::TooLong(20000).to_string(),
            "frame body of 20000 bytes exceeds frp's 10240-byte limit"
        );
    }

    #[test]
    fn stops_exactly_at_the_frame_end() {
        let mut wire = frame_of(Ping::default().into());
        let frame_len = wire.len();
        wire.extend_from_slice(b"\x00\x01IV-and-payload");
        let (_, consumed) = decode_frame(&wire).unwrap().unwrap();
        assert_eq!(consumed, frame_len);
        assert_eq!(decode_frame(&wire[..frame_len - 1]), Ok(None));
    }
}
