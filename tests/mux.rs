//! yamux sessions over real glommio TCP loopback sockets: our client against our server,
//! and each of them against a hand-written raw peer that checks exact wire bytes.

use futures_lite::future::{self, poll_once};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::timer::sleep;
use stcp_engine::mux::frame::*;
use stcp_engine::mux::{Mode, MuxConfig, MuxError, Session, Stream};
use std::future::Future;
use std::io::ErrorKind;
use std::time::Duration;

// ---- harness -------------------------------------------------------------------------

/// Run `f` on a fresh glommio executor, failing if it takes longer than `secs`.
fn run<G, F>(secs: u64, f: G)
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || async move {
            future::or(f(), async move {
                sleep(Duration::from_secs(secs)).await;
                panic!("test timed out after {secs}s");
            })
            .await
        })
        .unwrap()
        .join()
        .unwrap();
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (a, b) = future::zip(l.accept(), TcpStream::connect(addr)).await;
    (a.unwrap(), b.unwrap())
}

/// (client, server) sessions over one loopback connection.
async fn session_pair(cfg: MuxConfig) -> (Session, Session) {
    let (a, b) = tcp_pair().await;
    let srv = Session::new(a, Mode::Server, cfg.clone());
    let cli = Session::new(b, Mode::Client, cfg);
    (cli, srv)
}

/// A session of `mode` facing a raw socket we drive by hand.
async fn raw_pair(mode: Mode, cfg: MuxConfig) -> (Session, Raw) {
    let (a, b) = tcp_pair().await;
    (Session::new(a, mode, cfg), Raw(b))
}

fn quiet() -> MuxConfig {
    MuxConfig {
        keepalive_interval: None,
        ..MuxConfig::default()
    }
}

struct Raw(TcpStream);

impl Raw {
    async fn send(&mut self, typ: u8, flags: u16, id: u32, len: u32, body: &[u8]) {
        let mut b = Header::new(typ, flags, id, len).encode().to_vec();
        b.extend_from_slice(body);
        self.0.write_all(&b).await.unwrap();
    }

    async fn frame(&mut self) -> (Header, Vec<u8>) {
        let mut h = [0u8; HEADER_LEN];
        self.0.read_exact(&mut h).await.unwrap();
        let h = Header::decode(&h);
        let mut body = vec![];
        if h.typ == TYPE_DATA {
            body = vec![0; h.length as usize];
            self.0.read_exact(&mut body).await.unwrap();
        }
        (h, body)
    }

    async fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        self.0.read_exact(&mut b).await.unwrap();
        b
    }

    /// Round-trip a ping: everything we sent before it has been processed by the peer.
    /// Returns the frames the peer sent meanwhile.
    async fn sync(&mut self, id: u32) -> Vec<(Header, Vec<u8>)> {
        self.send(TYPE_PING, FLAG_SYN, 0, id, &[]).await;
        let mut seen = vec![];
        loop {
            let f = self.frame().await;
            if f.0 == Header::new(TYPE_PING, FLAG_ACK, 0, id) {
                return seen;
            }
            seen.push(f);
        }
    }

    /// Expect EOF (the session closed the transport).
    async fn eof(&mut self) {
        let mut b = [0u8; 64];
        loop {
            match self.0.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// FNV-1a, enough to compare 64 MiB without keeping a copy.
fn fnv(h: &mut u64, data: &[u8]) {
    for &b in data {
        *h ^= b as u64;
        *h = h.wrapping_mul(0x100_0000_01b3);
    }
}

async fn read_all(s: &mut Stream) -> Vec<u8> {
    let mut v = vec![];
    s.read_to_end(&mut v).await.unwrap();
    v
}

fn err_kind<T: std::fmt::Debug>(r: std::io::Result<T>) -> ErrorKind {
    r.expect_err("expected an error").kind()
}

// ---- our client <-> our server ---------------------------------------------------------

#[test]
fn open_accept_and_echo() {
    run(10, || async {
        let (cli, srv) = session_pair(quiet()).await;
        let mut a = cli.open().await.unwrap();
        assert_eq!(a.id(), 1);
        let b = cli.open().await.unwrap();
        assert_eq!(b.id(), 3);
        a.write_all(b"hello").await.unwrap();
        let mut sa = srv.accept().await.unwrap();
        let sb = srv.accept().await.unwrap();
        assert_eq!((sa.id(), sb.id()), (1, 3));
        let mut buf = [0u8; 5];
        sa.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        // Server-opened streams are even.
        let c = srv.open().await.unwrap();
        assert_eq!(c.id(), 2);
        assert_eq!(cli.accept().await.unwrap().id(), 2);
        sa.write_all(b"world").await.unwrap();
        a.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"world");
        assert!(cli.ping().await.is_ok());
        assert_eq!(cli.num_streams(), 3);
        cli.close();
        assert_eq!(cli.close_reason(), Some(MuxError::SessionClosed));
        srv.closed().await;
        assert_eq!(srv.close_reason(), Some(MuxError::RemoteClosed));
        assert!(srv.accept().await.is_none());
        assert!(matches!(cli.open().await, Err(MuxError::SessionClosed)));
    });
}

/// 64 MiB each way through one stream: exercises window updates and backpressure.
#[test]
fn bulk_echo_64mib() {
    run(120, || async {
        const TOTAL: usize = 64 << 20;
        let (cli, srv) = session_pair(quiet()).await;
        glommio::spawn_local(async move {
            let mut s = srv.accept().await.unwrap();
            let mut buf = vec![0u8; 100_000];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
            s.close().await.unwrap();
        })
        .detach();
        let s = cli.open().await.unwrap();
        let (mut r, mut w) = futures_lite::io::split(s);
        let chunk = pattern(1 << 20, 7);
        let writer = async {
            let mut h = 0xcbf2_9ce4_8422_2325u64;
            for i in 0..TOTAL / chunk.len() {
                let c = &chunk[i % 7..];
                let c = &c[..c.len() - (7 - i % 7)]; // vary the bytes a little
                fnv(&mut h, c);
                w.write_all(c).await.unwrap();
            }
            w.close().await.unwrap();
            h
        };
        let reader = async {
            let mut h = 0xcbf2_9ce4_8422_2325u64;
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0;
            loop {
                let n = r.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                total += n;
                fnv(&mut h, &buf[..n]);
            }
            (h, total)
        };
        let (sent, (got, total)) = future::zip(writer, reader).await;
        assert_eq!(total, TOTAL - 7 * (TOTAL / chunk.len()));
        assert_eq!(sent, got);
        // Both FINs exchanged: the stream is gone on both sides.
        sleep(Duration::from_millis(50)).await;
        assert_eq!(cli.num_streams(), 0);
    });
}

#[test]
fn thousand_concurrent_streams() {
    run(60, || async {
        let (cli, srv) = session_pair(quiet()).await;
        let srv2 = srv.clone();
        glommio::spawn_local(async move {
            while let Some(mut s) = srv2.accept().await {
                glommio::spawn_local(async move {
                    let data = read_all(&mut s).await;
                    s.write_all(&data).await.unwrap();
                    s.close().await.unwrap();
                })
                .detach();
            }
        })
        .detach();
        let mut tasks = vec![];
        for i in 0..1000u64 {
            let cli = cli.clone();
            tasks.push(glommio::spawn_local(async move {
                let mut s = cli.open().await.unwrap();
                let data = pattern(10_000 + i as usize, i);
                s.write_all(&data).await.unwrap();
                s.close().await.unwrap();
                assert_eq!(read_all(&mut s).await, data);
            }));
        }
        for t in tasks {
            t.await;
        }
        sleep(Duration::from_millis(50)).await;
        assert_eq!(cli.num_streams(), 0);
        assert_eq!(srv.num_streams(), 0);
        assert!(!cli.is_closed() && !srv.is_closed());
    });
}

#[test]
fn half_close_semantics() {
    run(10, || async {
        let (cli, srv) = session_pair(quiet()).await;
        let mut a = cli.open().await.unwrap();
        a.write_all(b"request").await.unwrap();
        a.close().await.unwrap();
        // Writing after our FIN fails; reading still works.
        assert_eq!(err_kind(a.write(b"x").await), ErrorKind::BrokenPipe);
        let mut b = srv.accept().await.unwrap();
        assert_eq!(read_all(&mut b).await, b"request");
        assert_eq!(b.read(&mut [0u8; 4]).await.unwrap(), 0); // EOF stays EOF
        b.write_all(b"response").await.unwrap();
        b.close().await.unwrap();
        assert_eq!(read_all(&mut a).await, b"response");
        sleep(Duration::from_millis(20)).await;
        assert_eq!((cli.num_streams(), srv.num_streams()), (0, 0));
    });
}

#[test]
fn session_close_fails_streams() {
    run(10, || async {
        let (cli, srv) = session_pair(quiet()).await;
        let mut a = cli.open().await.unwrap();
        a.write_all(b"x").await.unwrap();
        let mut b = srv.accept().await.unwrap();
        b.write_all(b"buffered").await.unwrap();
        b.flush().await.unwrap();
        sleep(Duration::from_millis(20)).await;
        cli.close();
        // Buffered data first, then an error (no FIN was seen: not a clean EOF).
        let mut buf = [0u8; 8];
        a.read_exact(&mut buf).await.unwrap();
        assert_eq!(
            err_kind(a.read(&mut buf).await),
            ErrorKind::ConnectionAborted
        );
        assert_eq!(err_kind(a.write(b"y").await), ErrorKind::ConnectionAborted);
        srv.closed().await;
        let mut one = [0u8; 1];
        b.read_exact(&mut one).await.unwrap();
        assert_eq!(
            err_kind(b.read(&mut one).await),
            ErrorKind::ConnectionAborted
        );
    });
}

#[test]
fn ping_and_keepalive_between_our_sessions() {
    run(10, || async {
        let cfg = MuxConfig {
            keepalive_interval: Some(Duration::from_millis(20)),
            ping_timeout: Duration::from_millis(200),
            ..MuxConfig::default()
        };
        let (cli, srv) = session_pair(cfg).await;
        sleep(Duration::from_millis(300)).await;
        assert!(!cli.is_closed() && !srv.is_closed());
        assert!(srv.ping().await.unwrap() < Duration::from_millis(200));
    });
}

#[test]
fn go_away_refuses_new_streams_only() {
    run(10, || async {
        let (cli, srv) = session_pair(quiet()).await;
        let mut a = cli.open().await.unwrap();
        let mut b = srv.accept().await.unwrap();
        srv.go_away();
        sleep(Duration::from_millis(20)).await;
        assert_eq!(cli.open().await.err(), Some(MuxError::GoAway(0)));
        a.write_all(b"still works").await.unwrap();
        a.close().await.unwrap();
        assert_eq!(read_all(&mut b).await, b"still works");
        assert!(!cli.is_closed());
    });
}

#[test]
fn drop_without_close_sends_fin() {
    run(10, || async {
        let (cli, srv) = session_pair(quiet()).await;
        let mut a = cli.open().await.unwrap();
        a.write_all(b"bye").await.unwrap();
        drop(a);
        let mut b = srv.accept().await.unwrap();
        assert_eq!(read_all(&mut b).await, b"bye");
        drop(b);
        sleep(Duration::from_millis(20)).await;
        assert_eq!((cli.num_streams(), srv.num_streams()), (0, 0));
    });
}

// ---- against a raw peer: exact bytes ---------------------------------------------------

/// frp-protocol.md §14: frpc opening stream 1 and sending 11 bytes.
#[test]
fn golden_client_open_bytes() {
    run(10, || async {
        let (cli, mut raw) = raw_pair(Mode::Client, quiet()).await;
        let mut s = cli.open().await.unwrap();
        s.write_all(b"hello stcp\n").await.unwrap();
        let got = raw.bytes(12 + 12 + 11).await;
        assert_eq!(
            hex::encode(&got),
            "0001000100000001005c0000\
             00000000000000010000000b\
             68656c6c6f20737463700a"
        );
        // frps accepts and answers.
        raw.send(TYPE_WINDOW_UPDATE, FLAG_ACK, 1, 0x005c_0000, &[])
            .await;
        raw.send(TYPE_DATA, 0, 1, 3, b"abc").await;
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"abc");
        // Ping SYN from frps is answered with the same opaque value.
        raw.send(TYPE_PING, FLAG_SYN, 0, 0, &[]).await;
        assert_eq!(hex::encode(raw.bytes(12).await), "000200020000000000000000");
        // Half-close: a bare FIN window update.
        s.close().await.unwrap();
        assert_eq!(hex::encode(raw.bytes(12).await), "000100040000000100000000");
    });
}

/// frp-protocol.md §14: frps accepting stream 1.
#[test]
fn golden_server_accept_bytes() {
    run(10, || async {
        let (srv, mut raw) = raw_pair(Mode::Server, quiet()).await;
        raw.send(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0x005c_0000, &[])
            .await;
        let _s = srv.accept().await.unwrap();
        assert_eq!(hex::encode(raw.bytes(12).await), "0001000200000001005c0000");
    });
}

/// Window updates go out only once half the max window was consumed.
#[test]
fn window_update_threshold() {
    run(20, || async {
        let (srv, mut raw) = raw_pair(Mode::Server, quiet()).await;
        raw.send(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0x005c_0000, &[])
            .await;
        let mut s = srv.accept().await.unwrap();
        assert_eq!(raw.frame().await.0.flags, FLAG_ACK);
        let chunk = vec![7u8; 1 << 20];
        let mut buf = vec![0u8; 1 << 20];
        for i in 0..3u32 {
            raw.send(TYPE_DATA, 0, 1, chunk.len() as u32, &chunk).await;
            s.read_exact(&mut buf).await.unwrap();
            let seen = raw.sync(100 + i).await;
            if i < 2 {
                assert!(seen.is_empty(), "early window update: {seen:?}");
            } else {
                // 3 MiB consumed = max/2: one update for exactly that.
                assert_eq!(
                    seen,
                    vec![(Header::new(TYPE_WINDOW_UPDATE, 0, 1, 3 << 20), vec![])]
                );
            }
        }
    });
}

/// The reader never waits on a slow stream: a full, unread window does not delay pings.
#[test]
fn ping_answered_while_stream_stalled() {
    run(10, || async {
        let (srv, mut raw) = raw_pair(Mode::Server, quiet()).await;
        raw.send(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0, &[]).await;
        let _s = srv.accept().await.unwrap(); // never read
        let (h, _) = raw.frame().await;
        assert_eq!(h, Header::new(TYPE_WINDOW_UPDATE, FLAG_ACK, 1, 0x005c_0000));
        let big = vec![1u8; 6 << 20];
        raw.send(TYPE_DATA, 0, 1, big.len() as u32, &big).await;
        assert!(raw.sync(42).await.is_empty());
        assert!(!srv.is_closed());
    });
}

#[test]
fn keepalive_pings_and_times_out() {
    run(10, || async {
        let cfg = MuxConfig {
            keepalive_interval: Some(Duration::from_millis(30)),
            ping_timeout: Duration::from_millis(100),
            ..MuxConfig::default()
        };
        let (cli, mut raw) = raw_pair(Mode::Client, cfg).await;
        // Answer two pings like frps does.
        for want in 0..2u32 {
            let (h, _) = raw.frame().await;
            assert_eq!(h, Header::new(TYPE_PING, FLAG_SYN, 0, want));
            raw.send(TYPE_PING, FLAG_ACK, 0, want, &[]).await;
        }
        // Then stop answering: the session dies with KeepaliveTimeout.
        let t = std::time::Instant::now();
        cli.closed().await;
        assert_eq!(cli.close_reason(), Some(MuxError::KeepaliveTimeout));
        assert!(t.elapsed() < Duration::from_secs(2));
        raw.eof().await;
    });
}

#[test]
fn rst_from_peer() {
    run(10, || async {
        let (cli, mut raw) = raw_pair(Mode::Client, quiet()).await;
        let mut s = cli.open().await.unwrap();
        raw.frame().await;
        raw.send(TYPE_WINDOW_UPDATE, FLAG_ACK, 1, 0, &[]).await;
        raw.send(TYPE_DATA, 0, 1, 4, b"lost").await;
        raw.send(TYPE_WINDOW_UPDATE, FLAG_RST, 1, 0, &[]).await;
        raw.sync(1).await;
        assert_eq!(
            err_kind(s.read(&mut [0u8; 8]).await),
            ErrorKind::ConnectionReset
        );
        assert_eq!(err_kind(s.write(b"x").await), ErrorKind::ConnectionReset);
        assert_eq!(cli.num_streams(), 0);
        // Late data for the reset stream is drained and ignored.
        raw.send(TYPE_DATA, 0, 1, 3, b"abc").await;
        assert!(raw.sync(2).await.is_empty());
        assert!(!cli.is_closed());
        drop(s); // nothing more to send for a reset stream
        assert!(raw.sync(3).await.is_empty());
    });
}

#[test]
fn drop_with_unread_data_sends_rst() {
    run(10, || async {
        let (srv, mut raw) = raw_pair(Mode::Server, quiet()).await;
        raw.send(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0, &[]).await;
        raw.send(TYPE_DATA, 0, 1, 6, b"unread").await;
        let s = srv.accept().await.unwrap();
        raw.frame().await; // ACK
        raw.sync(1).await;
        drop(s);
        assert_eq!(
            raw.frame().await.0,
            Header::new(TYPE_WINDOW_UPDATE, FLAG_RST, 1, 0)
        );
        assert_eq!(srv.num_streams(), 0);
    });
}

#[test]
fn data_after_drop_is_reset() {
    run(10, || async {
        let (srv, mut raw) = raw_pair(Mode::Server, quiet()).await;
        raw.send(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0, &[]).await;
        let s = srv.accept().await.unwrap();
        raw.frame().await; // ACK
        drop(s);
        assert_eq!(
            raw.frame().await.0,
            Header::new(TYPE_WINDOW_UPDATE, FLAG_FIN, 1, 0)
        );
        assert_eq!(srv.num_streams(), 1); // waiting for the peer's FIN
        raw.send(TYPE_DATA, 0, 1, 4, b"late").await;
        assert_eq!(
            raw.frame().await.0,
            Header::new(TYPE_WINDOW_UPDATE, FLAG_RST, 1, 0)
        );
        assert_eq!(srv.num_streams(), 0);
    });
}

#[test]
fn unknown_stream_data_is_discarded() {
    run(10, || async {
        let (cli, mut raw) = raw_pair(Mode::Client, quiet()).await;
        raw.send(TYPE_DATA, 0, 99, 5, b"ghost").await;
        raw.send(TYPE_WINDOW_UPDATE, 0, 77, 1000, &[]).await;
        raw.send(TYPE_WINDOW_UPDATE, FLAG_FIN, 55, 0, &[]).await;
        assert!(raw.sync(9).await.is_empty());
        assert!(!cli.is_closed());
        assert_eq!(cli.num_streams(), 0);
    });
}

#[test]
fn accept_backlog_overflow_resets() {
    run(10, || async {
        let cfg = MuxConfig {
            accept_backlog: 2,
            ..quiet()
        };
        let (srv, mut raw) = raw_pair(Mode::Server, cfg).await;
        for id in [1, 3, 5] {
            raw.send(TYPE_WINDOW_UPDATE, FLAG_SYN, id, 0, &[]).await;
        }
        raw.send(TYPE_DATA, 0, 5, 2, b"xx").await; // discarded
        assert_eq!(
            raw.frame().await.0,
            Header::new(TYPE_WINDOW_UPDATE, FLAG_RST, 5, 0)
        );
        assert_eq!(srv.num_streams(), 2);
        assert_eq!(srv.accept().await.unwrap().id(), 1);
        assert_eq!(srv.accept().await.unwrap().id(), 3);
    });
}

#[test]
fn local_go_away_resets_inbound_syn() {
    run(10, || async {
        let (srv, mut raw) = raw_pair(Mode::Server, quiet()).await;
        srv.go_away();
        assert_eq!(raw.frame().await.0, Header::new(TYPE_GO_AWAY, 0, 0, 0));
        raw.send(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0, &[]).await;
        assert_eq!(
            raw.frame().await.0,
            Header::new(TYPE_WINDOW_UPDATE, FLAG_RST, 1, 0)
        );
        assert!(!srv.is_closed());
    });
}

#[test]
fn go_away_errors_end_session() {
    for code in [1u32, 2, 7] {
        run(10, move || async move {
            let (cli, mut raw) = raw_pair(Mode::Client, quiet()).await;
            raw.send(TYPE_GO_AWAY, 0, 0, code, &[]).await;
            cli.closed().await;
            assert_eq!(cli.close_reason(), Some(MuxError::GoAway(code)));
            raw.eof().await;
        });
    }
}

/// Fatal input from a peer ends the session with a reason (and GoAway where hashicorp
/// sends one), never a panic.
#[test]
fn protocol_violations() {
    struct Case {
        frames: Vec<Vec<u8>>,
        reason: fn(&MuxError) -> bool,
        go_away: bool,
    }
    fn hdr(typ: u8, flags: u16, id: u32, len: u32) -> Vec<u8> {
        Header::new(typ, flags, id, len).encode().to_vec()
    }
    let cases = vec![
        Case {
            frames: vec![vec![3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
            reason: |e| matches!(e, MuxError::ProtocolError(m) if m.contains("bad version 3")),
            go_away: false,
        },
        Case {
            frames: vec![hdr(4, 0, 0, 0)],
            reason: |e| matches!(e, MuxError::ProtocolError(m) if m.contains("type 4")),
            go_away: false,
        },
        Case {
            // 256 KiB + 1 before any window update.
            frames: vec![hdr(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0), {
                let mut f = hdr(TYPE_DATA, 0, 1, INITIAL_STREAM_WINDOW + 1);
                f.resize(f.len() + INITIAL_STREAM_WINDOW as usize + 1, 0);
                f
            }],
            reason: |e| *e == MuxError::RecvWindowExceeded { stream: 1 },
            go_away: true,
        },
        Case {
            frames: vec![
                hdr(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0),
                hdr(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0),
            ],
            reason: |e| matches!(e, MuxError::ProtocolError(m) if m.contains("duplicate")),
            go_away: true,
        },
        Case {
            frames: vec![
                hdr(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0),
                hdr(TYPE_WINDOW_UPDATE, FLAG_FIN, 1, 0),
                hdr(TYPE_DATA, FLAG_FIN, 1, 0),
            ],
            reason: |e| matches!(e, MuxError::ProtocolError(m) if m.contains("unexpected FIN")),
            go_away: true,
        },
    ];
    for case in cases {
        run(10, move || async move {
            let (srv, mut raw) = raw_pair(Mode::Server, quiet()).await;
            for f in &case.frames {
                raw.0.write_all(f).await.unwrap();
            }
            srv.closed().await;
            let why = srv.close_reason().unwrap();
            assert!((case.reason)(&why), "unexpected reason {why:?}");
            // Whatever comes back must end with GoAway(protocol error) or nothing.
            let mut rest = vec![];
            raw.0.read_to_end(&mut rest).await.ok();
            let tail = Header::new(TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTO_ERR).encode();
            assert_eq!(
                rest.ends_with(&tail),
                case.go_away,
                "{}",
                hex::encode(&rest)
            );
        });
    }
}

#[test]
fn stream_open_timeout_kills_session() {
    run(10, || async {
        let cfg = MuxConfig {
            stream_open_timeout: Some(Duration::from_millis(100)),
            ..quiet()
        };
        let (cli, mut raw) = raw_pair(Mode::Client, cfg).await;
        let _s = cli.open().await.unwrap();
        raw.frame().await; // SYN, never ACKed
        cli.closed().await;
        assert_eq!(
            cli.close_reason(),
            Some(MuxError::StreamOpenTimeout { stream: 1 })
        );
    });
}

#[test]
fn stream_close_timeout_resets() {
    run(10, || async {
        let cfg = MuxConfig {
            stream_close_timeout: Some(Duration::from_millis(100)),
            ..quiet()
        };
        let (cli, mut raw) = raw_pair(Mode::Client, cfg).await;
        let mut s = cli.open().await.unwrap();
        raw.send(TYPE_WINDOW_UPDATE, FLAG_ACK, 1, 0, &[]).await;
        s.close().await.unwrap();
        raw.frame().await; // SYN
        assert_eq!(
            raw.frame().await.0,
            Header::new(TYPE_WINDOW_UPDATE, FLAG_FIN, 1, 0)
        );
        // The peer never sends its FIN.
        assert_eq!(
            raw.frame().await.0,
            Header::new(TYPE_WINDOW_UPDATE, FLAG_RST, 1, 0)
        );
        assert_eq!(cli.num_streams(), 0);
        assert!(!cli.is_closed());
    });
}

/// Open waits while `accept_backlog` SYNs are unacknowledged (hashicorp's synCh).
#[test]
fn open_waits_for_acks() {
    run(10, || async {
        let cfg = MuxConfig {
            accept_backlog: 2,
            ..quiet()
        };
        let (cli, mut raw) = raw_pair(Mode::Client, cfg).await;
        let _a = cli.open().await.unwrap();
        let _b = cli.open().await.unwrap();
        let mut third = Box::pin(cli.open());
        assert!(poll_once(&mut third).await.is_none());
        raw.frame().await;
        raw.send(TYPE_WINDOW_UPDATE, FLAG_ACK, 1, 0, &[]).await;
        assert_eq!(third.await.unwrap().id(), 5);
    });
}

/// The sender honours the peer's window: 256 KiB initial, then only what it grants.
#[test]
fn send_window_respected() {
    run(10, || async {
        let (cli, mut raw) = raw_pair(Mode::Client, quiet()).await;
        let mut s = cli.open().await.unwrap();
        raw.frame().await; // SYN
        let data = pattern(300 * 1024, 3);
        let done = std::rc::Rc::new(std::cell::Cell::new(false));
        let done2 = done.clone();
        let w = glommio::spawn_local(async move {
            s.write_all(&data).await.unwrap();
            done2.set(true);
            s
        });
        let mut got = 0;
        while got < INITIAL_STREAM_WINDOW as usize {
            got += raw.frame().await.1.len();
        }
        assert_eq!(got, INITIAL_STREAM_WINDOW as usize);
        assert!(raw.sync(1).await.is_empty()); // nothing beyond the window
        assert!(!done.get());
        raw.send(TYPE_WINDOW_UPDATE, FLAG_ACK, 1, 44 * 1024, &[])
            .await;
        let _s = w.await;
        while got < 300 * 1024 {
            got += raw.frame().await.1.len();
        }
        assert_eq!(got, 300 * 1024);
    });
}

// ---- replay of real frpc <-> frps sessions ---------------------------------------------

struct Record {
    to_frps: bool,
    bytes: Vec<u8>,
}

fn load_transcript(name: &str) -> Vec<Record> {
    let path = format!("/work/shared/vectors/transcripts/{name}.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(_) => return vec![], // vectors not available here
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            let hex = r.get("hex")?.as_str()?;
            Some(Record {
                to_frps: r["dir"] == "client->frps",
                bytes: hex::decode(hex).unwrap(),
            })
        })
        .collect()
}

/// Complete frames at the front of `buf` (consumed), as (header, payload).
fn take_frames(buf: &mut Vec<u8>) -> Vec<(Header, Vec<u8>)> {
    let mut out = vec![];
    let mut pos = 0;
    while let Some(h) = buf[pos..].first_chunk::<HEADER_LEN>() {
        let h = Header::decode(h);
        let len = if h.typ == TYPE_DATA {
            h.length as usize
        } else {
            0
        };
        if buf.len() - pos < HEADER_LEN + len {
            break;
        }
        out.push((h, buf[pos + HEADER_LEN..pos + HEADER_LEN + len].to_vec()));
        pos += HEADER_LEN + len;
    }
    buf.drain(..pos);
    out
}

/// Drive our client session so it re-creates frpc's side of a recorded session, while a
/// raw peer plays frps's recorded bytes; frpc's bytes must come out identical.
fn replay(name: &'static str) {
    run(20, move || async move {
        let records = load_transcript(name);
        if records.is_empty() {
            eprintln!("transcript {name} not found, skipping");
            return;
        }
        let (cli, mut raw) = raw_pair(Mode::Client, quiet()).await;
        let mut streams: std::collections::HashMap<u32, Stream> = Default::default();
        let mut pending = vec![];
        let (mut want, mut got) = (vec![], vec![]);
        let mut want_rx: std::collections::HashMap<u32, Vec<u8>> = Default::default();
        let mut got_rx: std::collections::HashMap<u32, Vec<u8>> = Default::default();
        let mut rx_parse = vec![];
        let mut ping = 1000;
        for rec in records {
            if rec.to_frps {
                want.extend_from_slice(&rec.bytes);
                pending.extend_from_slice(&rec.bytes);
                for (h, body) in take_frames(&mut pending) {
                    match (h.typ, h.flags) {
                        (TYPE_WINDOW_UPDATE, FLAG_SYN) => {
                            let s = cli.open().await.unwrap();
                            assert_eq!(s.id(), h.stream_id);
                            streams.insert(s.id(), s);
                        }
                        (TYPE_DATA, 0) => {
                            let s = streams.get_mut(&h.stream_id).unwrap();
                            s.write_all(&body).await.unwrap();
                        }
                        (TYPE_WINDOW_UPDATE, FLAG_FIN) => {
                            let s = streams.get_mut(&h.stream_id).unwrap();
                            s.close().await.unwrap();
                        }
                        other => panic!("unexpected frpc frame {other:?}"),
                    }
                }
            } else {
                raw.0.write_all(&rec.bytes).await.unwrap();
                rx_parse.extend_from_slice(&rec.bytes);
                for (h, body) in take_frames(&mut rx_parse) {
                    want_rx.entry(h.stream_id).or_default().extend(body);
                }
            }
            if !rx_parse.is_empty() {
                continue; // mid-frame: a ping now would corrupt the peer's framing
            }
            // Let the session catch up with the peer's bytes, collecting our output.
            ping += 1;
            for (h, body) in raw.sync(ping).await {
                got.extend_from_slice(&h.encode());
                got.extend_from_slice(&body);
            }
            for (id, s) in streams.iter_mut() {
                let mut buf = [0u8; 4096];
                while let Some(Ok(n)) = poll_once(s.read(&mut buf)).await {
                    if n == 0 {
                        break;
                    }
                    got_rx.entry(*id).or_default().extend_from_slice(&buf[..n]);
                }
            }
        }
        assert_eq!(hex::encode(&got), hex::encode(&want));
        want_rx.retain(|_, v| !v.is_empty());
        assert_eq!(got_rx, want_rx);
        // Streams closed both ways are gone; the control and one idle stream stay.
        assert_eq!(cli.num_streams(), 2);
    });
}

#[test]
fn replay_mux_plain_server() {
    replay("mux-plain-server");
}

#[test]
fn replay_mux_plain_visitor() {
    replay("mux-plain-visitor");
}

/// Open/close timeouts of streams that ended normally must not pile up until they come
/// due (75 s / 5 min): a gateway churning thousands of streams a second would hold
/// hundreds of thousands of entries.
#[test]
fn churned_streams_leave_no_timeout_entries_behind() {
    run(30, || async {
        // TCP_NODELAY as the engine sets it (else each exchange waits a delayed ACK).
        let (a, b) = tcp_pair().await;
        a.set_nodelay(true).unwrap();
        b.set_nodelay(true).unwrap();
        let srv = Session::new(a, Mode::Server, quiet());
        let cli = Session::new(b, Mode::Client, quiet());
        let server = glommio::spawn_local(async move {
            for _ in 0..3000 {
                let mut s = srv.accept().await.unwrap();
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await.unwrap();
                s.write_all(&b).await.unwrap();
                s.close().await.unwrap();
            }
            srv
        });
        for i in 0..3000u32 {
            let mut s = cli.open().await.unwrap();
            s.write_all(&[i as u8]).await.unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            assert_eq!(b[0], i as u8);
            s.close().await.unwrap();
        }
        let srv = server.await;
        sleep(Duration::from_millis(50)).await;
        for (who, s) in [("client", &cli), ("server", &srv)] {
            assert!(
                s.timeout_entries() <= 2 * s.num_streams() + 64,
                "{who}: {} timeout entries for {} live streams after 3000 streams",
                s.timeout_entries(),
                s.num_streams()
            );
        }
    });
}
