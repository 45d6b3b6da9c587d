//! The spliced relay (`conn::join_fast` between plain TCP legs): bytes arrive complete
//! and in order in both directions, with handshake leftovers in front, through a reader
//! that lags far behind (the destination-full path), and through boxed streams; legs
//! with a transform still take the copying path. Each test bounds its own time.

use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use stcp_engine::codec::CipherKey;
use stcp_engine::conn::{join_fast, Io, JoinStats, Transform};

const DEADLINE: Duration = Duration::from_secs(60);

/// Byte `i` of stream `seed`: order mistakes and lost or doubled bytes all show.
fn pattern(seed: u64, i: u64) -> u8 {
    let x = (i ^ seed.rotate_left(17)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8
}

async fn socket_pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let addr = listener.local_addr().expect("bound");
    let (client, server) =
        futures_lite::future::zip(TcpStream::connect(addr), listener.accept()).await;
    (client.expect("connect"), server.expect("accept"))
}

async fn send(to: &mut TcpStream, seed: u64, len: u64) {
    let mut buf = vec![0u8; 48 * 1024 + 7]; // odd size: chunk edges move around
    let mut at = 0u64;
    while at < len {
        let n = (buf.len() as u64).min(len - at) as usize;
        for (k, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern(seed, at + k as u64);
        }
        to.write_all(&buf[..n]).await.expect("write into the relay");
        at += n as u64;
    }
}

/// Reads `pre` then `len` pattern bytes, checking every one. With `lag`, reads are small and slow, so the relay's destination fills.
async fn receive(from: &mut TcpStream, pre: &[u8], seed: u64, len: u64, lag: bool) -> u64 {
    let mut buf = vec![0u8; if lag { 4096 } else { 64 * 1024 }];
    let total = pre.len() as u64 + len;
    let mut got = 0u64;
    while got < total {
        let want_now = (buf.len() as u64).min(total - got) as usize;
        let n = from
            .read(&mut buf[..want_now])
            .await
            .expect("read from the relay");
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            let want = if got < pre.len() as u64 {
                pre[got as usize]
            } else {
                pattern(seed, got - pre.len() as u64)
            };
            assert_eq!(b, want, "byte {got} of {total} differs");
            got += 1;
        }
        if lag && got % (256 * 1024) < n as u64 {
            glommio::timer::sleep(Duration::from_millis(2)).await;
        }
    }
    got
}

/// A relay between two fresh loopback pairs: returns a's peer, b's peer and the relay.
async fn spawn_relay(
    ab: Transform,
    a_pre: &[u8],
    b_pre: &[u8],
) -> (TcpStream, TcpStream, glommio::Task<JoinStats>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let (near, a) = socket_pair(&listener).await;
    let (b, far) = socket_pair(&listener).await;
    let relay = glommio::spawn_local(join_fast(
        a,
        b,
        a_pre.to_vec(),
        b_pre.to_vec(),
        ab,
        Transform::plain(),
    ));
    (near, far, relay)
}

/// A second glommio stream on a dup of `s`'s socket, so one task can write while
/// another reads.
fn writer_half(s: &TcpStream) -> TcpStream {
    // SAFETY: dup gives a new fd that only the returned stream owns.
    unsafe {
        let d = libc::dup(std::os::fd::AsRawFd::as_raw_fd(s));
        assert!(d >= 0, "dup failed");
        std::os::fd::FromRawFd::from_raw_fd(d)
    }
}

/// Runs `test` on a fresh executor, failing it after DEADLINE.
fn on_executor<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(
    test: impl FnOnce() -> F + Send + 'static,
) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("splice-test")
        .spawn(move || async move {
            futures_lite::future::or(async { Some(test().await) }, async {
                glommio::timer::sleep(DEADLINE).await;
                None
            })
            .await
            .expect("the relay test did not finish within its deadline")
        })
        .expect("executor")
        .join()
        .expect("executor thread")
}

const PRE: &[u8] = b"bytes read before the relay";

/// writer -> [a | relay | b] -> reader, with PRE as a's leftover; returns the relay's
/// stats and what the reader got. `a`/`b` go through `wrap` (e.g. a Box<dyn Io>).
fn relay_one_way<A: Io, B: Io>(
    wrap_a: fn(TcpStream) -> A,
    wrap_b: fn(TcpStream) -> B,
    ab: fn() -> Transform,
    len: u64,
    lag: bool,
) -> (JoinStats, u64) {
    on_executor(move || async move {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let (writer, a) = socket_pair(&listener).await;
        let (b, mut reader) = socket_pair(&listener).await;
        let relay = glommio::spawn_local(join_fast(
            wrap_a(a),
            wrap_b(b),
            PRE.to_vec(),
            Vec::new(),
            ab(),
            Transform::plain(),
        ));
        let (_, got) = futures_lite::future::zip(
            async {
                let mut w = writer;
                send(&mut w, 1, len).await;
                w.close().await.expect("close");
            },
            receive(&mut reader, PRE, 1, len, lag),
        )
        .await;
        // The writer's EOF ends the relay, which closes b: the reader sees EOF too.
        let stats = relay.await;
        assert_eq!(reader.read(&mut [0u8; 16]).await.expect("read EOF"), 0);
        (stats, got)
    })
}

fn same(s: TcpStream) -> TcpStream {
    s
}

fn boxed(s: TcpStream) -> Box<dyn Io> {
    Box::new(s)
}

#[test]
fn plain_tcp_legs_are_spliced_and_every_byte_arrives_in_order() {
    let len = 48 << 20;
    let (stats, got) = relay_one_way(same, same, Transform::plain, len, false);
    assert!(
        stats.spliced > len / 2,
        "a bulk stream between plain TCP legs should mostly be spliced: {stats:?}"
    );
    assert_eq!(stats.error, None);
    let pre = b"bytes read before the relay".len() as u64;
    assert_eq!(got, pre + len);
    assert_eq!(stats.a_to_b, pre + len);
}

#[test]
fn a_lagging_reader_gets_everything_through_the_full_destination_path() {
    let len = 12 << 20;
    let (stats, got) = relay_one_way(same, same, Transform::plain, len, true);
    assert!(stats.spliced > 0, "{stats:?}");
    assert_eq!(stats.error, None);
    assert_eq!(got, b"bytes read before the relay".len() as u64 + len);
}

#[test]
fn both_directions_at_once_each_with_its_leftover_first() {
    let len = 16u64 << 20;
    let (stats, got_ab, got_ba) = on_executor(move || async move {
        let (mut user, mut far, relay) =
            spawn_relay(Transform::plain(), b"from a", b"from b, longer").await;
        let (mut user_w, mut far_w) = (writer_half(&user), writer_half(&far));
        let (_, (got_ab, got_ba)) = futures_lite::future::zip(
            futures_lite::future::zip(send(&mut user_w, 3, len), send(&mut far_w, 4, len)),
            futures_lite::future::zip(
                receive(&mut far, b"from a", 3, len, false),
                receive(&mut user, b"from b, longer", 4, len, true),
            ),
        )
        .await;
        // Both directions done; one side's EOF ends the relay.
        user_w.close().await.expect("close");
        drop(user_w);
        drop(user);
        (relay.await, got_ab, got_ba)
    });
    assert!(stats.spliced > 0, "{stats:?}");
    assert_eq!(got_ab, 6 + len);
    assert_eq!(got_ba, 14 + len);
    assert_eq!(stats.a_to_b, 6 + len);
    assert_eq!(stats.b_to_a, 14 + len);
}

#[test]
fn boxed_tcp_streams_are_spliced() {
    let len = 8 << 20;
    let (stats, got) = relay_one_way(boxed, boxed, Transform::plain, len, false);
    assert!(
        stats.spliced > 0,
        "a Box<dyn Io> around a TcpStream is still plain TCP"
    );
    assert_eq!(got, b"bytes read before the relay".len() as u64 + len);
}

#[test]
fn a_transformed_direction_falls_back_to_copying() {
    fn sealed() -> Transform {
        // Compression only: what leaves `b` is snappy frames, so no byte check here;
        // the copying path's own tests cover its content.
        Transform::seal(None::<&CipherKey>, true)
    }
    let stats = on_executor(|| async {
        let (mut writer, mut reader, relay) = spawn_relay(sealed(), b"", b"").await;
        writer.write_all(b"hello").await.expect("write");
        writer.close().await.expect("close");
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.expect("read");
        assert!(!out.is_empty());
        relay.await
    });
    assert_eq!(stats.spliced, 0, "a compressing direction must copy");
}

#[test]
fn small_request_response_messages_are_copied_not_spliced() {
    let stats = on_executor(|| async {
        let (mut user, mut service, relay) = spawn_relay(Transform::plain(), b"", b"").await;
        let mut buf = [0u8; 64];
        for round in 0..200u64 {
            let req: Vec<u8> = (0..64).map(|i| pattern(round, i)).collect();
            user.write_all(&req).await.expect("request");
            service.read_exact(&mut buf).await.expect("request through");
            assert_eq!(&buf[..], &req[..], "request {round}");
            buf.reverse();
            service.write_all(&buf).await.expect("response");
            let mut resp = [0u8; 64];
            user.read_exact(&mut resp).await.expect("response through");
            assert_eq!(resp, buf, "response {round}");
        }
        user.close().await.expect("close");
        relay.await
    });
    assert_eq!((stats.a_to_b, stats.b_to_a), (200 * 64, 200 * 64));
    assert_eq!(
        stats.spliced, 0,
        "64-byte messages should take the copy, not two splices"
    );
}

#[test]
fn a_destination_reset_mid_stream_ends_the_relay_with_an_error() {
    let stats = on_executor(|| async {
        let (mut writer, mut reader, relay) = spawn_relay(Transform::plain(), b"", b"").await;
        // Stream until the relay is splicing, then reset the reader's socket (RST).
        let feed = glommio::spawn_local(async move {
            let chunk = vec![7u8; 64 * 1024];
            while writer.write_all(&chunk).await.is_ok() {}
        });
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < 4 << 20 {
            got += reader.read(&mut buf).await.expect("read");
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(&reader);
        // SAFETY: borrows the fd for one setsockopt; the stream still owns it.
        let sock = std::mem::ManuallyDrop::new(unsafe {
            <socket2::Socket as std::os::fd::FromRawFd>::from_raw_fd(fd)
        });
        sock.set_linger(Some(Duration::ZERO)).expect("linger 0");
        drop(reader);
        let stats = relay.await;
        // The relay closed `a`: the feeding writer fails and stops.
        feed.await;
        stats
    });
    assert!(
        stats.error.is_some(),
        "a reset destination is an error: {stats:?}"
    );
    assert!(stats.spliced > 0, "{stats:?}");
}
