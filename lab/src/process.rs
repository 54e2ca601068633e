//! Processes started inside a namespace, stopped by PID when their guard is
//! dropped.
use std::{
    ffi::CString,
    fs::File,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::process::CommandExt,
    },
    process::{Child, ChildStderr, ChildStdout, Command, ExitStatus},
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// How long [`NsChild`]'s drop waits after SIGTERM before SIGKILL.
const DROP_GRACE: Duration = Duration::from_secs(2);

/// A process started with [`Netns::spawn`](crate::Netns::spawn).
///
/// Dropping it sends SIGTERM, waits a short grace for the process to exit,
/// then sends SIGKILL and reaps it. Signals go to the PID only while the
/// process is known not to have been reaped, so they never reach a process
/// that reused the PID.
#[derive(Debug)]
pub struct NsChild {
    process: Arc<Process>,
}

/// The state shared between an [`NsChild`] and the namespace guard that
/// started it.
#[derive(Debug)]
pub(crate) struct Process {
    child: Mutex<Child>,
    /// Becomes readable when the process exits (`pidfd_open(2)`).
    pidfd: OwnedFd,
    pid: u32,
    label: String,
}

impl NsChild {
    /// Spawns `command` in the network namespace `netns` (named `name`) with
    /// a private mount namespace and a `/sys` of that network namespace,
    /// the way `ip netns exec` does.
    pub(crate) fn spawn(mut command: Command, netns: &File, name: &str) -> Result<NsChild> {
        let label = format!("{:?} in {name}", command.get_program());
        // Everything the child needs is prepared here: between fork and
        // exec it may only make system calls.
        let sysfs_source = CString::new(name).context("namespace name contains NUL")?;
        let netns_fd = netns.as_raw_fd();
        // SAFETY: the closure only makes async-signal-safe system calls on
        // data prepared before the fork (see `enter_in_child`).
        unsafe {
            command.pre_exec(move || enter_in_child(netns_fd, &sysfs_source));
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {label}"))?;
        let pid = child.id();
        let pidfd = match pidfd_open(pid) {
            Ok(pidfd) => pidfd,
            Err(error) => {
                // Without a guard nobody would stop it.
                let _ = child.kill();
                let _ = child.wait();
                return Err(error).with_context(|| format!("pidfd_open for {label}"));
            }
        };
        Ok(NsChild {
            process: Arc::new(Process {
                child: Mutex::new(child),
                pidfd,
                pid,
                label,
            }),
        })
    }

    pub(crate) fn downgrade(&self) -> Weak<Process> {
        Arc::downgrade(&self.process)
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.process.pid
    }

    /// Sends `signal` (e.g. `libc::SIGKILL`) to the process; an error if it
    /// has already exited.
    pub fn kill(&self, signal: libc::c_int) -> Result<()> {
        self.process.kill(signal)
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        self.process.try_wait()
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still
    /// running then.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<ExitStatus>> {
        self.process.wait_timeout(timeout)
    }

    /// Stops the process: SIGTERM, then SIGKILL if it is still running after
    /// `grace`. Returns its exit status.
    pub fn terminate(&self, grace: Duration) -> Result<ExitStatus> {
        self.process.terminate(grace)
    }

    /// The read end of the process's stdout if the command had
    /// `Stdio::piped()` for it (once).
    pub fn take_stdout(&self) -> Option<ChildStdout> {
        self.process.lock().stdout.take()
    }

    /// The read end of the process's stderr if the command had
    /// `Stdio::piped()` for it (once).
    pub fn take_stderr(&self) -> Option<ChildStderr> {
        self.process.lock().stderr.take()
    }
}

impl Drop for NsChild {
    fn drop(&mut self) {
        if let Err(error) = self.process.terminate(DROP_GRACE) {
            eprintln!("lb-lab: stopping {}: {error:#}", self.process.label);
        }
    }
}

impl Process {
    fn lock(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn try_wait(&self) -> Result<Option<ExitStatus>> {
        self.lock()
            .try_wait()
            .with_context(|| format!("waiting for {}", self.label))
    }

    fn kill(&self, signal: libc::c_int) -> Result<()> {
        // Holding the lock keeps anyone from reaping the process between
        // the check and the signal, so the PID is still ours.
        let mut child = self.lock();
        if let Some(status) = child.try_wait()? {
            bail!("{} has already exited ({status})", self.label);
        }
        let pid = libc::pid_t::try_from(self.pid).context("pid out of range")?;
        // SAFETY: kill has no memory-safety preconditions; the process is
        // our unreaped child, so the PID cannot have been reused.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("kill({pid}, {signal}) for {}", self.label));
        }
        Ok(())
    }

    fn wait_timeout(&self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.poll_exit(left)?;
        }
    }

    /// Blocks until the process exits or `timeout` elapses.
    fn poll_exit(&self, timeout: Duration) -> Result<()> {
        let mut pollfd = libc::pollfd {
            fd: self.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = libc::c_int::try_from(timeout.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        if unsafe { libc::poll(&mut pollfd, 1, millis) } < 0 {
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error).with_context(|| format!("poll on pidfd of {}", self.label));
            }
        }
        Ok(())
    }

    pub(crate) fn terminate(&self, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        // The process may exit between the check and the signal; the
        // wait below then finds its status.
        let _ = self.kill(libc::SIGTERM);
        if let Some(status) = self.wait_timeout(grace)? {
            return Ok(status);
        }
        let _ = self.kill(libc::SIGKILL);
        self.wait_timeout(grace)?
            .with_context(|| format!("{} survived SIGKILL", self.label))
    }
}

/// Runs in the child between fork and exec: joins the network namespace,
/// then, like `ip netns exec`, unshares the mount namespace and mounts a
/// sysfs that describes the new network namespace on `/sys`.
///
/// Only async-signal-safe system calls, no allocation.
fn enter_in_child(netns_fd: libc::c_int, sysfs_source: &CString) -> io::Result<()> {
    fn check(rc: libc::c_int) -> io::Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    // SAFETY: plain system calls with valid, NUL-terminated strings.
    unsafe {
        check(libc::setns(netns_fd, libc::CLONE_NEWNET))?;
        check(libc::unshare(libc::CLONE_NEWNS))?;
        // Keep the mounts below from propagating to the parent namespace.
        check(libc::mount(
            c"".as_ptr(),
            c"/".as_ptr(),
            c"none".as_ptr(),
            libc::MS_SLAVE | libc::MS_REC,
            std::ptr::null(),
        ))?;
        // If /sys cannot be unmounted, the new sysfs shadows it; a
        // read-only /sys can only be shadowed read-only.
        let mut flags = 0;
        if libc::umount2(c"/sys".as_ptr(), libc::MNT_DETACH) != 0 {
            let mut stat: libc::statvfs = std::mem::zeroed();
            if libc::statvfs(c"/sys".as_ptr(), &mut stat) == 0 && stat.f_flag & libc::ST_RDONLY != 0
            {
                flags = libc::MS_RDONLY;
            }
        }
        check(libc::mount(
            sysfs_source.as_ptr(),
            c"/sys".as_ptr(),
            c"sysfs".as_ptr(),
            flags,
            std::ptr::null(),
        ))
    }
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: pidfd_open takes a PID and flags and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
