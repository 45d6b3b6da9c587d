//! The wire protocol v2 control channel crypto (no I/O): transcript hash, HKDF-SHA256
//! direction keys (`frp:pkg/util/net/conn.go`) and golib's framed AEAD stream
//! (`golib:crypto/aead_stream.go`).
//!
//! Per direction the writer sends its random stream nonce (12 B for AES-256-GCM, 24 B
//! for XChaCha20-Poly1305) once, then frames `u32 BE (plaintext_len + 16)` ‖
//! `Seal(nonce, plaintext, AAD = streamNonce ‖ that 4-byte header)`. The frame nonce
//! starts at the stream nonce and increments big-endian by one per frame.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce as GcmNonce};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};

pub const KEY_LEN: usize = 32;
pub const TAG_LEN: usize = 16;
/// golib's `DefaultAEADMaxPayloadSize`: plaintext per frame.
pub const MAX_PLAINTEXT: usize = 64 * 1024;
const HEADER_LEN: usize = 4;
/// golib limits one AES-GCM stream to 2^32 frames (random 96-bit nonces).
const MAX_GCM_FRAMES: u64 = 1 << 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AeadAlgorithm {
    Aes256Gcm,
    XChaCha20Poly1305,
}

impl AeadAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            AeadAlgorithm::Aes256Gcm => "aes-256-gcm",
            AeadAlgorithm::XChaCha20Poly1305 => "xchacha20-poly1305",
        }
    }

    pub fn from_name(name: &str) -> Option<AeadAlgorithm> {
        match name {
            "aes-256-gcm" => Some(AeadAlgorithm::Aes256Gcm),
            "xchacha20-poly1305" => Some(AeadAlgorithm::XChaCha20Poly1305),
            _ => None,
        }
    }

    pub fn nonce_len(self) -> usize {
        match self {
            AeadAlgorithm::Aes256Gcm => 12,
            AeadAlgorithm::XChaCha20Poly1305 => 24,
        }
    }

    /// frpc's order (`PreferredAEADAlgorithms`): AES-GCM first where the CPU has AES
    /// and carry-less multiply, XChaCha first otherwise.
    pub fn preferred() -> [&'static str; 2] {
        let gcm = AeadAlgorithm::Aes256Gcm.name();
        let xchacha = AeadAlgorithm::XChaCha20Poly1305.name();
        if fast_aes_gcm() {
            [gcm, xchacha]
        } else {
            [xchacha, gcm]
        }
    }
}

fn fast_aes_gcm() -> bool {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
            && std::arch::is_x86_feature_detected!("sse4.1")
            && std::arch::is_x86_feature_detected!("ssse3")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64")))]
    {
        false
    }
}

/// `HashCryptoTranscript`: SHA-256 over a label and both hello payloads as sent.
pub fn transcript_hash(client_hello: &[u8], server_hello: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"frp wire v2 crypto transcript");
    for (label, payload) in [
        (&b"client hello"[..], client_hello),
        (&b"server hello"[..], server_hello),
    ] {
        h.update([0]);
        h.update(label);
        h.update([0]);
        h.update((payload.len() as u64).to_be_bytes());
        h.update(payload);
    }
    h.finalize().into()
}

/// The two direction keys of one control connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlKeys {
    pub client_to_server: [u8; KEY_LEN],
    pub server_to_client: [u8; KEY_LEN],
}

/// `deriveAEADControlKeys`: HKDF-SHA256(ikm = token, salt = transcript hash,
/// info = "frp wire v2 control aead <alg> <direction>").
pub fn control_keys(token: &[u8], algorithm: AeadAlgorithm, transcript: &[u8]) -> ControlKeys {
    let hk = Hkdf::<Sha256>::new(Some(transcript), token);
    let derive = |direction: &str| {
        let info = format!("frp wire v2 control aead {} {direction}", algorithm.name());
        let mut key = [0u8; KEY_LEN];
        hk.expand(info.as_bytes(), &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        key
    };
    ControlKeys {
        client_to_server: derive("client-to-server"),
        server_to_client: derive("server-to-client"),
    }
}

/// Errors are fatal to the stream (golib remembers the first one).
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum AeadError {
    #[error("aead stream ciphertext length {0} is smaller than overhead {TAG_LEN}")]
    TooShort(u32),
    #[error("aead stream ciphertext length {0} exceeds limit {limit}", limit = MAX_PLAINTEXT + TAG_LEN)]
    TooLong(u32),
    #[error(
        "aead stream frame {0} failed authentication (wrong key, or corrupted or reordered data)"
    )]
    Auth(u64),
    #[error("aead stream frame counter exhausted")]
    NonceExhausted,
    #[error("aead stream frame count limit {MAX_GCM_FRAMES} exceeded")]
    FrameLimit,
}

enum Cipher {
    Gcm(Box<Aes256Gcm>),
    XChaCha(Box<XChaCha20Poly1305>),
}

impl Cipher {
    fn new(algorithm: AeadAlgorithm, key: &[u8; KEY_LEN]) -> Cipher {
        match algorithm {
            AeadAlgorithm::Aes256Gcm => Cipher::Gcm(Box::new(Aes256Gcm::new(key.into()))),
            AeadAlgorithm::XChaCha20Poly1305 => {
                Cipher::XChaCha(Box::new(XChaCha20Poly1305::new(key.into())))
            }
        }
    }

    /// Encrypts `buf` in place and returns the tag.
    fn seal(&self, nonce: &[u8], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = match self {
            Cipher::Gcm(c) => c.encrypt_in_place_detached(GcmNonce::from_slice(nonce), aad, buf),
            Cipher::XChaCha(c) => c.encrypt_in_place_detached(XNonce::from_slice(nonce), aad, buf),
        };
        tag.expect("frames are at most 64 KiB, far below the AEAD length limits")
            .into()
    }

    fn open(&self, nonce: &[u8], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> bool {
        match self {
            Cipher::Gcm(c) => c
                .decrypt_in_place_detached(GcmNonce::from_slice(nonce), aad, buf, tag.into())
                .is_ok(),
            Cipher::XChaCha(c) => c
                .decrypt_in_place_detached(XNonce::from_slice(nonce), aad, buf, tag.into())
                .is_ok(),
        }
    }
}

/// Increments `nonce` big-endian; false when it wrapped to zero.
fn increment(nonce: &mut [u8]) -> bool {
    for byte in nonce.iter_mut().rev() {
        *byte = byte.wrapping_add(1);
        if *byte != 0 {
            return true;
        }
    }
    false
}

/// State shared by both directions: the cipher, the fixed stream nonce and the
/// per-frame nonce.
struct FrameCounter {
    cipher: Cipher,
    stream_nonce: Vec<u8>,
    nonce: Vec<u8>,
    frames: u64,
    max_frames: Option<u64>,
}

impl FrameCounter {
    fn new(algorithm: AeadAlgorithm, key: &[u8; KEY_LEN], stream_nonce: &[u8]) -> FrameCounter {
        FrameCounter {
            cipher: Cipher::new(algorithm, key),
            stream_nonce: stream_nonce.to_vec(),
            nonce: stream_nonce.to_vec(),
            frames: 0,
            max_frames: (algorithm == AeadAlgorithm::Aes256Gcm).then_some(MAX_GCM_FRAMES),
        }
    }

    fn aad(&self, header: &[u8; HEADER_LEN]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(self.stream_nonce.len() + HEADER_LEN);
        aad.extend_from_slice(&self.stream_nonce);
        aad.extend_from_slice(header);
        aad
    }

    fn check_limit(&self) -> Result<(), AeadError> {
        match self.max_frames {
            Some(max) if self.frames >= max => Err(AeadError::FrameLimit),
            _ => Ok(()),
        }
    }

    fn advance(&mut self) -> Result<(), AeadError> {
        self.frames += 1;
        if increment(&mut self.nonce) {
            Ok(())
        } else {
            Err(AeadError::NonceExhausted)
        }
    }
}

/// The sending half (`AEADStreamWriter`).
pub struct AeadSealer {
    counter: FrameCounter,
    nonce_sent: bool,
}

impl AeadSealer {
    /// With a fresh random stream nonce, as golib does.
    pub fn new(algorithm: AeadAlgorithm, key: &[u8; KEY_LEN]) -> AeadSealer {
        let mut nonce = vec![0u8; algorithm.nonce_len()];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        AeadSealer::with_stream_nonce(algorithm, key, &nonce)
    }

    /// With a given stream nonce (tests and vectors). Panics on a wrong nonce length.
    pub fn with_stream_nonce(
        algorithm: AeadAlgorithm,
        key: &[u8; KEY_LEN],
        stream_nonce: &[u8],
    ) -> AeadSealer {
        assert_eq!(
            stream_nonce.len(),
            algorithm.nonce_len(),
            "stream nonce length"
        );
        AeadSealer {
            counter: FrameCounter::new(algorithm, key, stream_nonce),
            nonce_sent: false,
        }
    }

    /// Appends the sealed form of `plaintext` to `out`: the stream nonce before the
    /// first frame, then one frame per 64 KiB. An empty write sends nothing.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), AeadError> {
        for chunk in plaintext.chunks(MAX_PLAINTEXT) {
            self.counter.check_limit()?;
            if !self.nonce_sent {
                out.extend_from_slice(&self.counter.stream_nonce);
                self.nonce_sent = true;
            }
            let header = ((chunk.len() + TAG_LEN) as u32).to_be_bytes();
            out.extend_from_slice(&header);
            let body = out.len();
            out.extend_from_slice(chunk);
            let aad = self.counter.aad(&header);
            let tag = self
                .counter
                .cipher
                .seal(&self.counter.nonce, &aad, &mut out[body..]);
            out.extend_from_slice(&tag);
            self.counter.advance()?;
        }
        Ok(())
    }
}

/// The receiving half (`AEADStreamReader`), incremental: feed it whatever arrived.
pub struct AeadOpener {
    algorithm: AeadAlgorithm,
    key: [u8; KEY_LEN],
    counter: Option<FrameCounter>,
    pending: Vec<u8>,
    failed: Option<AeadError>,
}

impl AeadOpener {
    pub fn new(algorithm: AeadAlgorithm, key: &[u8; KEY_LEN]) -> AeadOpener {
        AeadOpener {
            algorithm,
            key: *key,
            counter: None,
            pending: Vec::new(),
            failed: None,
        }
    }

    /// Takes `input` (any split of the stream) and appends the plaintext of every
    /// frame it completes to `plain`. A partial frame waits for the next call.
    pub fn open(&mut self, input: &[u8], plain: &mut Vec<u8>) -> Result<(), AeadError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        self.pending.extend_from_slice(input);
        let result = self.drain(plain);
        if let Err(err) = &result {
            self.failed = Some(err.clone());
            self.pending.clear();
        }
        result
    }

    fn drain(&mut self, plain: &mut Vec<u8>) -> Result<(), AeadError> {
        let mut at = 0;
        let result = loop {
            let rest = &self.pending[at..];
            let counter = match &mut self.counter {
                Some(c) => c,
                None => {
                    let n = self.algorithm.nonce_len();
                    if rest.len() < n {
                        break Ok(());
                    }
                    at += n;
                    self.counter
                        .insert(FrameCounter::new(self.algorithm, &self.key, &rest[..n]))
                }
            };
            let rest = &self.pending[at..];
            let Some(header) = rest.first_chunk::<HEADER_LEN>() else {
                break Ok(());
            };
            let header = *header;
            if let Err(e) = counter.check_limit() {
                break Err(e);
            }
            let len = u32::from_be_bytes(header);
            if (len as usize) < TAG_LEN {
                break Err(AeadError::TooShort(len));
            }
            if len as usize > MAX_PLAINTEXT + TAG_LEN {
                break Err(AeadError::TooLong(len));
            }
            let frame_end = HEADER_LEN + len as usize;
            if rest.len() < frame_end {
                break Ok(());
            }
            let body_at = plain.len();
            let text_len = len as usize - TAG_LEN;
            plain.extend_from_slice(&rest[HEADER_LEN..HEADER_LEN + text_len]);
            let tag = &rest[HEADER_LEN + text_len..frame_end];
            let aad = counter.aad(&header);
            if !counter
                .cipher
                .open(&counter.nonce, &aad, &mut plain[body_at..], tag)
            {
                plain.truncate(body_at);
                break Err(AeadError::Auth(counter.frames));
            }
            if let Err(e) = counter.advance() {
                break Err(e);
            }
            at += frame_end;
        };
        self.pending.drain(..at);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const CLIENT_HELLO: &str = r#"{"bootstrap":{"transport":"tcp","tls":true,"tcpMux":true},"capabilities":{"message":{"codecs":["json"]},"crypto":{"algorithms":["aes-256-gcm","xchacha20-poly1305"],"clientRandom":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}}"#;
    const SERVER_HELLO: &str = r#"{"selected":{"message":{"codec":"json"},"crypto":{"algorithm":"aes-256-gcm","serverRandom":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}}}"#;

    /// frp-protocol.md appendix A's vector.
    #[test]
    fn transcript_and_keys_match_the_reference_vector() {
        let hash = transcript_hash(CLIENT_HELLO.as_bytes(), SERVER_HELLO.as_bytes());
        assert_eq!(
            hash.to_vec(),
            unhex("580bcd9a4a7a6d6197e37105a0019acb880d3c1ae0660a2521bc028dcec8364a")
        );
        let keys = control_keys(b"abc", AeadAlgorithm::Aes256Gcm, &hash);
        assert_eq!(
            keys.client_to_server.to_vec(),
            unhex("6602b6fded8f7226f2c47469785f3eeaea8615d386447a251728bdb74b5a5981")
        );
        assert_eq!(
            keys.server_to_client.to_vec(),
            unhex("efd1dc20ea842650115bb641a787b4374bdd201aefb0ef90ee55e7c06632092e")
        );
    }

    fn test_key() -> [u8; KEY_LEN] {
        std::array::from_fn(|i| i as u8)
    }

    /// Two writes on one AES-256-GCM stream, computed independently with python's
    /// `cryptography` (AESGCM; AAD = stream nonce ‖ header; nonce + 1 per frame).
    #[test]
    fn gcm_frames_match_an_independent_implementation() {
        let nonce = unhex("a0a1a2a3a4a5a6a7a8a9aaab");
        let mut sealer =
            AeadSealer::with_stream_nonce(AeadAlgorithm::Aes256Gcm, &test_key(), &nonce);
        let mut wire = Vec::new();
        sealer.seal(b"hello", &mut wire).unwrap();
        sealer.seal(b"world!", &mut wire).unwrap();
        assert_eq!(
            wire,
            unhex(
                "a0a1a2a3a4a5a6a7a8a9aaab000000158e7d10412afb2cd3bbaa5ada23301c230a3a1529\
                 1400000016aca339764fd57f124aa96f22bb1f0a6237842292523d"
            )
        );
    }

    fn round_trip(algorithm: AeadAlgorithm) {
        let key = test_key();
        let mut sealer = AeadSealer::new(algorithm, &key);
        let mut wire = Vec::new();
        let writes: Vec<Vec<u8>> = vec![
            b"a".to_vec(),
            vec![7; MAX_PLAINTEXT + 3], // two frames
            Vec::new(),                 // nothing on the wire
            (0..1000u32).map(|i| i as u8).collect(),
        ];
        for w in &writes {
            sealer.seal(w, &mut wire).unwrap();
        }
        assert_eq!(
            wire.len(),
            algorithm.nonce_len() + 4 * (HEADER_LEN + TAG_LEN) + writes.concat().len()
        );
        // Feed it back in awkward pieces: the plaintext must come out whole.
        let mut opener = AeadOpener::new(algorithm, &key);
        let mut plain = Vec::new();
        for piece in wire.chunks(997) {
            opener.open(piece, &mut plain).unwrap();
        }
        assert_eq!(plain, writes.concat());
    }

    #[test]
    fn both_algorithms_round_trip_across_any_split() {
        round_trip(AeadAlgorithm::Aes256Gcm);
        round_trip(AeadAlgorithm::XChaCha20Poly1305);
    }

    fn sealed(algorithm: AeadAlgorithm, writes: &[&[u8]]) -> Vec<u8> {
        let mut sealer = AeadSealer::new(algorithm, &test_key());
        let mut wire = Vec::new();
        for w in writes {
            sealer.seal(w, &mut wire).unwrap();
        }
        wire
    }

    #[test]
    fn corrupt_input_is_refused_and_stays_refused() {
        for algorithm in [AeadAlgorithm::Aes256Gcm, AeadAlgorithm::XChaCha20Poly1305] {
            let n = algorithm.nonce_len();
            let wire = sealed(algorithm, &[b"first", b"second"]);
            let second_header = n + HEADER_LEN + 5 + TAG_LEN;
            let headers = [n..n + HEADER_LEN, second_header..second_header + HEADER_LEN];
            // Every flipped byte is caught; only a longer length in a header can
            // instead leave the reader waiting for bytes that never come.
            for i in 0..wire.len() {
                let mut bad = wire.clone();
                bad[i] ^= 0x40;
                let mut opener = AeadOpener::new(algorithm, &test_key());
                let mut plain = Vec::new();
                let got = opener.open(&bad, &mut plain);
                assert!(
                    b"firstsecond".starts_with(&plain) && plain.len() < 11,
                    "{algorithm:?}: flip at {i} let unauthenticated bytes out: {plain:?}"
                );
                if headers.iter().any(|h| h.contains(&i)) && got.is_ok() {
                    continue;
                }
                assert!(got.is_err(), "{algorithm:?}: flip at {i} accepted");
                // The error sticks, even for good bytes afterwards.
                assert!(opener.open(&wire, &mut plain).is_err());
            }
            // Reordered frames fail (the nonce binds the order).
            let first_len = HEADER_LEN + 5 + TAG_LEN;
            let mut swapped = wire[..n].to_vec();
            swapped.extend_from_slice(&wire[n + first_len..]);
            swapped.extend_from_slice(&wire[n..n + first_len]);
            let mut opener = AeadOpener::new(algorithm, &test_key());
            assert_eq!(
                opener.open(&swapped, &mut Vec::new()),
                Err(AeadError::Auth(0))
            );
            // The wrong key fails on the first frame.
            let mut opener = AeadOpener::new(algorithm, &[9; KEY_LEN]);
            assert_eq!(opener.open(&wire, &mut Vec::new()), Err(AeadError::Auth(0)));
        }
        let mut opener = AeadOpener::new(AeadAlgorithm::Aes256Gcm, &test_key());
        let mut bad = vec![0u8; 12];
        bad.extend_from_slice(&5u32.to_be_bytes());
        assert_eq!(
            opener.open(&bad, &mut Vec::new()),
            Err(AeadError::TooShort(5))
        );
        let mut opener = AeadOpener::new(AeadAlgorithm::Aes256Gcm, &test_key());
        let mut bad = vec![0u8; 12];
        bad.extend_from_slice(&(MAX_PLAINTEXT as u32 + 17).to_be_bytes());
        let err = opener.open(&bad, &mut Vec::new()).unwrap_err();
        assert_eq!(err, AeadError::TooLong(65553));
        assert_eq!(
            err.to_string(),
            "aead stream ciphertext length 65553 exceeds limit 65552"
        );
    }

    #[test]
    fn nonce_increments_big_endian_with_carry() {
        let mut n = vec![0, 0x01, 0xff, 0xff];
        assert!(increment(&mut n));
        assert_eq!(n, vec![0, 0x02, 0, 0]);
        let mut n = vec![0xff; 3];
        assert!(!increment(&mut n));
        assert_eq!(n, vec![0; 3]);
        // A stream nonce ending in ff..ff still opens: the carry is the same both ends.
        let nonce = [0xffu8; 12];
        let mut sealer = AeadSealer::with_stream_nonce(AeadAlgorithm::Aes256Gcm, &test_key(), &{
            let mut n = nonce;
            n[0] = 0;
            n
        });
        let mut wire = Vec::new();
        sealer.seal(b"x", &mut wire).unwrap();
        sealer.seal(b"y", &mut wire).unwrap();
        let mut plain = Vec::new();
        AeadOpener::new(AeadAlgorithm::Aes256Gcm, &test_key())
            .open(&wire, &mut plain)
            .unwrap();
        assert_eq!(plain, b"xy");
    }

    #[test]
    fn algorithm_names_round_trip() {
        for name in AeadAlgorithm::preferred() {
            assert_eq!(AeadAlgorithm::from_name(name).unwrap().name(), name);
        }
        assert_eq!(AeadAlgorithm::from_name("aes-128-gcm"), None);
    }
}
