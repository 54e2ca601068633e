//! Named network namespaces (`ip netns`) as guard values.
//!
//! A [`Netns`] is deleted when dropped, after the processes started through
//! it have been stopped. Code runs inside a namespace in three ways:
//! [`Netns::ip`] and [`Netns::exec`] run a program under `ip`,
//! [`Netns::spawn`] starts a long-lived process, and [`Netns::enter`] runs a
//! closure on a thread that has joined the namespace (sockets it opens stay
//! in the namespace after the thread ends).
use std::{
    fs::File,
    io,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{Mutex, Weak},
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{
    cmd,
    process::{NsChild, Process},
    wait::wait_until,
};

/// Where `ip netns` keeps the bind mounts that name namespaces.
const NETNS_DIR: &str = "/run/netns";

/// How long a process started through a [`Netns`] gets between SIGTERM and
/// SIGKILL when the guard goes away.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A named network namespace, deleted on drop.
///
/// Dropping the guard stops (SIGTERM, then SIGKILL after a short grace) every
/// process started with [`Netns::spawn`] that is still running, then runs
/// `ip netns del`.
#[derive(Debug)]
pub struct Netns {
    name: String,
    /// Processes started through this guard; entries whose [`NsChild`] is
    /// gone are pruned on the next spawn.
    children: Mutex<Vec<Weak<Process>>>,
    /// `false` once [`Netns::persist`] handed the namespace over.
    delete_on_drop: bool,
}

impl Netns {
    /// Creates the namespace `name` (`ip netns add`) and brings its `lo` up.
    ///
    /// Fails if a namespace of that name already exists: it may belong to
    /// someone else. Leftovers of a crashed run are removed with
    /// [`delete_with_prefix`] or [`Netns::adopt`].
    pub fn create(name: &str) -> Result<Netns> {
        validate_name(name)?;
        ensure!(
            !path_of(name).exists(),
            "network namespace {name} already exists (a leftover of a crashed run? \
             `cargo xtask lab down` removes the lab's)"
        );
        cmd::run("ip", &["netns", "add", name])
            .with_context(|| format!("creating network namespace {name}"))?;
        let ns = Netns::guard(name);
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Takes charge of the existing namespace `name`, which is then deleted
    /// when the guard is dropped (for `lab down` after a crash).
    pub fn adopt(name: &str) -> Result<Netns> {
        validate_name(name)?;
        ensure!(
            path_of(name).exists(),
            "network namespace {name} does not exist"
        );
        Ok(Netns::guard(name))
    }

    /// A guard for the existing namespace `name` that leaves it in place
    /// when dropped (to work in a lab that `cargo xtask lab up` built).
    /// Processes started through it still stop with their [`NsChild`].
    pub fn existing(name: &str) -> Result<Netns> {
        let mut ns = Netns::adopt(name)?;
        ns.delete_on_drop = false;
        Ok(ns)
    }

    fn guard(name: &str) -> Netns {
        Netns {
            name: name.to_owned(),
            children: Mutex::default(),
            delete_on_drop: true,
        }
    }

    /// The namespace's name, as `ip netns` shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Keeps the namespace after the guard is gone (for `lab up`) and
    /// returns its name. Processes started through the guard still stop
    /// when their [`NsChild`] is dropped.
    pub fn persist(mut self) -> String {
        self.delete_on_drop = false;
        std::mem::take(&mut self.name)
    }

    /// Runs `ip -n NAME args...` and returns its stdout; the error carries
    /// the command and its stderr.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        cmd::run("ip", &full)
    }

    /// Runs `program args...` inside the namespace (`ip netns exec`) and
    /// returns its output whatever its exit status.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output> {
        cmd::output("ip", &self.exec_args(program, args))
    }

    /// Like [`Netns::exec`], but a non-zero exit is an error carrying
    /// stderr; returns stdout.
    pub fn exec_ok(&self, program: &str, args: &[&str]) -> Result<String> {
        let full = self.exec_args(program, args);
        let output = cmd::output("ip", &full)?;
        cmd::check("ip", &full, &output)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn exec_args<'a>(&'a self, program: &'a str, args: &[&'a str]) -> Vec<&'a str> {
        let mut full = vec!["netns", "exec", self.name.as_str(), program];
        full.extend_from_slice(args);
        full
    }

    /// Starts `command` inside the namespace, as `ip netns exec` would: in
    /// this network namespace, in a private mount namespace whose `/sys`
    /// describes this network namespace (so, as under `ip netns exec`,
    /// `/sys/fs/bpf` is not mounted there).
    ///
    /// The process is stopped when the returned [`NsChild`] is dropped, or
    /// at the latest when this guard is.
    pub fn spawn(&self, command: Command) -> Result<NsChild> {
        let file = self.open()?;
        let child = NsChild::spawn(command, &file, &self.name)?;
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children.retain(|weak| weak.strong_count() > 0);
        children.push(child.downgrade());
        Ok(child)
    }

    /// Runs `f` on a new thread that has joined this namespace
    /// (`setns(CLONE_NEWNET)`) and returns its result. Sockets created in
    /// `f` belong to this namespace for their whole life.
    ///
    /// # Panics
    /// If the namespace cannot be entered (it was deleted behind the
    /// guard's back), or if `f` panics (the panic is propagated).
    pub fn enter<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let file = self
            .open()
            .unwrap_or_else(|error| panic!("cannot enter {}: {error:#}", self.name));
        std::thread::scope(|scope| {
            let thread = scope.spawn(move || {
                join(&file).unwrap_or_else(|error| panic!("setns into {}: {error}", self.name));
                f()
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Like [`Netns::enter`] for a thread that outlives the call (a server
    /// loop, an async runtime): starts `f` on a new thread inside the
    /// namespace and returns its handle.
    pub fn spawn_thread<F, R>(&self, f: F) -> Result<JoinHandle<Result<R>>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let file = self.open()?;
        let name = self.name.clone();
        std::thread::Builder::new()
            .name(format!("netns {name}"))
            .spawn(move || {
                join(&file).with_context(|| format!("setns into {name}"))?;
                Ok(f())
            })
            .context("spawning a thread")
    }

    /// Sets the sysctl `key` (dotted, as `sysctl` spells it, e.g.
    /// `net.ipv4.conf.all.rp_filter`) to `value` in this namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        // /proc/sys/net resolves to the namespace of the thread that opens
        // it, so the write must happen inside.
        self.enter(|| std::fs::write(&path, value))
            .with_context(|| format!("sysctl {key}={value} in {}", self.name))
    }

    /// The PIDs of every process in the namespace (`ip netns pids`),
    /// whoever started them.
    pub fn pids(&self) -> Result<Vec<u32>> {
        pids_of(&self.name)
    }

    fn open(&self) -> Result<File> {
        let path = path_of(&self.name);
        File::open(&path).with_context(|| format!("opening {}", path.display()))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let children = std::mem::take(self.children.get_mut().unwrap_or_else(|e| e.into_inner()));
        for child in children.iter().filter_map(Weak::upgrade) {
            // Deleting the name goes ahead regardless: a process that
            // would not stop keeps only an unnamed namespace alive.
            let _ = child.terminate(STOP_GRACE);
        }
        if self.delete_on_drop
            && let Err(error) = cmd::run("ip", &["netns", "del", &self.name])
        {
            eprintln!(
                "lb-lab: deleting network namespace {}: {error:#}",
                self.name
            );
        }
    }
}

/// Deletes every network namespace whose name starts with `prefix`, after
/// killing the processes inside it (`ip netns pids`), and returns the names
/// deleted. For cleaning up after a crashed run; an empty prefix is refused.
pub fn delete_with_prefix(prefix: &str) -> Result<Vec<String>> {
    ensure!(
        !prefix.is_empty(),
        "refusing to delete every network namespace"
    );
    let mut deleted = Vec::new();
    for name in list()?.into_iter().filter(|n| n.starts_with(prefix)) {
        let own = std::process::id();
        for pid in pids_of(&name)?.into_iter().filter(|pid| *pid != own) {
            let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
            // SAFETY: kill has no memory-safety preconditions. The PID was
            // just listed inside a namespace carrying the lab's prefix.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        wait_until(
            Duration::from_secs(5),
            &format!("processes in {name} to exit"),
            || Ok(pids_of(&name)?.iter().all(|pid| *pid == own).then_some(())),
        )?;
        cmd::run("ip", &["netns", "del", &name])
            .with_context(|| format!("deleting network namespace {name}"))?;
        deleted.push(name);
    }
    Ok(deleted)
}

/// The names of all named network namespaces (entries of `/run/netns`).
pub fn list() -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("listing {NETNS_DIR}")),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {NETNS_DIR}"))?;
        names.extend(entry.file_name().to_str().map(str::to_owned));
    }
    names.sort();
    Ok(names)
}

fn pids_of(name: &str) -> Result<Vec<u32>> {
    cmd::run("ip", &["netns", "pids", name])?
        .split_whitespace()
        .map(|pid| {
            pid.parse()
                .with_context(|| format!("`ip netns pids {name}` printed {pid:?}"))
        })
        .collect()
}

fn path_of(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        bail!("invalid network namespace name {name:?}");
    }
    Ok(())
}

/// Moves the calling thread into the network namespace `file` refers to.
fn join(file: &File) -> io::Result<()> {
    // SAFETY: setns on a valid namespace file descriptor; it changes the
    // network namespace of the calling thread only.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
