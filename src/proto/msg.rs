//! The 18 frp v0.70 messages (`frp:pkg/msg/msg.go`), with Go's JSON conventions:
//! field order = Go declaration order, every field `omitempty` (zero values are not
//! written), struct-typed fields always written (Go ignores `omitempty` on structs),
//! and a JSON `null` or missing key leaves the zero value (as `encoding/json` does).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// Go's `omitempty` test (`encoding/json` `isEmptyValue`).
pub trait GoZero {
    fn is_go_zero(&self) -> bool;
}

macro_rules! go_zero_by_default {
    ($($ty:ty),*) => {
        $(impl GoZero for $ty {
            fn is_go_zero(&self) -> bool {
                *self == <$ty>::default()
            }
        })*
    };
}
go_zero_by_default!(String, bool, i64, u16);

impl<K, V> GoZero for BTreeMap<K, V> {
    fn is_go_zero(&self) -> bool {
        self.is_empty()
    }
}

impl<T> GoZero for Vec<T> {
    fn is_go_zero(&self) -> bool {
        self.is_empty()
    }
}

impl<T> GoZero for Option<T> {
    fn is_go_zero(&self) -> bool {
        self.is_none()
    }
}

/// Go treats `null` as "leave the field alone", i.e. the zero value.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// Declares a message struct whose every field follows Go's `omitempty` rules.
macro_rules! go_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        pub struct $name {
            $(
                $(#[$field_meta])*
                #[serde(
                    default,
                    skip_serializing_if = "GoZero::is_go_zero",
                    deserialize_with = "null_as_default"
                )]
                pub $field: $ty,
            )*
        }

        /// A struct-typed field is never "empty" to Go's `omitempty`.
        impl GoZero for $name {
            fn is_go_zero(&self) -> bool {
                false
            }
        }
    };
}

go_struct! {
    /// Client kind; a normal frpc sends `{}`. Never set `type` to `ssh-tunnel`.
    pub struct ClientSpec {
        pub r#type: String,
        pub always_auth_pass: bool,
    }
}

go_struct! {
    /// First message on the control connection (C→S).
    pub struct Login {
        pub version: String,
        pub hostname: String,
        pub os: String,
        pub arch: String,
        pub user: String,
        pub privilege_key: String,
        pub timestamp: i64,
        pub run_id: String,
        pub client_id: String,
        pub metas: BTreeMap<String, String>,
        pub client_spec: ClientSpec,
        pub pool_count: i64,
    }
}

go_struct! {
    pub struct LoginResp {
        pub version: String,
        pub run_id: String,
        pub error: String,
    }
}

go_struct! {
    /// Registers a proxy (C→S, control). `proxy_name` carries the `user.` prefix.
    pub struct NewProxy {
        pub proxy_name: String,
        pub proxy_type: String,
        pub use_encryption: bool,
        pub use_compression: bool,
        pub bandwidth_limit: String,
        pub bandwidth_limit_mode: String,
        pub group: String,
        pub group_key: String,
        pub metas: BTreeMap<String, String>,
        pub annotations: BTreeMap<String, String>,
        pub remote_port: i64,
        pub custom_domains: Vec<String>,
        pub subdomain: String,
        pub locations: Vec<String>,
        pub http_user: String,
        pub http_pwd: String,
        pub host_header_rewrite: String,
        pub headers: BTreeMap<String, String>,
        pub response_headers: BTreeMap<String, String>,
        pub route_by_http_user: String,
        pub sk: String,
        pub allow_users: Vec<String>,
        pub multiplexer: String,
    }
}

go_struct! {
    pub struct NewProxyResp {
        pub proxy_name: String,
        pub remote_addr: String,
        pub error: String,
    }
}

go_struct! {
    pub struct CloseProxy {
        pub proxy_name: String,
    }
}

go_struct! {
    /// First message on a work connection (C→S).
    pub struct NewWorkConn {
        pub run_id: String,
        pub privilege_key: String,
        pub timestamp: i64,
    }
}

go_struct! {
    /// Always `{}`.
    pub struct ReqWorkConn {}
}

go_struct! {
    /// S→C on a work connection; addresses are bare IPs.
    pub struct StartWorkConn {
        pub proxy_name: String,
        pub src_addr: String,
        pub dst_addr: String,
        pub src_port: u16,
        pub dst_port: u16,
        pub error: String,
    }
}

go_struct! {
    /// First message on a visitor connection (C→S).
    pub struct NewVisitorConn {
        pub run_id: String,
        pub proxy_name: String,
        pub sign_key: String,
        pub timestamp: i64,
        pub use_encryption: bool,
        pub use_compression: bool,
    }
}

go_struct! {
    pub struct NewVisitorConnResp {
        pub proxy_name: String,
        pub error: String,
    }
}

go_struct! {
    pub struct Ping {
        pub privilege_key: String,
        pub timestamp: i64,
    }
}

go_struct! {
    pub struct Pong {
        pub error: String,
    }
}

/// Go's `net.UDPAddr`: no JSON tags, so keys are the Go field names and nothing
/// is omitted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UdpAddr {
    #[serde(rename = "IP", default, deserialize_with = "null_as_default")]
    pub ip: String,
    #[serde(rename = "Port", default, deserialize_with = "null_as_default")]
    pub port: i64,
    #[serde(rename = "Zone", default, deserialize_with = "null_as_default")]
    pub zone: String,
}

/// sudp only. Go's keys are one letter (`c`, `l`, `r`); `c` is base64 (`[]byte`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UdpPacket {
    #[serde(
        rename = "c",
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "base64_bytes"
    )]
    pub content: Vec<u8>,
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    pub local_addr: Option<UdpAddr>,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<UdpAddr>,
}

go_struct! {
    pub struct NatHoleVisitor {
        pub transaction_id: String,
        pub proxy_name: String,
        pub pre_check: bool,
        pub protocol: String,
        pub sign_key: String,
        pub timestamp: i64,
        pub mapped_addrs: Vec<String>,
        pub assisted_addrs: Vec<String>,
    }
}

go_struct! {
    pub struct NatHoleClient {
        pub transaction_id: String,
        pub proxy_name: String,
        pub sid: String,
        pub mapped_addrs: Vec<String>,
        pub assisted_addrs: Vec<String>,
    }
}

go_struct! {
    pub struct PortsRange {
        pub from: i64,
        pub to: i64,
    }
}

go_struct! {
    pub struct NatHoleDetectBehavior {
        pub role: String,
        pub mode: i64,
        pub ttl: i64,
        pub send_delay_ms: i64,
        /// Go field `ReadTimeoutMs`, JSON key `read_timeout`.
        #[serde(rename = "read_timeout")]
        pub read_timeout_ms: i64,
        pub candidate_ports: Vec<PortsRange>,
        pub send_random_ports: i64,
        pub listen_random_ports: i64,
    }
}

go_struct! {
    pub struct NatHoleResp {
        pub transaction_id: String,
        pub sid: String,
        pub protocol: String,
        pub candidate_addrs: Vec<String>,
        pub assisted_addrs: Vec<String>,
        pub detect_behavior: NatHoleDetectBehavior,
        pub error: String,
    }
}

go_struct! {
    pub struct NatHoleSid {
        pub transaction_id: String,
        pub sid: String,
        pub response: bool,
        pub nonce: String,
    }
}

go_struct! {
    pub struct NatHoleReport {
        pub sid: String,
        pub success: bool,
    }
}

/// `[]byte` in Go's JSON: standard base64 with padding.
pub(crate) mod base64_bytes {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&encode(bytes))
    }

    /// Standard base64 with padding (also HTTP basic auth).
    pub(crate) fn encode(bytes: &[u8]) -> String {
        let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for group in bytes.chunks(3) {
            let b = [
                group[0],
                *group.get(1).unwrap_or(&0),
                *group.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= group.len() {
                    text.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    text.push('=');
                }
            }
        }
        text
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
        decode(text.as_bytes()).ok_or_else(|| D::Error::custom("invalid base64 in []byte field"))
    }

    pub(crate) fn decode(text: &[u8]) -> Option<Vec<u8>> {
        if !text.len().is_multiple_of(4) {
            return None;
        }
        let mut out = Vec::with_capacity(text.len() / 4 * 3);
        let groups = text.len() / 4;
        for (index, group) in text.chunks(4).enumerate() {
            let padding = group.iter().rev().take_while(|&&c| c == b'=').count();
            if padding > 2 || (padding > 0 && index + 1 != groups) {
                return None;
            }
            let mut n = 0u32;
            for &c in &group[..4 - padding] {
                let v = ALPHABET.iter().position(|&a| a == c)? as u32;
                n = (n << 6) | v;
            }
            n <<= 6 * padding as u32;
            let bytes = n.to_be_bytes();
            out.extend_from_slice(&bytes[1..4 - padding]);
        }
        Some(out)
    }
}

/// Go unmarshals only a JSON object (or `null`, a no-op) into a struct, whereas
/// serde would also take an array of fields in order; reject that like Go.
fn go_object_body(body: &[u8]) -> serde_json::Result<&[u8]> {
    let is_json_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = body
        .iter()
        .position(|b| !is_json_space(b))
        .unwrap_or(body.len());
    let end = body
        .iter()
        .rposition(|b| !is_json_space(b))
        .map_or(start, |i| i + 1);
    let trimmed = body.get(start..end).unwrap_or_default();
    if trimmed == b"null" {
        return Ok(b"{}");
    }
    if trimmed.first() == Some(&b'{') {
        return Ok(body);
    }
    // Let serde_json describe what is there instead (or report the end of input).
    match serde_json::from_slice::<serde_json::Value>(body) {
        Err(err) => Err(err),
        Ok(_) => Err(serde::de::Error::custom("expected a JSON object")),
    }
}

/// One v1 message, tagged by its frp type byte.
// Unboxed on purpose: control-plane values, rare and short-lived; boxing would only
// make construction and matching noisier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Login(Login),
    LoginResp(LoginResp),
    NewProxy(NewProxy),
    NewProxyResp(NewProxyResp),
    CloseProxy(CloseProxy),
    NewWorkConn(NewWorkConn),
    ReqWorkConn(ReqWorkConn),
    StartWorkConn(StartWorkConn),
    NewVisitorConn(NewVisitorConn),
    NewVisitorConnResp(NewVisitorConnResp),
    Ping(Ping),
    Pong(Pong),
    UdpPacket(UdpPacket),
    NatHoleVisitor(NatHoleVisitor),
    NatHoleClient(NatHoleClient),
    NatHoleResp(NatHoleResp),
    NatHoleSid(NatHoleSid),
    NatHoleReport(NatHoleReport),
}

/// Generates the type-byte table once so that encode, decode and names cannot drift.
macro_rules! message_table {
    ($( $variant:ident = $byte:literal ),* $(,)?) => {
        impl Message {
            /// The v1 type byte (`frp:pkg/msg/msg.go` `Type*`).
            pub fn type_byte(&self) -> u8 {
                match self { $( Message::$variant(_) => $byte, )* }
            }

            /// Go's struct name, e.g. `"Login"`.
            pub fn name(&self) -> &'static str {
                match self { $( Message::$variant(_) => stringify!($variant), )* }
            }

            /// The Go struct name registered for `type_byte`, if any.
            pub fn name_of_type(type_byte: u8) -> Option<&'static str> {
                match type_byte { $( $byte => Some(stringify!($variant)), )* _ => None }
            }

            pub(crate) fn write_json<W: std::io::Write>(
                &self,
                writer: W,
            ) -> serde_json::Result<()> {
                let mut serializer =
                    serde_json::Serializer::with_formatter(writer, super::frame::GoJsonFormatter);
                match self { $( Message::$variant(m) => m.serialize(&mut serializer), )* }
            }

            /// Parses `body` as the message registered for `type_byte`.
            /// `None` if the byte is not one of frp's 18 types.
            pub(crate) fn from_json(
                type_byte: u8,
                body: &[u8],
            ) -> Option<serde_json::Result<Message>> {
                let body = match go_object_body(body) {
                    Ok(body) => body,
                    Err(err) => return Some(Err(err)),
                };
                match type_byte {
                    $( $byte => Some(serde_json::from_slice(body).map(Message::$variant)), )*
                    _ => None,
                }
            }
        }

        $(
            impl From<$variant> for Message {
                fn from(m: $variant) -> Message {
                    Message::$variant(m)
                }
            }
        )*
    };
}

message_table! {
    Login = b'o',
    LoginResp = b'1',
    NewProxy = b'p',
    NewProxyResp = b'2',
    CloseProxy = b'c',
    NewWorkConn = b'w',
    ReqWorkConn = b'r',
    StartWorkConn = b's',
    NewVisitorConn = b'v',
    NewVisitorConnResp = b'3',
    Ping = b'h',
    Pong = b'4',
    UdpPacket = b'u',
    NatHoleVisitor = b'i',
    NatHoleClient = b'n',
    NatHoleResp = b'm',
    NatHoleSid = b'5',
    NatHoleReport = b'6',
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_always_carries_client_spec_and_omits_zero_fields() {
        let login = Login {
            user: "alice".into(),
            pool_count: 1,
            ..Login::default()
        };
        let json = serde_json::to_string(&login).unwrap();
        assert_eq!(json, r#"{"user":"alice","client_spec":{},"pool_count":1}"#);
    }

    #[test]
    fn null_and_unknown_keys_leave_zero_values() {
        let resp: LoginResp =
            serde_json::from_str(r#"{"version":null,"run_id":"x","future_key":[1,2]}"#).unwrap();
        assert_eq!(
            resp,
            LoginResp {
                run_id: "x".into(),
                ..LoginResp::default()
            }
        );
    }

    #[test]
    fn udp_packet_uses_go_keys_and_base64() {
        let packet = UdpPacket {
            content: b"hello!!".to_vec(),
            local_addr: Some(UdpAddr {
                ip: "1.2.3.4".into(),
                port: 53,
                zone: String::new(),
            }),
            remote_addr: None,
        };
        let json = serde_json::to_string(&packet).unwrap();
        assert_eq!(
            json,
            r#"{"c":"aGVsbG8hIQ==","l":{"IP":"1.2.3.4","Port":53,"Zone":""}}"#
        );
        assert_eq!(serde_json::from_str::<UdpPacket>(&json).unwrap(), packet);
        assert!(serde_json::from_str::<UdpPacket>(r#"{"c":"a=GV"}"#).is_err());
    }

    #[test]
    fn every_type_byte_maps_back_to_its_name() {
        for byte in 0..=u8::MAX {
            if let Some(name) = Message::name_of_type(byte) {
                let msg = Message::from_json(byte, b"{}").unwrap().unwrap();
                assert_eq!((msg.type_byte(), msg.name()), (byte, name));
            }
        }
    }
}
