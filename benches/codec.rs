//! Codec micro-benchmarks: frames (messages/s), AES-128-CFB and snappy (MB/s).
//! Run: `cargo bench --bench codec` (add `-- cfb` etc. to filter).

use std::hint::black_box;
use std::time::Duration;

use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use stcp_engine::codec::{CipherKey, DecryptStream, EncryptStream, SnappyDecoder, SnappyEncoder};
use stcp_engine::proto::{decode_frame, encode_frame, Login, Message, NewVisitorConn, Ping};

const CHUNK: usize = 16 * 1024;

fn frames(c: &mut Criterion) {
    let messages: [(&str, Message); 3] = [
        ("ping", Ping::default().into()),
        (
            "login",
            Login {
                version: "0.70.1".into(),
                hostname: "myhost".into(),
                os: "linux".into(),
                arch: "amd64".into(),
                user: "alice".into(),
                privilege_key: "22bd6333f840eeeee03ad14f75fd96ac".into(),
                timestamp: 1_700_000_000,
                pool_count: 1,
                ..Login::default()
            }
            .into(),
        ),
        (
            "new_visitor_conn",
            NewVisitorConn {
                run_id: "0123456789abcdef".into(),
                proxy_name: "alice.ssh".into(),
                sign_key: "e37729af62f40f134311cffbc230178e".into(),
                timestamp: 1_700_000_000,
                use_encryption: true,
                ..NewVisitorConn::default()
            }
            .into(),
        ),
    ];
    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Elements(1));
    for (name, msg) in &messages {
        let mut out = Vec::with_capacity(512);
        group.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| {
                out.clear();
                encode_frame(black_box(msg), &mut out);
            })
        });
        encode_frame(msg, &mut out);
        let wire = out.clone();
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| decode_frame(black_box(&wire)))
        });
    }
    group.finish();
}

fn cfb(c: &mut Criterion) {
    let key = CipherKey::derive(b"abc");
    let iv = [7u8; 16];
    let mut group = c.benchmark_group("cfb");
    group.throughput(Throughput::Bytes(CHUNK as u64));
    let mut buf = vec![0x5a; CHUNK];
    for key in [key.clone(), key.portable()] {
        let backend = key.backend_name();
        let mut writer = EncryptStream::with_iv(&key, iv);
        group.bench_function(format!("encrypt/{backend}"), |b| {
            b.iter(|| writer.encrypt(black_box(&mut buf)))
        });
        let mut reader = DecryptStream::new(&key);
        reader.decrypt(&mut [0; 16]);
        group.bench_function(format!("decrypt/{backend}"), |b| {
            b.iter(|| reader.decrypt(black_box(&mut buf)))
        });
    }
    // The RustCrypto `cfb-mode` crate, for comparison (whole-buffer API).
    let raw_key = key.key_bytes();
    group.bench_function("encrypt/cfb-mode", |b| {
        b.iter_batched(
            || cfb_mode::Encryptor::<aes::Aes128>::new(&raw_key.into(), &iv.into()),
            |cipher| cipher.encrypt(black_box(&mut buf)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("decrypt/cfb-mode", |b| {
        b.iter_batched(
            || cfb_mode::Decryptor::<aes::Aes128>::new(&raw_key.into(), &iv.into()),
            |cipher| cipher.decrypt(black_box(&mut buf)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Text-like bytes that snappy shrinks by about 2-3x.
fn compressible() -> Vec<u8> {
    let words = [
        "frp ", "stcp ", "visitor ", "proxy ", "alice ", "0123 ", "\n",
    ];
    let mut seed = 0x2545_f491u32;
    let mut out = Vec::with_capacity(CHUNK);
    while out.len() < CHUNK {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        out.extend_from_slice(words[seed as usize % words.len()].as_bytes());
        out.push(seed as u8);
    }
    out.truncate(CHUNK);
    out
}

fn incompressible() -> Vec<u8> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    (0..CHUNK)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

fn snappy(c: &mut Criterion) {
    let mut group = c.benchmark_group("snappy");
    group.throughput(Throughput::Bytes(CHUNK as u64));
    for (name, data) in [
        ("compressible", compressible()),
        ("incompressible", incompressible()),
    ] {
        let mut encoder = SnappyEncoder::new();
        let mut wire = Vec::with_capacity(2 * CHUNK);
        encoder.encode(&data, &mut wire);
        eprintln!(
            "snappy/{name}: {} -> {} bytes per chunk",
            data.len(),
            wire.len() - 10
        );
        group.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| {
                wire.clear();
                encoder.encode(black_box(&data), &mut wire);
            })
        });
        let chunk = wire.clone();
        let mut decoder = SnappyDecoder::new();
        decoder
            .decode(b"\xff\x06\x00\x00sNaPpY", &mut Vec::new())
            .unwrap();
        let mut out = Vec::with_capacity(2 * CHUNK);
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| {
                out.clear();
                decoder.decode(black_box(&chunk), &mut out)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    targets = frames, cfb, snappy
}
criterion_main!(benches);
