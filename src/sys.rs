//! Checks on the host that must pass before any executor starts.

/// Fails with one sentence when the kernel (or a seccomp profile) refuses io_uring,
/// which glommio needs. It sets up and closes a one-entry ring once per process, on a
/// short-lived thread of its own: tearing a ring down sends task work to the thread that
/// made it, which interrupts that thread's socket calls that have timeouts (EINTR).
pub fn check_io_uring() -> Result<(), String> {
    static RESULT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    RESULT
        .get_or_init(|| {
            std::thread::spawn(probe_io_uring)
                .join()
                .unwrap_or_else(|_| Err("io_uring probe thread failed".into()))
        })
        .clone()
}

fn probe_io_uring() -> Result<(), String> {
    let mut params = [0u8; 120]; // struct io_uring_params, zeroed
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        return Err(format!(
            "io_uring is unavailable here ({err}), and stcp-engine needs it: run on Linux 5.8 or newer with io_uring allowed (check /proc/sys/kernel/io_uring_disabled; in a container, use a seccomp profile that permits io_uring_setup)"
        ));
    }
    unsafe {
        libc::close(fd as libc::c_int);
    }
    Ok(())
}

/// glommio reserves 10 MiB of registered I/O memory per executor by default, for file
/// I/O this engine never does; 64 KiB (glommio's floor) keeps idle processes small.
const IO_MEMORY: usize = 64 * 1024;

/// An executor builder with this project's settings.
pub fn executor(placement: glommio::Placement, name: &str) -> glommio::LocalExecutorBuilder {
    glommio::LocalExecutorBuilder::new(placement)
        .name(name)
        .io_memory(IO_MEMORY)
}
