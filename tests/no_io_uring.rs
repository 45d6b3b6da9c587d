//! Where io_uring is refused (here: a seccomp filter that makes io_uring_setup fail with
//! ENOSYS, as old kernels and strict container profiles do), the binary exits with one
//! clear sentence instead of a panic.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Installs a seccomp filter: io_uring_setup -> ENOSYS, everything else allowed.
fn deny_io_uring() -> std::io::Result<()> {
    const NR: u32 = libc::SYS_io_uring_setup as u32;
    let filter = [
        // A = seccomp_data.nr
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: NR,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut _,
    };
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const _ as usize,
            0,
            0,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[test]
fn refused_io_uring_gives_one_clear_sentence() {
    let dir = std::env::temp_dir().join(format!("stcp-nouring-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("frpc.toml");
    std::fs::write(
        &cfg,
        "serverAddr = \"127.0.0.1\"\nserverPort = 9\n[[visitors]]\nname = \"v\"\ntype = \"stcp\"\nserverName = \"x\"\nsecretKey = \"k\"\nbindPort = -1\n",
    )
    .unwrap();
    for args in [
        vec!["-c", cfg.to_str().unwrap()],
        vec!["relay", "--bind", "127.0.0.1:0"],
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stcp-engine"));
        cmd.args(&args);
        unsafe {
            cmd.pre_exec(deny_io_uring);
        }
        let out = cmd.output().expect("run stcp-engine");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail without io_uring");
        assert!(
            stderr.contains("io_uring is unavailable here"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
