//! The payload stack of a work or visitor connection after its handshake:
//! `app ⇄ [snappy] ⇄ [AES-128-CFB] ⇄ wire` (compression outermost, encryption next
//! to the socket), as golib's `WithEncryption` + `WithCompression` build it.

use super::cfb::{CipherKey, DecryptStream, EncryptStream, IV_LEN};
use super::snappy::{SnappyDecoder, SnappyEncoder, SnappyError};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Snappy(#[from] SnappyError),
}

/// Sending half: one call per application write, never buffering, so interactive
/// traffic is not delayed.
pub struct SendStack {
    encrypt: Option<EncryptStream>,
    compress: Option<SnappyEncoder>,
}

impl SendStack {
    pub fn new(key: Option<&CipherKey>, compress: bool) -> Self {
        SendStack {
            encrypt: key.map(EncryptStream::new),
            compress: compress.then(SnappyEncoder::new),
        }
    }

    /// Like `new` but with a chosen IV, to reproduce recorded traffic in tests.
    pub fn with_iv(key: Option<&CipherKey>, iv: [u8; IV_LEN], compress: bool) -> Self {
        SendStack {
            encrypt: key.map(|key| EncryptStream::with_iv(key, iv)),
            compress: compress.then(SnappyEncoder::new),
        }
    }

    /// Appends the wire bytes for one application write to `out` (the IV first, on
    /// the first non-empty write). An empty write produces nothing, as in Go.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        if plain.is_empty() {
            return;
        }
        let Some(encrypt) = &mut self.encrypt else {
            match &mut self.compress {
                Some(compress) => compress.encode(plain, out),
                None => out.extend_from_slice(plain),
            }
            return;
        };
        // Reserve room for the IV so the ciphertext never has to be moved.
        let iv_at = out.len();
        if !encrypt.iv_sent() {
            out.extend_from_slice(&[0; IV_LEN]);
        }
        let data_at = out.len();
        match &mut self.compress {
            Some(compress) => compress.encode(plain, out),
            None => out.extend_from_slice(plain),
        }
        if let Some(iv) = encrypt.encrypt(&mut out[data_at..]) {
            out[iv_at..data_at].copy_from_slice(&iv);
        }
    }

    /// True when bytes pass through unchanged (no encryption, no compression).
    pub fn is_identity(&self) -> bool {
        self.encrypt.is_none() && self.compress.is_none()
    }
}

/// Receiving half: accepts wire bytes in any split.
pub struct RecvStack {
    decrypt: Option<DecryptStream>,
    decompress: Option<SnappyDecoder>,
}

impl RecvStack {
    pub fn new(key: Option<&CipherKey>, compress: bool) -> Self {
        RecvStack {
            decrypt: key.map(DecryptStream::new),
            decompress: compress.then(SnappyDecoder::new),
        }
    }

    /// Decrypts `wire` in place and appends the application bytes to `out`.
    pub fn open(&mut self, wire: &mut [u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        let plain = match &mut self.decrypt {
            Some(decrypt) => {
                let range = decrypt.decrypt(wire);
                &wire[range]
            }
            None => &wire[..],
        };
        match &mut self.decompress {
            Some(decompress) => decompress.decode(plain, out)?,
            None => out.extend_from_slice(plain),
        }
        Ok(())
    }

    /// Call at end of stream: errors if the peer stopped inside a snappy chunk.
    pub fn finish(&self) -> Result<(), CodecError> {
        match &self.decompress {
            Some(decompress) => Ok(decompress.finish()?),
            None => Ok(()),
        }
    }

    /// True when bytes pass through unchanged (no encryption, no compression).
    pub fn is_identity(&self) -> bool {
        self.decrypt.is_none() && self.decompress.is_none()
    }
}
