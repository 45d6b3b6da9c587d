//! The 12-byte yamux header (`yamux:const.go`), big-endian:
//! `version(u8) | type(u8) | flags(u16) | stream_id(u32) | length(u32)`.

pub const HEADER_LEN: usize = 12;
pub const VERSION: u8 = 0;

pub const TYPE_DATA: u8 = 0;
pub const TYPE_WINDOW_UPDATE: u8 = 1;
pub const TYPE_PING: u8 = 2;
pub const TYPE_GO_AWAY: u8 = 3;

pub const FLAG_SYN: u16 = 1;
pub const FLAG_ACK: u16 = 2;
pub const FLAG_FIN: u16 = 4;
pub const FLAG_RST: u16 = 8;

pub const GO_AWAY_NORMAL: u32 = 0;
pub const GO_AWAY_PROTO_ERR: u32 = 1;
pub const GO_AWAY_INTERNAL_ERR: u32 = 2;

/// Every stream starts with this window in both directions (`initialStreamWindow`).
pub const INITIAL_STREAM_WINDOW: u32 = 256 * 1024;

/// A decoded header. `length` is the payload size for Data, the window delta for
/// WindowUpdate, the opaque value for Ping and the error code for GoAway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub typ: u8,
    pub flags: u16,
    pub stream_id: u32,
    pub length: u32,
}

impl Header {
    pub fn new(typ: u8, flags: u16, stream_id: u32, length: u32) -> Header {
        Header {
            version: VERSION,
            typ,
            flags,
            stream_id,
            length,
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = self.version;
        b[1] = self.typ;
        b[2..4].copy_from_slice(&self.flags.to_be_bytes());
        b[4..8].copy_from_slice(&self.stream_id.to_be_bytes());
        b[8..12].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            version: b[0],
            typ: b[1],
            flags: u16::from_be_bytes([b[2], b[3]]),
            stream_id: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            length: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_headers() {
        // frp-protocol.md §14.
        let open = Header::new(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0x005c_0000).encode();
        assert_eq!(open, [0, 1, 0, 1, 0, 0, 0, 1, 0, 0x5c, 0, 0]);
        let data = Header::new(TYPE_DATA, 0, 1, 11).encode();
        assert_eq!(data, [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x0b]);
        let ping = Header::new(TYPE_PING, FLAG_ACK, 0, 0).encode();
        assert_eq!(ping, [0, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Header::decode(&open), Header::new(1, 1, 1, 0x005c_0000));
    }
}
