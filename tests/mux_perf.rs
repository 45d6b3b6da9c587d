//! Loopback throughput of our yamux sessions. Ignored by default; run with
//! `cargo test --release --test mux_perf -- --ignored --nocapture`.

use futures_lite::future;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use stcp_engine::mux::{Mode, MuxConfig, Session};
use std::time::Instant;

fn run<G, F>(f: G)
where
    G: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

async fn pair(cfg: MuxConfig) -> (Session, Session) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (a, b) = future::zip(l.accept(), TcpStream::connect(addr)).await;
    (
        Session::new(b.unwrap(), Mode::Client, cfg.clone()),
        Session::new(a.unwrap(), Mode::Server, cfg),
    )
}

/// Push `total` bytes over `streams` streams; returns MB/s.
async fn push(cli: &Session, srv: &Session, streams: usize, total: usize) -> f64 {
    let per = total / streams;
    let srv = srv.clone();
    let sink = glommio::spawn_local(async move {
        let mut tasks = vec![];
        for _ in 0..streams {
            let mut s = srv.accept().await.unwrap();
            tasks.push(glommio::spawn_local(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let mut n = 0;
                loop {
                    let r = s.read(&mut buf).await.unwrap();
                    if r == 0 {
                        break;
                    }
                    n += r;
                }
                n
            }));
        }
        let mut n = 0;
        for t in tasks {
            n += t.await;
        }
        n
    });
    let start = Instant::now();
    let mut tasks = vec![];
    for _ in 0..streams {
        let cli = cli.clone();
        tasks.push(glommio::spawn_local(async move {
            let mut s = cli.open().await.unwrap();
            let chunk = vec![0x5au8; 256 * 1024];
            let mut left = per;
            while left > 0 {
                let n = left.min(chunk.len());
                s.write_all(&chunk[..n]).await.unwrap();
                left -= n;
            }
            s.close().await.unwrap();
        }));
    }
    for t in tasks {
        t.await;
    }
    let got = sink.await;
    assert_eq!(got, per * streams);
    got as f64 / start.elapsed().as_secs_f64() / 1e6
}

#[test]
#[ignore]
fn throughput() {
    run(|| async {
        let (cli, srv) = pair(MuxConfig::default()).await;
        for (streams, total) in [
            (1, 2usize << 30),
            (1, 2 << 30),
            (16, 2 << 30),
            (1000, 1 << 30),
        ] {
            let mbs = push(&cli, &srv, streams, total).await;
            println!("{streams:>5} stream(s), {} MiB: {mbs:.0} MB/s", total >> 20);
        }
    });
}
