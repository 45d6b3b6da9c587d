//! The control stream after LoginResp: v1 frames inside AES-128-CFB (key = the token),
//! one independent IV per direction (frp-protocol.md §7.1).

use super::ConnError;
use crate::codec::{CipherKey, DecryptStream, EncryptStream};
use crate::proto::{decode_frame, encode_frame, Message};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub struct ControlReader<R> {
    io: R,
    decrypt: DecryptStream,
    plain: Vec<u8>,
    start: usize,
    raw: Vec<u8>,
}

impl<R: AsyncRead + Unpin> ControlReader<R> {
    /// `leftover`: bytes already read behind the LoginResp (the peer's IV and maybe more).
    pub fn new(io: R, key: &CipherKey, leftover: Vec<u8>) -> Self {
        let mut me = ControlReader {
            io,
            decrypt: DecryptStream::new(key),
            plain: Vec::new(),
            start: 0,
            raw: leftover,
        };
        me.absorb_raw();
        me
    }

    fn absorb_raw(&mut self) {
        if self.raw.is_empty() {
            return;
        }
        let range = self.decrypt.decrypt(&mut self.raw);
        self.plain.extend_from_slice(&self.raw[range]);
        self.raw.clear();
    }

    pub async fn read_msg(&mut self) -> Result<Message, ConnError> {
        loop {
            if let Some((msg, used)) = decode_frame(&self.plain[self.start..])? {
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
            self.absorb_raw();
        }
    }
}

pub struct ControlWriter<W> {
    io: W,
    encrypt: EncryptStream,
    out: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> ControlWriter<W> {
    pub fn new(io: W, key: &CipherKey) -> Self {
        ControlWriter {
            io,
            encrypt: EncryptStream::new(key),
            out: Vec::with_capacity(512),
        }
    }

    /// Encrypts and writes one frame; the IV goes out in front of the first one.
    pub async fn write_msg(&mut self, msg: &Message) -> Result<(), ConnError> {
        self.out.clear();
        self.out.extend_from_slice(&[0u8; 16]);
        encode_frame(msg, &mut self.out);
        let iv = self.encrypt.encrypt(&mut self.out[16..]);
        let from = match iv {
            Some(iv) => {
                self.out[..16].copy_from_slice(&iv);
                0
            }
            None => 16,
        };
        self.io.write_all(&self.out[from..]).await?;
        self.io.flush().await?;
        Ok(())
    }

    pub async fn close(&mut self) {
        let _ = self.io.close().await;
    }
}
