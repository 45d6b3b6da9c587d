//! Snappy framing format, byte-compatible with golang/snappy v0.0.4's unbuffered
//! `snappy.NewWriter` and its `Reader` (what golib's `WithCompression` uses).
//!
//! Chunk layout: type (1 byte), length of the rest (3 bytes LE), then for data chunks
//! a masked CRC-32C of the uncompressed bytes (4 bytes LE) and the body.

use std::mem;

/// `ff 06 00 00 "sNaPpY"`, sent before the first chunk of each direction.
pub const STREAM_IDENTIFIER: &[u8; 10] = b"\xff\x06\x00\x00sNaPpY";

/// Most uncompressed bytes in one chunk (framing_format.txt; Go's `maxBlockSize`).
pub const MAX_CHUNK_DATA: usize = 65536;

/// Largest chunk body Go's reader accepts: `MaxEncodedLen(65536)` + checksum.
pub const MAX_CHUNK_BODY: usize = 76490 + CHECKSUM_LEN;

const HEADER_LEN: usize = 4;
const CHECKSUM_LEN: usize = 4;

const CHUNK_COMPRESSED: u8 = 0x00;
const CHUNK_UNCOMPRESSED: u8 = 0x01;
const CHUNK_STREAM_IDENTIFIER: u8 = 0xff;

/// Why a snappy stream was rejected. Every error is final for the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnappyError {
    #[error("snappy stream must start with the stream identifier chunk (0xff), got chunk type 0x{0:02x}")]
    MissingStreamIdentifier(u8),
    #[error("snappy stream identifier chunk is malformed")]
    BadStreamIdentifier,
    #[error("snappy chunk of type 0x{chunk_type:02x} declares {len} bytes, more than the {MAX_CHUNK_BODY}-byte maximum")]
    ChunkTooLarge { chunk_type: u8, len: usize },
    #[error("snappy data chunk of {0} bytes is too short to hold its 4-byte checksum")]
    ChunkTooShort(usize),
    #[error("snappy chunk type 0x{0:02x} is reserved and not skippable")]
    ReservedChunk(u8),
    #[error("snappy chunk decodes to {0} bytes, more than the {MAX_CHUNK_DATA}-byte maximum")]
    DecodedTooLarge(usize),
    #[error("corrupt snappy block: {0}")]
    CorruptBlock(String),
    #[error(
        "snappy chunk checksum mismatch: wire says {expected:08x}, data hashes to {actual:08x}"
    )]
    ChecksumMismatch { expected: u32, actual: u32 },
    #[error("snappy stream ended inside a chunk ({0} bytes of it received)")]
    Truncated(usize),
}

/// CRC-32C, rotated and offset as the framing format requires.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Encoder for one direction. Every `encode` emits complete chunks at once.
pub struct SnappyEncoder {
    compressor: snap::raw::Encoder,
    wrote_stream_identifier: bool,
}

impl Default for SnappyEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SnappyEncoder {
    pub fn new() -> Self {
        SnappyEncoder {
            compressor: snap::raw::Encoder::new(),
            wrote_stream_identifier: false,
        }
    }

    /// Appends the stream identifier (before the first chunk only) and the chunks for
    /// all of `input`, as one Go `Writer.Write(input)` would. An empty input writes
    /// nothing at all, not even the identifier (as in Go).
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for data in input.chunks(MAX_CHUNK_DATA) {
            if !self.wrote_stream_identifier {
                self.wrote_stream_identifier = true;
                out.extend_from_slice(STREAM_IDENTIFIER);
            }
            let header_at = out.len();
            let body_at = header_at + HEADER_LEN + CHECKSUM_LEN;
            out.resize(body_at + snap::raw::max_compress_len(data.len()), 0);
            let compressed_len = self.compressor.compress(data, &mut out[body_at..]).ok();
            // Go keeps the compressed form only if it saves at least 1/8.
            let chunk_type = match compressed_len {
                Some(len) if len < data.len() - data.len() / 8 => {
                    out.truncate(body_at + len);
                    CHUNK_COMPRESSED
                }
                _ => {
                    out.truncate(body_at);
                    out.extend_from_slice(data);
                    CHUNK_UNCOMPRESSED
                }
            };
            // At most 76490 + 4, so it fits the 3-byte length.
            let chunk_len = (out.len() - body_at + CHECKSUM_LEN) as u32;
            let header = &mut out[header_at..body_at];
            header[0] = chunk_type;
            header[1..4].copy_from_slice(&chunk_len.to_le_bytes()[..3]);
            header[4..8].copy_from_slice(&masked_crc(data).to_le_bytes());
        }
    }
}

/// Decoder for one direction: push wire bytes in any split, get data out.
pub struct SnappyDecoder {
    decompressor: snap::raw::Decoder,
    /// A chunk whose end has not arrived yet (at most one maximal chunk).
    partial: Vec<u8>,
    /// Bytes still to drop from a padding/skippable chunk; skipped as they stream by.
    skipping: usize,
    seen_stream_identifier: bool,
    failed: Option<SnappyError>,
}

impl Default for SnappyDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// What a chunk header says to do with the chunk.
#[derive(Clone, Copy)]
enum ChunkKind {
    Data { compressed: bool },
    StreamIdentifier,
    Skip,
}

struct ChunkHeader {
    kind: ChunkKind,
    body_len: usize,
}

impl SnappyDecoder {
    pub fn new() -> Self {
        SnappyDecoder {
            decompressor: snap::raw::Decoder::new(),
            partial: Vec::new(),
            skipping: 0,
            seen_stream_identifier: false,
            failed: None,
        }
    }

    /// Feeds wire bytes and appends the data of every completed chunk to `out`.
    /// A chunk's data is released only after its checksum has been verified. After
    /// an error the stream is dead and every later call returns the same error.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), SnappyError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = self.decode_chunks(input, out);
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    /// Call at end of stream: errors if it stopped inside a chunk (Go: `ErrCorrupt`).
    pub fn finish(&self) -> Result<(), SnappyError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if !self.partial.is_empty() || self.skipping > 0 {
            return Err(SnappyError::Truncated(self.partial.len()));
        }
        Ok(())
    }

    fn decode_chunks(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), SnappyError> {
        loop {
            let skipped = self.skipping.min(input.len());
            self.skipping -= skipped;
            input = &input[skipped..];
            if input.is_empty() {
                return Ok(());
            }
            if self.partial.is_empty() {
                // Common case: whole chunks straight from `input`, no copying.
                let Some(header) = self.parse_header(input)? else {
                    self.partial.extend_from_slice(input);
                    return Ok(());
                };
                if let ChunkKind::Skip = header.kind {
                    self.skipping = header.body_len;
                    input = &input[HEADER_LEN..];
                    continue;
                }
                let chunk_len = HEADER_LEN + header.body_len;
                let Some(chunk) = input.get(..chunk_len) else {
                    self.partial.extend_from_slice(input);
                    return Ok(());
                };
                self.process_chunk(header.kind, &chunk[HEADER_LEN..], out)?;
                input = &input[chunk_len..];
            } else {
                // Complete the buffered header, then the buffered body.
                let header_missing = HEADER_LEN.saturating_sub(self.partial.len());
                let taken = header_missing.min(input.len());
                self.partial.extend_from_slice(&input[..taken]);
                input = &input[taken..];
                let Some(header) = self.parse_header(&self.partial)? else {
                    return Ok(());
                };
                if let ChunkKind::Skip = header.kind {
                    self.skipping = header.body_len;
                    self.partial.clear();
                    continue;
                }
                let chunk_len = HEADER_LEN + header.body_len;
                let taken = (chunk_len - self.partial.len()).min(input.len());
                self.partial.extend_from_slice(&input[..taken]);
                input = &input[taken..];
                if self.partial.len() < chunk_len {
                    return Ok(());
                }
                let chunk = mem::take(&mut self.partial);
                let result = self.process_chunk(header.kind, &chunk[HEADER_LEN..], out);
                self.partial = chunk;
                self.partial.clear();
                result?;
            }
        }
    }

    /// Validates a chunk header in Go's order; `None` until 4 bytes are present. The
    /// first chunk's type is checked as soon as its first byte is.
    fn parse_header(&self, bytes: &[u8]) -> Result<Option<ChunkHeader>, SnappyError> {
        let Some(&chunk_type) = bytes.first() else {
            return Ok(None);
        };
        if !self.seen_stream_identifier && chunk_type != CHUNK_STREAM_IDENTIFIER {
            return Err(SnappyError::MissingStreamIdentifier(chunk_type));
        }
        let Some(len) = bytes.get(1..HEADER_LEN) else {
            return Ok(None);
        };
        let body_len = usize::from(len[0]) | usize::from(len[1]) << 8 | usize::from(len[2]) << 16;
        if body_len > MAX_CHUNK_BODY {
            return Err(SnappyError::ChunkTooLarge {
                chunk_type,
                len: body_len,
            });
        }
        let kind = match chunk_type {
            CHUNK_COMPRESSED | CHUNK_UNCOMPRESSED => {
                if body_len < CHECKSUM_LEN {
                    return Err(SnappyError::ChunkTooShort(body_len));
                }
                if chunk_type == CHUNK_UNCOMPRESSED && body_len - CHECKSUM_LEN > MAX_CHUNK_DATA {
                    return Err(SnappyError::DecodedTooLarge(body_len - CHECKSUM_LEN));
                }
                ChunkKind::Data {
                    compressed: chunk_type == CHUNK_COMPRESSED,
                }
            }
            CHUNK_STREAM_IDENTIFIER => {
                if body_len != STREAM_IDENTIFIER.len() - HEADER_LEN {
                    return Err(SnappyError::BadStreamIdentifier);
                }
                ChunkKind::StreamIdentifier
            }
            0x02..=0x7f => return Err(SnappyError::ReservedChunk(chunk_type)),
            // 0x80..=0xfd reserved skippable, 0xfe padding.
            _ => ChunkKind::Skip,
        };
        Ok(Some(ChunkHeader { kind, body_len }))
    }

    fn process_chunk(
        &mut self,
        kind: ChunkKind,
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SnappyError> {
        let compressed = match kind {
            ChunkKind::Data { compressed } => compressed,
            ChunkKind::StreamIdentifier => {
                if body != &STREAM_IDENTIFIER[HEADER_LEN..] {
                    return Err(SnappyError::BadStreamIdentifier);
                }
                self.seen_stream_identifier = true;
                return Ok(());
            }
            ChunkKind::Skip => return Ok(()),
        };
        // parse_header guarantees at least the checksum is there.
        let (checksum, data) = body.split_at(CHECKSUM_LEN);
        let expected = u32::from_le_bytes([checksum[0], checksum[1], checksum[2], checksum[3]]);
        let start = out.len();
        if compressed {
            let decoded_len = snap::raw::decompress_len(data)
                .map_err(|err| SnappyError::CorruptBlock(err.to_string()))?;
            if decoded_len > MAX_CHUNK_DATA {
                return Err(SnappyError::DecodedTooLarge(decoded_len));
            }
            out.resize(start + decoded_len, 0);
            match self.decompressor.decompress(data, &mut out[start..]) {
                Ok(written) if written == decoded_len => {}
                Ok(written) => {
                    out.truncate(start);
                    return Err(SnappyError::CorruptBlock(format!(
                        "header says {decoded_len} bytes, block holds {written}"
                    )));
                }
                Err(err) => {
                    out.truncate(start);
                    return Err(SnappyError::CorruptBlock(err.to_string()));
                }
            }
        } else {
            out.extend_from_slice(data);
        }
        let actual = masked_crc(&out[start..]);
        if actual != expected {
            out.truncate(start);
            return Err(SnappyError::ChecksumMismatch { expected, actual });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_matches_reference() {
        let mut encoder = SnappyEncoder::new();
        let mut wire = Vec::new();
        encoder.encode(b"", &mut wire);
        assert!(wire.is_empty(), "an empty write emits nothing");
        encoder.encode(b"hello", &mut wire);
        assert_eq!(
            hex::encode(&wire),
            "ff060000734e6150705901090000bb1f1c1968656c6c6f"
        );
        let mut out = Vec::new();
        SnappyDecoder::new().decode(&wire, &mut out).unwrap();
        assert_eq!(out, b"hello");
    }

    #[test]
    fn skips_padding_byte_by_byte() {
        let mut wire = STREAM_IDENTIFIER.to_vec();
        wire.extend_from_slice(&[0xfe, 3, 0, 0, 9, 9, 9]);
        SnappyEncoder {
            wrote_stream_identifier: true,
            ..SnappyEncoder::new()
        }
        .encode(b"abc", &mut wire);
        let mut decoder = SnappyDecoder::new();
        let mut out = Vec::new();
        for byte in &wire {
            decoder
                .decode(std::slice::from_ref(byte), &mut out)
                .unwrap();
        }
        decoder.finish().unwrap();
        assert_eq!(out, b"abc");
    }

    #[test]
    fn errors_are_sticky() {
        let mut decoder = SnappyDecoder::new();
        let mut out = Vec::new();
        let err = decoder.decode(b"\x01", &mut out).unwrap_err();
        assert_eq!(err, SnappyError::MissingStreamIdentifier(1));
        assert_eq!(decoder.decode(STREAM_IDENTIFIER, &mut out), Err(err));
    }
}
