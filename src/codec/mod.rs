//! Payload codecs: AES-128-CFB streams and snappy framing (no I/O).

pub mod cfb;
pub mod snappy;
pub mod stack;

pub use cfb::{CipherKey, DecryptStream, EncryptStream, IV_LEN};
pub use snappy::{SnappyDecoder, SnappyEncoder, SnappyError};
pub use stack::{CodecError, RecvStack, SendStack};
