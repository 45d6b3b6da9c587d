//! AES-128-CFB streams as golib's `crypto.Writer`/`crypto.Reader` use them (Go
//! `cipher.NewCFBEncrypter`, 128-bit feedback). Each writer sends its random IV in
//! clear right before its first ciphertext; each reader takes the first 16 bytes as IV.
//!
//! Two block-cipher backends give identical output: AES-NI intrinsics on x86-64 CPUs
//! that have them (chosen at run time, so the binary still runs on older CPUs), and
//! the portable `aes` crate everywhere else. See tuning.md, "Codecs", for the numbers.

use std::fmt;
use std::ops::Range;

use aes::cipher::{BlockEncrypt, KeyInit};
use rand::RngCore;

/// Bytes of IV sent before the first ciphertext of each direction.
pub const IV_LEN: usize = 16;

const BLOCK_LEN: usize = 16;
type Block = [u8; BLOCK_LEN];

/// frp overrides golib's default salt ("crypto") with "frp" in client and server.
const KDF_SALT: &[u8] = b"frp";
const KDF_ROUNDS: u32 = 64;

/// An AES-128 key derived from a token or secret key, with its round keys expanded.
/// Derive it once per secret and clone it per connection.
#[derive(Clone)]
pub struct CipherKey {
    key: Block,
    backend: Backend,
}

impl CipherKey {
    /// PBKDF2-HMAC-SHA1(secret, salt "frp", 64 rounds, 16 bytes), as golib does.
    pub fn derive(secret: &[u8]) -> CipherKey {
        let mut key = [0u8; BLOCK_LEN];
        pbkdf2::pbkdf2_hmac::<sha1::Sha1>(secret, KDF_SALT, KDF_ROUNDS, &mut key);
        CipherKey {
            key,
            backend: Backend::fastest(&key),
        }
    }

    pub fn key_bytes(&self) -> [u8; 16] {
        self.key
    }

    /// The same key on the portable backend (for tests and benchmarks).
    pub fn portable(&self) -> CipherKey {
        CipherKey {
            key: self.key,
            backend: Backend::portable(&self.key),
        }
    }

    /// `"aes-ni"` or `"portable"`.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }
}

impl fmt::Debug for CipherKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("CipherKey")
            .field("backend", &self.backend.name())
            .finish_non_exhaustive()
    }
}

/// One direction's writer. Emits its IV once, before the first ciphertext.
pub struct EncryptStream {
    cfb: Cfb,
    iv: Block,
    iv_sent: bool,
}

impl EncryptStream {
    /// A fresh random IV (CSPRNG), as Go's `crypto/rand`.
    pub fn new(key: &CipherKey) -> Self {
        let mut iv = [0u8; IV_LEN];
        rand::thread_rng().fill_bytes(&mut iv);
        Self::with_iv(key, iv)
    }

    pub fn with_iv(key: &CipherKey, iv: [u8; 16]) -> Self {
        EncryptStream {
            cfb: Cfb::new(key.backend.clone(), iv),
            iv,
            iv_sent: false,
        }
    }

    /// Whether the IV has been handed out by `encrypt` already.
    pub fn iv_sent(&self) -> bool {
        self.iv_sent
    }

    /// Encrypts `buf` in place; returns `Some(iv)` exactly on the first call (even an
    /// empty one, as golib's `Writer.Write`): the caller must send it before these bytes.
    pub fn encrypt(&mut self, buf: &mut [u8]) -> Option<[u8; 16]> {
        self.cfb.encrypt(buf);
        if self.iv_sent {
            return None;
        }
        self.iv_sent = true;
        Some(self.iv)
    }
}

/// One direction's reader. The first 16 wire bytes are the IV; they may arrive split
/// across calls.
pub struct DecryptStream {
    backend: Backend,
    iv: Block,
    iv_len: usize,
    cfb: Option<Cfb>,
}

impl DecryptStream {
    pub fn new(key: &CipherKey) -> Self {
        DecryptStream {
            backend: key.backend.clone(),
            iv: [0; IV_LEN],
            iv_len: 0,
            cfb: None,
        }
    }

    /// Decrypts in place and returns the range of `buf` that is now plaintext (IV
    /// bytes are consumed and excluded).
    pub fn decrypt(&mut self, buf: &mut [u8]) -> Range<usize> {
        let mut start = 0;
        let cfb = match &mut self.cfb {
            Some(cfb) => cfb,
            None => {
                start = (IV_LEN - self.iv_len).min(buf.len());
                self.iv[self.iv_len..self.iv_len + start].copy_from_slice(&buf[..start]);
                self.iv_len += start;
                if self.iv_len < IV_LEN {
                    return start..start;
                }
                self.cfb.insert(Cfb::new(self.backend.clone(), self.iv))
            }
        };
        cfb.decrypt(&mut buf[start..]);
        start..buf.len()
    }
}

/// CFB-128 state, mirroring Go's `cfb`: `next` collects the ciphertext that feeds
/// the next keystream block, `keystream[used..]` is what is left of the current one.
struct Cfb {
    backend: Backend,
    next: Block,
    keystream: Block,
    used: usize,
}

impl Cfb {
    fn new(backend: Backend, iv: Block) -> Self {
        Cfb {
            backend,
            next: iv,
            keystream: [0; BLOCK_LEN],
            used: BLOCK_LEN,
        }
    }

    fn encrypt(&mut self, buf: &mut [u8]) {
        self.apply(buf, Direction::Encrypt);
    }

    fn decrypt(&mut self, buf: &mut [u8]) {
        self.apply(buf, Direction::Decrypt);
    }

    fn apply(&mut self, mut buf: &mut [u8], direction: Direction) {
        while !buf.is_empty() {
            if self.used == BLOCK_LEN {
                // Block-aligned: whole blocks go straight through the backend.
                let whole = buf.len() - buf.len() % BLOCK_LEN;
                if whole > 0 {
                    let (blocks, tail) = buf.split_at_mut(whole);
                    self.backend.cfb_blocks(&mut self.next, blocks, direction);
                    buf = tail;
                    continue;
                }
                self.keystream = self.backend.encrypt_block(self.next);
                self.used = 0;
            }
            let n = buf.len().min(BLOCK_LEN - self.used);
            let (part, tail) = buf.split_at_mut(n);
            let keystream = &self.keystream[self.used..self.used + n];
            let next = &mut self.next[self.used..self.used + n];
            for ((byte, k), feedback) in part.iter_mut().zip(keystream).zip(next) {
                let input = *byte;
                *byte ^= k;
                *feedback = match direction {
                    Direction::Encrypt => *byte,
                    Direction::Decrypt => input,
                };
            }
            self.used += n;
            buf = tail;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Encrypt,
    Decrypt,
}

#[derive(Clone)]
enum Backend {
    #[cfg(target_arch = "x86_64")]
    AesNi(aesni::RoundKeys),
    /// Boxed: the crate's key schedule is ~700 bytes and this is the rare fallback.
    Portable(Box<aes::Aes128>),
}

impl Backend {
    fn fastest(key: &Block) -> Backend {
        #[cfg(target_arch = "x86_64")]
        if let Some(round_keys) = aesni::RoundKeys::new(key) {
            return Backend::AesNi(round_keys);
        }
        Backend::portable(key)
    }

    fn portable(key: &Block) -> Backend {
        Backend::Portable(Box::new(aes::Aes128::new(key.into())))
    }

    fn name(&self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Backend::AesNi(_) => "aes-ni",
            Backend::Portable(_) => "portable",
        }
    }

    fn encrypt_block(&self, block: Block) -> Block {
        match self {
            #[cfg(target_arch = "x86_64")]
            Backend::AesNi(keys) => keys.encrypt_block(block),
            Backend::Portable(cipher) => {
                let mut block = block.into();
                cipher.encrypt_block(&mut block);
                block.into()
            }
        }
    }

    /// CFB over whole blocks (`blocks.len()` is a multiple of 16); `feedback` is the
    /// previous ciphertext block (or IV) on entry and the last one on return.
    fn cfb_blocks(&self, feedback: &mut Block, blocks: &mut [u8], direction: Direction) {
        match (self, direction) {
            #[cfg(target_arch = "x86_64")]
            (Backend::AesNi(keys), Direction::Encrypt) => keys.cfb_encrypt(feedback, blocks),
            #[cfg(target_arch = "x86_64")]
            (Backend::AesNi(keys), Direction::Decrypt) => keys.cfb_decrypt(feedback, blocks),
            (Backend::Portable(cipher), Direction::Encrypt) => {
                portable_cfb_encrypt(cipher, feedback, blocks)
            }
            (Backend::Portable(cipher), Direction::Decrypt) => {
                portable_cfb_decrypt(cipher, feedback, blocks)
            }
        }
    }
}

/// Serial by nature: each block's keystream needs the previous ciphertext.
fn portable_cfb_encrypt(cipher: &aes::Aes128, feedback: &mut Block, blocks: &mut [u8]) {
    for chunk in blocks.chunks_exact_mut(BLOCK_LEN) {
        let mut keystream = aes::Block::from(*feedback);
        cipher.encrypt_block(&mut keystream);
        *feedback = xor_block(chunk, &keystream);
        chunk.copy_from_slice(feedback);
    }
}

/// All keystream inputs are known ciphertext, so batches go through the crate's
/// parallel `encrypt_blocks`.
fn portable_cfb_decrypt(cipher: &aes::Aes128, feedback: &mut Block, blocks: &mut [u8]) {
    const BATCH: usize = 32;
    let mut keystream = [aes::Block::default(); BATCH];
    for batch in blocks.chunks_mut(BATCH * BLOCK_LEN) {
        let count = batch.len() / BLOCK_LEN;
        for (k, chunk) in keystream.iter_mut().zip(batch.chunks_exact(BLOCK_LEN)) {
            k.copy_from_slice(feedback);
            feedback.copy_from_slice(chunk);
        }
        cipher.encrypt_blocks(&mut keystream[..count]);
        for (chunk, k) in batch.chunks_exact_mut(BLOCK_LEN).zip(&keystream) {
            let plain = xor_block(chunk, k);
            chunk.copy_from_slice(&plain);
        }
    }
}

/// XOR of two 16-byte blocks as one u128 operation rather than 16 byte operations.
fn xor_block(a: &[u8], b: &[u8]) -> Block {
    let word = |bytes: &[u8]| {
        let mut block = [0u8; BLOCK_LEN];
        block.copy_from_slice(bytes);
        u128::from_ne_bytes(block)
    };
    (word(a) ^ word(b)).to_ne_bytes()
}

#[cfg(target_arch = "x86_64")]
mod aesni {
    //! AES-128 encryption with AES-NI intrinsics. Everything runs inside
    //! `#[target_feature(enable = "aes,sse2")]` functions, so it is compiled for
    //! AES-NI without `-C target-cpu=native`; `RoundKeys` can only be built after a
    //! run-time check that the CPU has the feature, which makes the calls sound.

    use core::arch::x86_64::*;

    use super::{Block, BLOCK_LEN};

    /// Blocks decrypted per loop: enough independent AESENC chains to hide the
    /// instruction's latency.
    const DECRYPT_LANES: usize = 8;

    #[derive(Clone, Copy)]
    pub(super) struct RoundKeys([__m128i; 11]);

    impl RoundKeys {
        /// `None` when the CPU has no AES-NI.
        pub(super) fn new(key: &Block) -> Option<RoundKeys> {
            if !is_x86_feature_detected!("aes") {
                return None;
            }
            // SAFETY: AES-NI was detected above; SSE2 is part of x86-64.
            Some(unsafe { expand_key(key) })
        }

        pub(super) fn encrypt_block(&self, block: Block) -> Block {
            let mut out = [0u8; BLOCK_LEN];
            // SAFETY: `self` exists only if AES-NI was detected; pointers cover 16 bytes.
            unsafe {
                let state = _mm_loadu_si128(block.as_ptr().cast());
                _mm_storeu_si128(out.as_mut_ptr().cast(), encrypt(&self.0, state));
            }
            out
        }

        pub(super) fn cfb_encrypt(&self, feedback: &mut Block, blocks: &mut [u8]) {
            // SAFETY: `self` exists only if AES-NI was detected.
            unsafe { cfb_encrypt(&self.0, feedback, blocks) }
        }

        pub(super) fn cfb_decrypt(&self, feedback: &mut Block, blocks: &mut [u8]) {
            // SAFETY: `self` exists only if AES-NI was detected.
            unsafe { cfb_decrypt(&self.0, feedback, blocks) }
        }
    }

    #[target_feature(enable = "aes,sse2")]
    unsafe fn expand_key(key: &Block) -> RoundKeys {
        // FIPS-197 key schedule; the AESKEYGENASSIST immediate is the round constant.
        macro_rules! round_key {
            ($prev:expr, $rcon:literal) => {
                next_round_key($prev, _mm_aeskeygenassist_si128::<$rcon>($prev))
            };
        }
        let mut keys = [_mm_setzero_si128(); 11];
        keys[0] = _mm_loadu_si128(key.as_ptr().cast());
        keys[1] = round_key!(keys[0], 0x01);
        keys[2] = round_key!(keys[1], 0x02);
        keys[3] = round_key!(keys[2], 0x04);
        keys[4] = round_key!(keys[3], 0x08);
        keys[5] = round_key!(keys[4], 0x10);
        keys[6] = round_key!(keys[5], 0x20);
        keys[7] = round_key!(keys[6], 0x40);
        keys[8] = round_key!(keys[7], 0x80);
        keys[9] = round_key!(keys[8], 0x1b);
        keys[10] = round_key!(keys[9], 0x36);
        RoundKeys(keys)
    }

    #[target_feature(enable = "sse2")]
    unsafe fn next_round_key(prev: __m128i, assist: __m128i) -> __m128i {
        // Each word is XORed with all lower words of `prev`, then with
        // SubWord(RotWord(last word)) ^ rcon from `assist`.
        let mut key = prev;
        key = _mm_xor_si128(key, _mm_slli_si128::<4>(key));
        key = _mm_xor_si128(key, _mm_slli_si128::<8>(key));
        _mm_xor_si128(key, _mm_shuffle_epi32::<0xff>(assist))
    }

    #[inline]
    #[target_feature(enable = "aes,sse2")]
    unsafe fn encrypt(keys: &[__m128i; 11], block: __m128i) -> __m128i {
        let mut state = _mm_xor_si128(block, keys[0]);
        for key in &keys[1..10] {
            state = _mm_aesenc_si128(state, *key);
        }
        _mm_aesenclast_si128(state, keys[10])
    }

    /// Serial, so the latency of the dependency chain is what counts. Folding the
    /// plaintext and the next block's whitening key into AESENCLAST's key operand
    /// (both known in advance) keeps two XORs off that chain:
    /// `next = aesenclast(s, k10 ^ p ^ k0)` is already `ciphertext ^ k0`.
    #[target_feature(enable = "aes,sse2")]
    unsafe fn cfb_encrypt(keys: &[__m128i; 11], feedback: &mut Block, blocks: &mut [u8]) {
        let last_and_first = _mm_xor_si128(keys[10], keys[0]);
        let mut whitened = _mm_xor_si128(_mm_loadu_si128(feedback.as_ptr().cast()), keys[0]);
        for chunk in blocks.chunks_exact_mut(BLOCK_LEN) {
            let plain = _mm_loadu_si128(chunk.as_ptr().cast());
            let final_key = _mm_xor_si128(last_and_first, plain);
            let mut state = whitened;
            for key in &keys[1..10] {
                state = _mm_aesenc_si128(state, *key);
            }
            whitened = _mm_aesenclast_si128(state, final_key);
            _mm_storeu_si128(chunk.as_mut_ptr().cast(), _mm_xor_si128(whitened, keys[0]));
        }
        _mm_storeu_si128(
            feedback.as_mut_ptr().cast(),
            _mm_xor_si128(whitened, keys[0]),
        );
    }

    #[target_feature(enable = "aes,sse2")]
    unsafe fn cfb_decrypt(keys: &[__m128i; 11], feedback: &mut Block, blocks: &mut [u8]) {
        let mut register = _mm_loadu_si128(feedback.as_ptr().cast());
        let mut groups = blocks.chunks_exact_mut(BLOCK_LEN * DECRYPT_LANES);
        for group in &mut groups {
            let ptr = group.as_mut_ptr().cast::<__m128i>();
            // Keystream input of each block is the ciphertext block before it.
            // Ciphertext is re-read from memory (L1) instead of held in registers:
            // 8 states plus 8 ciphertexts would not fit in 16 XMM registers.
            let mut state = [_mm_setzero_si128(); DECRYPT_LANES];
            state[0] = _mm_xor_si128(register, keys[0]);
            for lane in 1..DECRYPT_LANES {
                state[lane] = _mm_xor_si128(_mm_loadu_si128(ptr.add(lane - 1)), keys[0]);
            }
            for key in &keys[1..10] {
                for s in state.iter_mut() {
                    *s = _mm_aesenc_si128(*s, *key);
                }
            }
            register = _mm_loadu_si128(ptr.add(DECRYPT_LANES - 1));
            for (lane, s) in state.iter().enumerate() {
                let keystream = _mm_aesenclast_si128(*s, keys[10]);
                let cipher = _mm_loadu_si128(ptr.add(lane));
                _mm_storeu_si128(ptr.add(lane), _mm_xor_si128(cipher, keystream));
            }
        }
        for chunk in groups.into_remainder().chunks_exact_mut(BLOCK_LEN) {
            let cipher = _mm_loadu_si128(chunk.as_ptr().cast());
            let plain = _mm_xor_si128(cipher, encrypt(keys, register));
            _mm_storeu_si128(chunk.as_mut_ptr().cast(), plain);
            register = cipher;
        }
        _mm_storeu_si128(feedback.as_mut_ptr().cast(), register);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv_0_to_15() -> Block {
        std::array::from_fn(|i| i as u8)
    }

    #[test]
    fn key_derivation_matches_reference() {
        let hex = |key: CipherKey| hex::encode(key.key_bytes());
        assert_eq!(
            hex(CipherKey::derive(b"abc")),
            "62e5ed67fdd04e5f1f71d779ceb9667f"
        );
        assert_eq!(
            hex(CipherKey::derive(b"secret")),
            "8a69215e54aca50e54f738de611a87f9"
        );
        assert_eq!(
            hex(CipherKey::derive(b"")),
            "cdc9dc4c472c37331281df4c232a8407"
        );
    }

    #[test]
    fn debug_hides_key_material() {
        let text = format!("{:?}", CipherKey::derive(b"abc"));
        assert!(!text.contains("62") && !text.contains("98"), "{text}");
    }

    #[test]
    fn encrypted_pings_match_reference() {
        let key = CipherKey::derive(b"abc");
        for key in [key.portable(), key] {
            let mut stream = EncryptStream::with_iv(&key, iv_0_to_15());
            let mut first = *b"h\0\0\0\0\0\0\0\x02{}";
            let mut second = first;
            assert_eq!(stream.encrypt(&mut first), Some(iv_0_to_15()));
            assert_eq!(stream.encrypt(&mut second), None);
            assert_eq!(
                hex::encode([first, second].concat()),
                "c6740161fd1427c7cbb905ea97902f91a4383ad8d082"
            );
        }
    }

    #[test]
    fn backends_agree_on_every_length_and_split() {
        let key = CipherKey::derive(b"secret");
        let plain: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in [0, 1, 15, 16, 17, 127, 128, 129, 143, 1000] {
            let mut outputs = Vec::new();
            for key in [key.portable(), key.clone()] {
                let mut wire = plain[..len].to_vec();
                let (head, tail) = wire.split_at_mut(len / 3);
                let mut stream = EncryptStream::with_iv(&key, [9; 16]);
                stream.encrypt(head);
                stream.encrypt(tail);
                outputs.push(wire.clone());

                let mut reader = DecryptStream::new(&key);
                let mut framed = [&[9u8; 16][..], &wire].concat();
                let (first, rest) = framed.split_at_mut(7.min(len));
                let range = reader.decrypt(first);
                let mut decrypted = first[range].to_vec();
                let range = reader.decrypt(rest);
                decrypted.extend_from_slice(&rest[range]);
                assert_eq!(decrypted, &plain[..len], "{} len {len}", key.backend_name());
            }
            assert_eq!(outputs[0], outputs[1], "len {len}");
        }
    }
}
