//! Payload codecs: AES-128-CFB streams and snappy framing, and the v2 control channel's
//! AEAD streams (no I/O).

pub mod aead;
pub mod cfb;
pub mod snappy;
pub mod stack;

pub use cfb::{CipherKey, DecryptStream, EncryptStream, IV_LEN};
pub use snappy::{SnappyDecoder, SnappyEncoder, SnappyError};
pub use stack::{CodecError, RecvStack, SendStack};
