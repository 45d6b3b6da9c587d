//! Relay-loop micro-benchmarks: `conn::join` between two loopback TCP socket pairs on one
//! glommio executor, one direction loaded, per mode (plain, encryption, compression,
//! both). MB/s of application payload pushed through one relay.
//! Run: `cargo bench --bench relay` (add `-- encryption` etc. to filter).
//!
//! What it includes: the relay loop, its transform (snappy / AES-CFB in frp's layer
//! order, as the STCP visitor seals toward frps) and four loopback socket operations per
//! chunk (write in, read, write out, read) on the same core. Pure codec costs are in
//! `benches/codec.rs`; the whole chain is `stcp-engine bench`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use stcp_engine::codec::CipherKey;
use stcp_engine::conn::{join, Transform};

/// Payload per iteration: large against connection setup, small enough for quick samples.
const PAYLOAD: usize = 8 * 1024 * 1024;
const WRITE: usize = 64 * 1024;

/// Text-like bytes that snappy shrinks (as in benches/codec.rs), so compression does work.
fn payload_chunk() -> Vec<u8> {
    let words = [
        "frp ", "stcp ", "visitor ", "proxy ", "alice ", "0123 ", "\n",
    ];
    let mut seed = 0x2545_f491u32;
    let mut out = Vec::with_capacity(WRITE);
    while out.len() < WRITE {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        out.extend_from_slice(words[seed as usize % words.len()].as_bytes());
        out.push(seed as u8);
    }
    out.truncate(WRITE);
    out
}

async fn socket_pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let addr = listener.local_addr().expect("bound");
    let (client, server) =
        futures_lite::future::zip(TcpStream::connect(addr), listener.accept()).await;
    let (client, server) = (client.expect("connect"), server.expect("accept"));
    client.set_nodelay(true).expect("nodelay");
    server.set_nodelay(true).expect("nodelay");
    (client, server)
}

/// Time to push `iters` x PAYLOAD bytes: writer -> [a | join | b] -> reader.
fn relay_time(iters: u64, encryption: bool, compression: bool) -> Duration {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("relay-bench")
        .spawn(move || async move {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let key = CipherKey::derive(b"bench-secret");
            let chunk = payload_chunk();
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (mut writer, a) = socket_pair(&listener).await;
                let (b, mut reader) = socket_pair(&listener).await;
                let k = encryption.then_some(&key);
                let relay = glommio::spawn_local(join(
                    a,
                    b,
                    Vec::new(),
                    Vec::new(),
                    Transform::seal(k, compression),
                    Transform::open(k, compression),
                ));
                let start = Instant::now();
                let write = async {
                    let mut sent = 0;
                    while sent < PAYLOAD {
                        writer.write_all(&chunk).await.expect("write");
                        sent += chunk.len();
                    }
                    writer.close().await.expect("close");
                };
                let read = async {
                    let mut buf = vec![0u8; 256 * 1024];
                    while reader.read(&mut buf).await.expect("read") > 0 {}
                };
                futures_lite::future::zip(write, read).await;
                total += start.elapsed();
                relay.await;
            }
            total
        })
        .expect("executor")
        .join()
        .expect("bench executor")
}

fn relay(c: &mut Criterion) {
    let mut group = c.benchmark_group("relay");
    group.throughput(Throughput::Bytes(PAYLOAD as u64));
    for (name, enc, comp) in [
        ("plain", false, false),
        ("encryption", true, false),
        ("compression", false, true),
        ("encryption+compression", true, true),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| relay_time(iters, enc, comp))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    targets = relay
}
criterion_main!(benches);
