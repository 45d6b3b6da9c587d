//! Payload codecs: AES-128-CFB streams and snappy framing (no I/O).
