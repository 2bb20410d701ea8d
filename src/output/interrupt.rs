//! Stopping cleanly on Ctrl-C (SIGINT) and SIGTERM.
//!
//! The output must appear whole or not at all, so the process may not simply die while it writes:
//! [`install`] replaces the default action of both signals with a handler that only raises a
//! flag. The output writers check the flag on every write ([`check_io`]) and the pipeline between
//! layers ([`check`]); the error that results unwinds normally, and every writer's `Drop` removes
//! its temporary files. The command then exits with code 130
//! ([`ErrorKind::Interrupted`](crate::ErrorKind::Interrupted)).
//!
//! A second signal while the first is being handled ends the process at once (exit code 130),
//! for the user who does not want to wait; temporary files may then remain, and are named
//! `.<OUT>.nydus-offline-tmp.<pid>` beside the output.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::error::{Error, ErrorKind, Result};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// The signal handler: async-signal-safe (one atomic swap, and `_exit` on the second signal).
extern "C" fn on_signal(_signal: libc::c_int) {
    if REQUESTED.swap(true, Ordering::SeqCst) {
        // SAFETY: `_exit` is async-signal-safe and ends the process without unwinding.
        unsafe { libc::_exit(130) };
    }
}

/// Handle SIGINT and SIGTERM by raising the interruption flag from now on. Calling it again is
/// harmless. System calls interrupted by the signal are restarted (`SA_RESTART`), so that only
/// the flag, never a stray `EINTR`, decides what stops.
pub fn install() -> Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed `sigaction` is a valid value; the handler only touches an atomic.
        let ok = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut()) == 0
        };
        if !ok {
            return Err(Error::internal(format!(
                "cannot install the handler for signal {signal}: {}",
                io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM arrived since [`install`].
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// The error of an interrupted run.
pub fn error() -> Error {
    Error::new(
        ErrorKind::Interrupted,
        "interrupted by a signal; nothing was written and temporary files were removed",
    )
}

/// `Err` once a signal arrived: for the pipeline to call between steps.
pub fn check() -> Result<()> {
    if requested() { Err(error()) } else { Ok(()) }
}

/// `Err` once a signal arrived, as an `io::Error` for writers to return from `write`.
///
/// Its kind is deliberately not `io::ErrorKind::Interrupted`, which `write_all` and friends
/// retry forever. Whoever sees the resulting failure should ask [`requested`] and report
/// [`error`] instead of the I/O message.
pub fn check_io() -> io::Result<()> {
    if requested() {
        Err(io::Error::other("interrupted by a signal"))
    } else {
        Ok(())
    }
}
