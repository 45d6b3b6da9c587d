//! The control stream after LoginResp: v1 frames inside AES-128-CFB (key = the token),
//! one independent IV per direction (frp-protocol.md §7.1); or, with wire protocol v2,
//! v2 frames inside golib's AEAD stream (keys from the hello transcript, appendix A).

use super::{ConnError, Wire};
use crate::codec::aead::{AeadOpener, AeadSealer};
use crate::codec::{CipherKey, DecryptStream, EncryptStream};
use crate::proto::{encode_frame, Message};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// One per control connection, so the CFB state is boxed to keep the enum small.
enum Opener {
    Cfb(Box<DecryptStream>),
    Aead(AeadOpener),
}

pub struct ControlReader<R> {
    io: R,
    opener: Opener,
    wire: Wire,
    plain: Vec<u8>,
    start: usize,
    raw: Vec<u8>,
}

impl<R: AsyncRead + Unpin> ControlReader<R> {
    /// `leftover`: bytes already read behind the LoginResp (the peer's IV and maybe more).
    pub fn new(io: R, key: &CipherKey, leftover: Vec<u8>) -> Self {
        Self::with_opener(
            io,
            Opener::Cfb(Box::new(DecryptStream::new(key))),
            Wire::V1,
            leftover,
        )
    }

    /// Wire protocol v2: v2 frames inside the peer's AEAD stream.
    pub fn v2(io: R, opener: AeadOpener, leftover: Vec<u8>) -> Self {
        Self::with_opener(io, Opener::Aead(opener), Wire::V2, leftover)
    }

    /// v2 when the login negotiated it (`Some`), else v1 with `key`.
    pub fn v1_or_v2(io: R, key: &CipherKey, v2: Option<AeadOpener>, leftover: Vec<u8>) -> Self {
        match v2 {
            Some(opener) => Self::v2(io, opener, leftover),
            None => Self::new(io, key, leftover),
        }
    }

    fn with_opener(io: R, opener: Opener, wire: Wire, leftover: Vec<u8>) -> Self {
        ControlReader {
            io,
            opener,
            wire,
            plain: Vec::new(),
            start: 0,
            raw: leftover,
        }
    }

    fn absorb_raw(&mut self) -> Result<(), ConnError> {
        if self.raw.is_empty() {
            return Ok(());
        }
        match &mut self.opener {
            Opener::Cfb(decrypt) => {
                let range = decrypt.decrypt(&mut self.raw);
                self.plain.extend_from_slice(&self.raw[range]);
            }
            Opener::Aead(opener) => opener
                .open(&self.raw, &mut self.plain)
                .map_err(|e| ConnError::Other(format!("v2 control stream: {e}")))?,
        }
        self.raw.clear();
        Ok(())
    }

    pub async fn read_msg(&mut self) -> Result<Message, ConnError> {
        loop {
            self.absorb_raw()?;
            if let Some((msg, used)) = self.wire.decode(&self.plain[self.start..])? {
                self.start += used;
                if self.start == self.plain.len() {
                    self.plain.clear();
                    self.start = 0;
                }
                return Ok(msg);
            }
            if self.start > 0 {
                self.plain.drain(..self.start);
                self.start = 0;
            }
            self.raw.resize(4096, 0);
            let n = self.io.read(&mut self.raw).await?;
            self.raw.truncate(n);
            if n == 0 {
                return Err(ConnError::Eof("the next control message"));
            }
        }
    }
}

enum Sealer {
    Cfb(EncryptStream),
    /// With a scratch buffer for the plaintext frame.
    Aead(AeadSealer, Vec<u8>),
}

pub struct ControlWriter<W> {
    io: W,
    sealer: Sealer,
    out: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> ControlWriter<W> {
    pub fn new(io: W, key: &CipherKey) -> Self {
        ControlWriter {
            io,
            sealer: Sealer::Cfb(EncryptStream::new(key)),
            out: Vec::with_capacity(512),
        }
    }

    /// Wire protocol v2: v2 frames sealed into our AEAD stream.
    pub fn v2(io: W, sealer: AeadSealer) -> Self {
        ControlWriter {
            io,
            sealer: Sealer::Aead(sealer, Vec::with_capacity(512)),
            out: Vec::with_capacity(512),
        }
    }

    /// v2 when the login negotiated it (`Some`), else v1 with `key`.
    pub fn v1_or_v2(io: W, key: &CipherKey, v2: Option<AeadSealer>) -> Self {
        match v2 {
            Some(sealer) => Self::v2(io, sealer),
            None => Self::new(io, key),
        }
    }

    /// Encrypts and writes one frame; the IV (or stream nonce) goes out in front of
    /// the first one.
    pub async fn write_msg(&mut self, msg: &Message) -> Result<(), ConnError> {
        self.out.clear();
        let from = match &mut self.sealer {
            Sealer::Aead(sealer, plain) => {
                // Go writes a v2 frame's header and payload separately (two AEAD
                // frames); one AEAD frame carries the same bytes to the reader.
                plain.clear();
                Wire::V2.encode(msg, plain)?;
                sealer
                    .seal(plain, &mut self.out)
                    .map_err(|e| ConnError::Other(format!("v2 control stream: {e}")))?;
                0
            }
            Sealer::Cfb(encrypt) => {
                self.out.extend_from_slice(&[0u8; 16]);
                encode_frame(msg, &mut self.out);
                match encrypt.encrypt(&mut self.out[16..]) {
                    Some(iv) => {
                        self.out[..16].copy_from_slice(&iv);
                        0
                    }
                    None => 16,
                }
            }
        };
        self.io.write_all(&self.out[from..]).await?;
        self.io.flush().await?;
        Ok(())
    }

    pub async fn close(&mut self) {
        let _ = self.io.close().await;
    }
}
