//! SIGINT/SIGTERM handling without a signal handler: the signals are blocked in every
//! thread (the mask is inherited, so block them before starting executors) and the
//! main thread waits for one with sigwait.

pub struct Termination {
    set: libc::sigset_t,
}

/// Blocks SIGINT and SIGTERM for this thread and every thread started after it.
pub fn block_termination() -> Termination {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        Termination { set }
    }
}

impl Termination {
    /// Waits for SIGINT or SIGTERM; returns its name.
    pub fn wait(&self) -> &'static str {
        let mut sig: libc::c_int = 0;
        unsafe {
            libc::sigwait(&self.set, &mut sig);
        }
        match sig {
            libc::SIGINT => "SIGINT",
            libc::SIGTERM => "SIGTERM",
            _ => "a signal",
        }
    }
}
