//! SIGINT/SIGTERM handling without a signal handler: the signals are blocked in every
//! thread (the mask is inherited, so block them before starting executors) and the
//! main thread waits for one with sigwait.

pub struct Termination {
    set: libc::sigset_t,
}

/// Blocks SIGINT and SIGTERM for this thread and every thread started after it.
pub fn block_termination() -> Termination {
    block(&[libc::SIGINT, libc::SIGTERM])
}

/// [`block_termination`] plus SIGHUP, which the engine takes as "reload the config"
/// ([`Termination::wait`] then returns `"SIGHUP"` too).
pub fn block_termination_and_hangup() -> Termination {
    block(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP])
}

fn block(signals: &[libc::c_int]) -> Termination {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        Termination { set }
    }
}

impl Termination {
    /// Waits for one of the blocked signals; returns its name.
    pub fn wait(&self) -> &'static str {
        let mut sig: libc::c_int = 0;
        unsafe {
            libc::sigwait(&self.set, &mut sig);
        }
        match sig {
            libc::SIGINT => "SIGINT",
            libc::SIGTERM => "SIGTERM",
            libc::SIGHUP => "SIGHUP",
            _ => "a signal",
        }
    }
}
